//! The bad-input corpus: hostile names, digests, ranges and manifests sent through the whole
//! router. Each case must get the spec's error code and status, and leave the store exactly as
//! it was: every file under the data directory (blobs, staging, the metadata database) is hashed
//! before and after the request and the two snapshots must be equal.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::api::manifests::MAX_TAGS_PER_PUSH;

/// Path (relative to the data directory) → SHA-256 of its bytes, for every file.
type Snapshot = BTreeMap<String, Digest>;

/// Bytes the fixture's upload session has committed. A staged file may hold more after a failed
/// chunk: the blob-store contract discards anything past the committed offset at the next append,
/// so only the committed prefix of a staged upload is state.
const COMMITTED: usize = 5;

fn snapshot(root: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let mut bytes = std::fs::read(&path).expect("read file");
                let rel = path.strip_prefix(root).expect("under root");
                if rel.starts_with("uploads") {
                    bytes.truncate(COMMITTED);
                }
                out.insert(rel.display().to_string(), Algorithm::Sha256.digest(&bytes));
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

/// One hostile request and the error it must get.
struct Case {
    what: &'static str,
    method: Method,
    uri: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: StatusCode,
    /// `None` where the spec gives no body (HEAD, or a range error answered with headers only).
    code: Option<&'static str>,
}

fn case(what: &'static str, method: Method, uri: impl Into<String>) -> Case {
    Case {
        what,
        method,
        uri: uri.into(),
        headers: Vec::new(),
        body: Vec::new(),
        status: StatusCode::BAD_REQUEST,
        code: None,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.body = body.into();
        self
    }

    fn expect(mut self, status: StatusCode, code: &'static str) -> Case {
        self.status = status;
        self.code = Some(code);
        self
    }
}

/// What exists before the corpus runs: an image tagged `v1` in `lib/app`, and an open upload
/// session holding five bytes.
struct Fixture {
    app: App,
    manifest: Vec<u8>,
    digest: Digest,
    layer: Digest,
    upload: String,
}

async fn fixture() -> Fixture {
    let app = App::new().await;
    let (manifest, digest) = app
        .push_image("lib/app", "v1", b"layer bytes", json!({}))
        .await;
    let layer = Algorithm::Sha256.digest(b"layer bytes");
    let r = app
        .call(
            Method::POST,
            "/v2/lib/app/blobs/uploads/",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let upload = r.header("location").to_owned();
    let r = app
        .call(
            Method::PATCH,
            &upload,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    Fixture {
        app,
        manifest,
        digest,
        layer,
        upload,
    }
}

fn name_cases() -> Vec<Case> {
    let long = "a".repeat(300);
    let names = [
        ("dot-dot segment", "../etc".to_owned()),
        ("percent-encoded dot-dot", "%2e%2e/x".to_owned()),
        ("encoded slash", "lib%2Fapp".to_owned()),
        ("uppercase", "Lib/App".to_owned()),
        ("empty segment", "lib//app".to_owned()),
        ("trailing separator", "lib/app-".to_owned()),
        ("300-character component", long),
        ("space", "lib/a%20b".to_owned()),
        ("leading dot", ".hidden/app".to_owned()),
    ];
    let mut cases = Vec::new();
    for (what, name) in names {
        for (method, tail) in [
            (Method::GET, "manifests/v1"),
            (Method::PUT, "manifests/v1"),
            (Method::DELETE, "manifests/v1"),
            (Method::POST, "blobs/uploads/"),
            (Method::GET, "tags/list"),
        ] {
            cases.push(
                case(what, method, format!("/v2/{name}/{tail}"))
                    .header("content-type", media::OCI_MANIFEST)
                    .body(b"{}".to_vec())
                    .expect(StatusCode::BAD_REQUEST, "NAME_INVALID"),
            );
        }
    }
    cases
}

fn reference_cases(f: &Fixture) -> Vec<Case> {
    let hex = f.digest.hex().to_owned();
    let mut cases = Vec::new();
    for (what, reference) in [
        ("digest too short", format!("sha256:{}", &hex[..63])),
        ("digest too long", format!("sha256:{hex}0")),
        ("unknown algorithm", format!("md5:{}", &hex[..32])),
        ("uppercase hex", format!("sha256:{}", hex.to_uppercase())),
    ] {
        // A reference with a colon can only be a digest. A read of one that is not valid names
        // no manifest (the spec's only failure answer for end-3 is 404); a write is refused.
        cases.extend(invalid_reference_cases(what, &reference, "DIGEST_INVALID"));
    }
    for (what, reference) in [
        ("tag of 129 characters", "t".repeat(129)),
        ("tag with a dot first", ".v1".to_owned()),
        (
            "the conformance suite's invalid name",
            ".INVALID_MANIFEST_NAME".to_owned(),
        ),
        ("tag with a slash", "v1%2Fx".to_owned()),
    ] {
        cases.extend(invalid_reference_cases(what, &reference, "TAG_INVALID"));
    }
    for (what, digest) in [
        ("blob digest too short", format!("sha256:{}", &hex[..10])),
        (
            "blob digest unknown algorithm",
            format!("sha1:{}", &hex[..40]),
        ),
        (
            "blob digest uppercase",
            format!("sha256:{}", hex.to_uppercase()),
        ),
        ("blob digest without algorithm", hex.clone()),
    ] {
        // A blob read or delete fails only with 404 in the spec's table (end-2, end-10): a path
        // that is not a digest names no blob. The referrers endpoint must answer 400.
        cases.push(
            case(what, Method::GET, format!("/v2/lib/app/blobs/{digest}"))
                .expect(StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        );
        cases.push({
            let mut c = case(what, Method::HEAD, format!("/v2/lib/app/blobs/{digest}"));
            c.status = StatusCode::NOT_FOUND;
            c
        });
        cases.push(
            case(what, Method::DELETE, format!("/v2/lib/app/blobs/{digest}"))
                .expect(StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        );
        cases.push(
            case(what, Method::GET, format!("/v2/lib/app/referrers/{digest}"))
                .expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        );
        cases.push(
            case(
                what,
                Method::POST,
                format!("/v2/lib/app/blobs/uploads/?digest={digest}"),
            )
            .body(b"data".to_vec())
            .expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        );
    }
    cases
}

/// A manifest reference that is neither a valid tag nor a digest: reads answer 404
/// `MANIFEST_UNKNOWN`, `PUT` and `DELETE` answer 400 with `write_code`.
fn invalid_reference_cases(
    what: &'static str,
    reference: &str,
    write_code: &'static str,
) -> Vec<Case> {
    let uri = format!("/v2/lib/app/manifests/{reference}");
    vec![
        case(what, Method::GET, uri.clone()).expect(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        {
            let mut c = case(what, Method::HEAD, uri.clone());
            c.status = StatusCode::NOT_FOUND;
            c
        },
        case(what, Method::PUT, uri.clone())
            .header("content-type", media::OCI_MANIFEST)
            .body(b"{}".to_vec())
            .expect(StatusCode::BAD_REQUEST, write_code),
        case(what, Method::DELETE, uri).expect(StatusCode::BAD_REQUEST, write_code),
    ]
}

/// `tag` query parameters of a push by digest that must refuse the whole push.
fn tag_parameter_cases(f: &Fixture) -> Vec<Case> {
    let by_digest = format!("/v2/lib/app/manifests/{}", f.digest);
    let many: Vec<String> = (0..=MAX_TAGS_PER_PUSH)
        .map(|i| format!("tag=t{i}"))
        .collect();
    let put = |what, uri: String| {
        case(what, Method::PUT, uri)
            .header("content-type", media::OCI_MANIFEST)
            .body(f.manifest.clone())
    };
    vec![
        put(
            "an invalid tag among valid ones",
            format!("{by_digest}?tag=ok&tag=.bad"),
        )
        .expect(StatusCode::BAD_REQUEST, "TAG_INVALID"),
        put(
            "a tag parameter on a push by tag",
            "/v2/lib/app/manifests/v1?tag=v2".to_owned(),
        )
        .expect(StatusCode::BAD_REQUEST, "TAG_INVALID"),
        put(
            "more tags than one push applies",
            format!("{by_digest}?{}", many.join("&")),
        )
        .expect(StatusCode::URI_TOO_LONG, "TAG_INVALID"),
    ]
}

fn upload_cases(f: &Fixture) -> Vec<Case> {
    let upload = &f.upload;
    let unknown = "/v2/lib/app/blobs/uploads/00000000000000000000000000000000";
    vec![
        case("chunk overlapping committed bytes", Method::PATCH, upload)
            .header("content-range", "2-6")
            .body(b"xxxxx".to_vec())
            .expect(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        case("chunk leaving a gap", Method::PATCH, upload)
            .header("content-range", "9-13")
            .body(b"xxxxx".to_vec())
            .expect(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        case("reversed range", Method::PATCH, upload)
            .header("content-range", "9-5")
            .body(b"xxxxx".to_vec())
            .expect(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        case("chunk shorter than its range", Method::PATCH, upload)
            .header("content-range", "5-9")
            .body(b"abc".to_vec())
            .expect(StatusCode::BAD_REQUEST, "SIZE_INVALID"),
        // `end + 1` (the offset after the chunk) does not fit a u64: it must not wrap.
        case("range ending at the largest u64", Method::PATCH, upload)
            .header("content-range", "5-18446744073709551615")
            .body(b"xxxxx".to_vec())
            .expect(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        case("range past the largest u64", Method::PATCH, upload)
            .header("content-range", "5-18446744073709551616")
            .body(b"xxxxx".to_vec())
            .expect(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        case("garbage range", Method::PATCH, upload)
            .header("content-range", "bytes five-ten")
            .body(b"xxxxx".to_vec())
            .expect(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        // A final PUT whose digest does not match ends the session (its bytes can never become
        // that blob), so it changes state; `uploads` tests it.
        case("PUT without a digest", Method::PUT, upload.clone())
            .expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        case("PATCH to an unknown session", Method::PATCH, unknown)
            .body(b"xxxxx".to_vec())
            .expect(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        case(
            "session id with a path",
            Method::PATCH,
            "/v2/lib/app/blobs/uploads/..%2F..%2Fmeta.redb",
        )
        .body(b"xxxxx".to_vec())
        .expect(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        case(
            "session of another repository",
            Method::PATCH,
            upload.replace("lib/app", "lib/other"),
        )
        .body(b"xxxxx".to_vec())
        .expect(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
    ]
}

fn blob_range_cases(f: &Fixture) -> Vec<Case> {
    let blob = format!("/v2/lib/app/blobs/{}", f.layer);
    let mut cases = Vec::new();
    for (what, range) in [
        ("range past the end", "bytes=100-200"),
        ("range starting at the size", "bytes=11-"),
    ] {
        let mut c = case(what, Method::GET, blob.clone()).header("range", range);
        c.status = StatusCode::RANGE_NOT_SATISFIABLE;
        cases.push(c);
    }
    cases
}

fn manifest_cases(f: &Fixture) -> Vec<Case> {
    let put = |what, body: Vec<u8>| {
        case(what, Method::PUT, "/v2/lib/app/manifests/v1")
            .header("content-type", media::OCI_MANIFEST)
            .body(body)
    };
    let missing = Algorithm::Sha256.digest(b"never pushed");
    let with_layer = |digest: &Digest| {
        json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Algorithm::Sha256.digest(b"{}").to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest.to_string(), "size": 11}]
        })
    };
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","annotations":{}}}"#,
        media::OCI_MANIFEST,
        nested
    );
    let mut big = with_layer(&f.layer);
    big["annotations"] = json!({"pad": "x".repeat(4 * 1024 * 1024 + 1)});
    let mut bad_digest = with_layer(&f.layer);
    bad_digest["layers"][0]["digest"] = json!("sha256:NOTHEX");
    let mut wrong_type = with_layer(&f.layer);
    wrong_type["mediaType"] = json!("application/vnd.oci.image.index.v1+json");
    vec![
        put("invalid JSON", b"{not json".to_vec())
            .expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        put("empty body", Vec::new()).expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        put("JSON that is not an object", b"[1,2,3]".to_vec())
            .expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        put("deeply nested JSON", deep.into_bytes())
            .expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        put("schema version 1", br#"{"schemaVersion":1}"#.to_vec())
            .expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        put(
            "body media type differs from Content-Type",
            serde_json::to_vec(&wrong_type).expect("json"),
        )
        .expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        case(
            "unsupported media type",
            Method::PUT,
            "/v2/lib/app/manifests/v1",
        )
        .header("content-type", "text/plain")
        .body(br#"{"schemaVersion":2}"#.to_vec())
        .expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        put("over 4 MiB", serde_json::to_vec(&big).expect("json"))
            .expect(StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID"),
        put(
            "layer digest that is not a digest",
            serde_json::to_vec(&bad_digest).expect("json"),
        )
        .expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        put(
            "reference to a missing blob",
            serde_json::to_vec(&with_layer(&missing)).expect("json"),
        )
        .expect(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
        case(
            "PUT by a digest the bytes do not have",
            Method::PUT,
            format!(
                "/v2/lib/app/manifests/{}",
                Algorithm::Sha256.digest(b"other bytes")
            ),
        )
        .header("content-type", media::OCI_MANIFEST)
        .body(f.manifest.clone())
        .expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
    ]
}

fn listing_cases() -> Vec<Case> {
    vec![
        case(
            "negative page size",
            Method::GET,
            "/v2/lib/app/tags/list?n=-1",
        )
        .expect(StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        case(
            "page size that is not a number",
            Method::GET,
            "/v2/_catalog?n=many",
        )
        .expect(StatusCode::BAD_REQUEST, "UNSUPPORTED"),
    ]
}

#[tokio::test]
async fn every_hostile_request_gets_its_error_and_changes_nothing() {
    let f = fixture().await;
    let mut cases = name_cases();
    cases.extend(reference_cases(&f));
    cases.extend(tag_parameter_cases(&f));
    cases.extend(upload_cases(&f));
    cases.extend(blob_range_cases(&f));
    cases.extend(manifest_cases(&f));
    cases.extend(listing_cases());
    let mut failures = Vec::new();
    for c in &cases {
        let before = snapshot(f.app.dir.path());
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = f
            .app
            .call(c.method.clone(), &c.uri, &headers, c.body.clone())
            .await;
        let after = snapshot(f.app.dir.path());
        let code = if r.body.is_empty() {
            String::new()
        } else {
            serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("<not an OCI error body: {:?}>", r.body))
        };
        let want = c.code.unwrap_or("");
        if r.status != c.status || (c.code.is_some() && code != want) {
            failures.push(format!(
                "{} ({} {}): got {} {code}, want {} {want}",
                c.what,
                c.method,
                abbreviate(&c.uri),
                r.status,
                c.status
            ));
        }
        if before != after {
            failures.push(format!(
                "{} ({} {}): changed the store",
                c.what,
                c.method,
                abbreviate(&c.uri)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The fixture is intact: the tag still resolves to the same bytes, the upload continues.
    let r = f.app.get("/v2/lib/app/manifests/v1").await;
    assert_eq!(r.body.as_ref(), f.manifest.as_slice());
    assert_eq!(r.header("docker-content-digest"), f.digest.to_string());
    let r = f.app.get(&f.upload).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-4");
}

fn abbreviate(uri: &str) -> String {
    if uri.len() > 80 {
        format!("{}…", &uri[..80])
    } else {
        uri.to_owned()
    }
}
