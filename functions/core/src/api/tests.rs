//! Router tests: every endpoint and error path, driven through `oneshot` with no socket, on the
//! real embedded backends in a temporary directory.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, router};
use crate::oci::{Algorithm, Digest, media};
use crate::storage::fs::FsBlobStore;
use crate::storage::redb::RedbMetaStore;

struct App {
    dir: tempfile::TempDir,
    router: Router,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

async fn state_in(dir: &std::path::Path) -> AppState {
    let blobs = FsBlobStore::open(dir).await.expect("blob store");
    let meta = RedbMetaStore::open(&dir.join("meta.redb")).expect("meta store");
    AppState::new(Arc::new(blobs), Arc::new(meta))
}

impl App {
    async fn new() -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let router = router(state_in(dir.path()).await);
        App { dir, router }
    }

    /// Drops the stores and opens them again on the same directory, as a restart would.
    async fn restart(self) -> App {
        let App { dir, router } = self;
        drop(router);
        let router = super::router(state_in(dir.path()).await);
        App { dir, router }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(body.into()).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, &[], Body::empty()).await
    }

    /// Pushes a blob in one POST and returns its digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Algorithm::Sha256.digest(data);
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        digest
    }

    /// Pushes config + one layer and an image manifest; returns the manifest bytes and digest.
    async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layer: &[u8],
        extra: Value,
    ) -> (Vec<u8>, Digest) {
        let config = self.push_blob(repo, b"{}").await;
        let layer_digest = self.push_blob(repo, layer).await;
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}]
        });
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        let bytes = serde_json::to_vec(&m).expect("json");
        let r = self
            .put_manifest(repo, tag, media::OCI_MANIFEST, &bytes)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let digest = Algorithm::Sha256.digest(&bytes);
        (bytes, digest)
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Reply {
        self.call(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            bytes.to_vec(),
        )
        .await
    }
}

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let app = App::new().await;
    let r = app.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn monolithic_blob_push_then_head_get_and_ranges() {
    let app = App::new().await;
    let data = b"0123456789abcdef";
    let digest = app.push_blob("lib/x", data).await;
    let head = app
        .call(
            Method::HEAD,
            &format!("/v2/lib/x/blobs/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), "16");
    assert_eq!(head.header("docker-content-digest"), digest.to_string());
    assert!(head.body.is_empty());
    let get = app.get(&format!("/v2/lib/x/blobs/{digest}")).await;
    assert_eq!(get.body.as_ref(), data);
    let part = app
        .call(
            Method::GET,
            &format!("/v2/lib/x/blobs/{digest}"),
            &[("range", "bytes=4-7")],
            Body::empty(),
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body.as_ref(), b"4567");
    assert_eq!(part.header("content-range"), "bytes 4-7/16");
    let bad = app
        .call(
            Method::GET,
            &format!("/v2/lib/x/blobs/{digest}"),
            &[("range", "bytes=16-")],
            Body::empty(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(bad.header("content-range"), "bytes */16");
}

#[tokio::test]
async fn monolithic_push_with_wrong_digest_is_refused_and_stores_nothing() {
    let app = App::new().await;
    let wrong = Algorithm::Sha256.digest(b"something else");
    let r = app
        .call(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={wrong}"),
            &[],
            b"data".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(
        app.get(&format!("/v2/a/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );
    let uploads = std::fs::read_dir(app.dir.path().join("uploads"))
        .expect("uploads dir")
        .count();
    assert_eq!(uploads, 0, "no staged file is left behind");
}

#[tokio::test]
async fn post_then_put_monolithic_upload() {
    let app = App::new().await;
    let r = app
        .call(Method::POST, "/v2/a/b/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let location = r.header("location").to_owned();
    assert!(location.starts_with("/v2/a/b/blobs/uploads/"));
    assert_eq!(r.header("range"), "0-0");
    let digest = Algorithm::Sha256.digest(b"whole blob");
    let r = app
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            b"whole blob".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/a/b/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    assert_eq!(
        app.get(&location).await.error_code(),
        "BLOB_UPLOAD_UNKNOWN",
        "session ends with the PUT"
    );
}

#[tokio::test]
async fn chunked_upload_with_ranges_status_and_out_of_order_chunk() {
    let app = App::new().await;
    let r = app
        .call(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty())
        .await;
    let loc = r.header("location").to_owned();
    let r = app
        .call(
            Method::PATCH,
            &loc,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-4");
    // A chunk that does not start at the current offset: 416 with the current range.
    let r = app
        .call(
            Method::PATCH,
            &loc,
            &[("content-range", "10-14")],
            b"xxxxx".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_INVALID");
    assert_eq!(r.header("range"), "0-4");
    // A streamed chunk without Content-Range appends.
    let r = app
        .call(Method::PATCH, &loc, &[], b", wharf".to_vec())
        .await;
    assert_eq!(r.header("range"), "0-11");
    let r = app.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-11");
    assert_eq!(r.header("location"), loc);
    let digest = Algorithm::Sha256.digest(b"hello, wharf!");
    let r = app
        .call(
            Method::PUT,
            &format!("{loc}?digest={digest}"),
            &[("content-range", "12-12")],
            b"!".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        app.get(&format!("/v2/c/blobs/{digest}"))
            .await
            .body
            .as_ref(),
        b"hello, wharf!"
    );
}

#[tokio::test]
async fn chunk_shorter_than_its_content_range_does_not_advance_the_session() {
    let app = App::new().await;
    let loc = app
        .call(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .to_owned();
    let r = app
        .call(
            Method::PATCH,
            &loc,
            &[("content-range", "0-9")],
            b"short".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "SIZE_INVALID");
    assert_eq!(app.get(&loc).await.header("range"), "0-0");
}

#[tokio::test]
async fn final_put_with_wrong_digest_fails_and_drops_the_session() {
    let app = App::new().await;
    let loc = app
        .call(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .to_owned();
    app.call(Method::PATCH, &loc, &[], b"abc".to_vec()).await;
    let wrong = Algorithm::Sha256.digest(b"abd");
    let r = app
        .call(
            Method::PUT,
            &format!("{loc}?digest={wrong}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(
        app.get(&format!("/v2/c/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&loc).await.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::PUT,
            &format!("{loc}?digest=sha256:nothex"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn cancelled_upload_is_gone() {
    let app = App::new().await;
    let loc = app
        .call(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .to_owned();
    app.call(Method::PATCH, &loc, &[], b"abc".to_vec()).await;
    let r = app.call(Method::DELETE, &loc, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get(&loc).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        app.call(Method::DELETE, &loc, &[], Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn upload_session_of_one_repository_is_unknown_in_another() {
    let app = App::new().await;
    let loc = app
        .call(Method::POST, "/v2/a/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .to_owned();
    let id = loc.rsplit('/').next().expect("id");
    let r = app
        .call(
            Method::PATCH,
            &format!("/v2/b/blobs/uploads/{id}"),
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    let r = app.get("/v2/a/blobs/uploads/..%2F..%2Fetc").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upload_survives_a_restart_between_chunks() {
    let app = App::new().await;
    let loc = app
        .call(Method::POST, "/v2/r/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .to_owned();
    app.call(
        Method::PATCH,
        &loc,
        &[("content-range", "0-5")],
        b"first ".to_vec(),
    )
    .await;
    let app = app.restart().await;
    assert_eq!(app.get(&loc).await.header("range"), "0-5");
    let r = app
        .call(
            Method::PATCH,
            &loc,
            &[("content-range", "6-11")],
            b"second".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let digest = Algorithm::Sha256.digest(b"first second");
    let r = app
        .call(
            Method::PUT,
            &format!("{loc}?digest={digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn blob_of_one_repository_is_not_readable_from_another() {
    let app = App::new().await;
    let digest = app.push_blob("private/a", b"secret layer").await;
    let r = app.get(&format!("/v2/private/b/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    let r = app
        .call(
            Method::HEAD,
            &format!("/v2/private/b/blobs/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cross_repository_mount() {
    let app = App::new().await;
    let digest = app.push_blob("src", b"shared layer").await;
    let r = app
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/dst/blobs/{digest}"));
    assert_eq!(
        app.get(&format!("/v2/dst/blobs/{digest}"))
            .await
            .body
            .as_ref(),
        b"shared layer"
    );
    // Mounting from a repository that lacks the blob opens a normal session.
    let missing = Algorithm::Sha256.digest(b"nope");
    let r = app
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={missing}&from=src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.header("location").starts_with("/v2/dst/blobs/uploads/"));
}

#[tokio::test]
async fn manifest_push_and_pull_by_tag_and_digest() {
    let app = App::new().await;
    let (bytes, digest) = app.push_image("lib/app", "v1", b"layer", json!({})).await;
    for reference in ["v1".to_owned(), digest.to_string()] {
        let r = app.get(&format!("/v2/lib/app/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_ref(), bytes.as_slice(), "bytes exactly as pushed");
        assert_eq!(r.header("content-type"), media::OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), digest.to_string());
        let h = app
            .call(
                Method::HEAD,
                &format!("/v2/lib/app/manifests/{reference}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.header("content-length"), bytes.len().to_string());
        assert!(h.body.is_empty());
    }
    let r = app.get("/v2/lib/app/manifests/v2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_put_response_headers() {
    let app = App::new().await;
    let config = app.push_blob("h", b"{}").await;
    let m = json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": []});
    let bytes = serde_json::to_vec(&m).expect("json");
    let digest = Algorithm::Sha256.digest(&bytes);
    let r = app
        .put_manifest("h", "latest", media::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/h/manifests/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    assert_eq!(r.header("oci-subject"), "");
    let r = app
        .put_manifest("h", &digest.to_string(), media::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "push by digest");
}

#[tokio::test]
async fn manifest_with_missing_blob_is_refused_and_no_tag_appears() {
    let app = App::new().await;
    let m = json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Algorithm::Sha256.digest(b"{}").to_string(), "size": 2},
        "layers": []});
    let r = app
        .put_manifest(
            "m",
            "v1",
            media::OCI_MANIFEST,
            &serde_json::to_vec(&m).expect("json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        app.get("/v2/m/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v2/m/tags/list").await.error_code(),
        "NAME_UNKNOWN"
    );
}

#[tokio::test]
async fn invalid_manifests_get_spec_errors() {
    let app = App::new().await;
    let r = app
        .put_manifest("m", "v1", media::OCI_MANIFEST, b"{not json")
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    let big = vec![b' '; crate::oci::MAX_MANIFEST_BYTES + 1];
    let r = app.put_manifest("m", "v1", media::OCI_MANIFEST, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    let (bytes, _) = app.push_image("m", "ok", b"l", json!({})).await;
    let wrong = Algorithm::Sha256.digest(b"other");
    let r = app
        .put_manifest("m", &wrong.to_string(), media::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = app
        .put_manifest("m", "bad+tag", media::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn index_requires_its_children() {
    let app = App::new().await;
    let (child, child_digest) = app
        .push_image("multi", "amd64", b"amd64 layer", json!({}))
        .await;
    let index = |d: String| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
            "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": d, "size": child.len(),
                           "platform": {"architecture": "amd64", "os": "linux"}}]}))
        .expect("json")
    };
    let missing = Algorithm::Sha256.digest(b"absent manifest");
    let r = app
        .put_manifest(
            "multi",
            "latest",
            media::OCI_INDEX,
            &index(missing.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    let r = app
        .put_manifest(
            "multi",
            "latest",
            media::OCI_INDEX,
            &index(child_digest.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        app.get("/v2/multi/manifests/latest")
            .await
            .header("content-type"),
        media::OCI_INDEX
    );
}

#[tokio::test]
async fn tags_list_paginates_with_link() {
    let app = App::new().await;
    let (bytes, _) = app.push_image("t", "a", b"l", json!({})).await;
    for tag in ["e", "c", "b", "d"] {
        app.put_manifest("t", tag, media::OCI_MANIFEST, &bytes)
            .await;
    }
    let r = app.get("/v2/t/tags/list").await;
    assert_eq!(
        r.json(),
        json!({"name": "t", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert_eq!(r.header("link"), "");
    let r = app.get("/v2/t/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        "</v2/t/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = app.get("/v2/t/tags/list?n=2&last=b").await;
    assert_eq!(r.json()["tags"], json!(["c", "d"]));
    let r = app.get("/v2/t/tags/list?n=2&last=d").await;
    assert_eq!(r.json()["tags"], json!(["e"]));
    assert_eq!(r.header("link"), "");
    assert_eq!(
        app.get("/v2/t/tags/list?n=0").await.json()["tags"],
        json!([])
    );
    assert_eq!(
        app.get("/v2/t/tags/list?n=x").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/v2/unknown/tags/list").await.error_code(),
        "NAME_UNKNOWN"
    );
}

#[tokio::test]
async fn catalog_paginates_with_link() {
    let app = App::new().await;
    for repo in ["zeta", "alpha/one", "mid"] {
        app.push_blob(repo, b"x").await;
    }
    let r = app.get("/v2/_catalog").await;
    assert_eq!(
        r.json(),
        json!({"repositories": ["alpha/one", "mid", "zeta"]})
    );
    let r = app.get("/v2/_catalog?n=1").await;
    assert_eq!(r.json()["repositories"], json!(["alpha/one"]));
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?n=1&last=alpha/one>; rel=\"next\""
    );
    let r = app.get("/v2/_catalog?n=5&last=alpha/one").await;
    assert_eq!(r.json()["repositories"], json!(["mid", "zeta"]));
}

#[tokio::test]
async fn delete_by_tag_removes_only_the_tag() {
    let app = App::new().await;
    let (_, digest) = app.push_image("d", "v1", b"l", json!({})).await;
    let r = app
        .call(Method::DELETE, "/v2/d/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.get("/v2/d/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v2/d/manifests/{digest}")).await.status,
        StatusCode::OK
    );
    let r = app
        .call(Method::DELETE, "/v2/d/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_by_digest_removes_manifest_and_its_tags() {
    let app = App::new().await;
    let (bytes, digest) = app.push_image("d", "v1", b"l", json!({})).await;
    app.put_manifest("d", "v2", media::OCI_MANIFEST, &bytes)
        .await;
    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/d/manifests/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    for reference in ["v1".to_owned(), "v2".to_owned(), digest.to_string()] {
        assert_eq!(
            app.get(&format!("/v2/d/manifests/{reference}"))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(app.get("/v2/d/tags/list").await.json()["tags"], json!([]));
}

#[tokio::test]
async fn delete_blob() {
    let app = App::new().await;
    let digest = app.push_blob("b", b"bye").await;
    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/b/blobs/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app
        .call(
            Method::HEAD,
            &format!("/v2/b/blobs/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::DELETE,
            &format!("/v2/b/blobs/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn referrers_list_and_filter_by_artifact_type() {
    let app = App::new().await;
    // The subject need not exist when its referrers are pushed.
    let subject = Algorithm::Sha256.digest(b"subject not pushed yet");
    let subject_desc =
        json!({"mediaType": media::OCI_MANIFEST, "digest": subject.to_string(), "size": 10});
    app.push_blob("art", b"{}").await;
    let empty = Algorithm::Sha256.digest(b"{}");
    let mut digests = Vec::new();
    for (kind, layer) in [
        ("application/vnd.example.sig", &b"sig"[..]),
        ("application/vnd.example.sbom", &b"sbom"[..]),
    ] {
        let layer_digest = app.push_blob("art", layer).await;
        let m = json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": layer_digest.to_string(), "size": layer.len()}],
            "subject": subject_desc, "annotations": {"org.opencontainers.image.created": "2026-11-23T00:00:00Z"}});
        let bytes = serde_json::to_vec(&m).expect("json");
        let digest = Algorithm::Sha256.digest(&bytes);
        let r = app
            .put_manifest("art", &digest.to_string(), media::OCI_MANIFEST, &bytes)
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.header("oci-subject"), subject.to_string());
        digests.push((kind, digest, bytes.len()));
    }
    let r = app.get(&format!("/v2/art/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), media::OCI_INDEX);
    assert_eq!(r.header("oci-filters-applied"), "");
    let index = r.json();
    assert_eq!(index["mediaType"], media::OCI_INDEX);
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
    let r = app
        .get(&format!(
            "/v2/art/referrers/{subject}?artifactType=application/vnd.example.sig"
        ))
        .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    let (kind, digest, size) = &digests[0];
    assert_eq!(
        r.json()["manifests"],
        json!([{"mediaType": media::OCI_MANIFEST, "digest": digest.to_string(), "size": size,
                "artifactType": kind, "annotations": {"org.opencontainers.image.created": "2026-11-23T00:00:00Z"}}])
    );
    let none = app
        .get(&format!(
            "/v2/art/referrers/{}",
            Algorithm::Sha256.digest(b"lonely")
        ))
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json()["manifests"], json!([]));
    let r = app.get("/v2/art/referrers/sha256:123").await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn bad_names_digests_routes_and_methods() {
    let app = App::new().await;
    for path in [
        "/v2/UPPER/manifests/v1",
        "/v2/a/../b/manifests/v1",
        "/v2/%2e%2e/tags/list",
        "/v2/a//b/blobs/uploads/",
    ] {
        let r = app.get(path).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            "{path}"
        );
    }
    let r = app.get("/v2/a/blobs/sha256:ABC").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = app.get("/v2/a/manifests/md5:abc").await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = app.get("/v2/a/nothing/here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        !r.error_code().is_empty(),
        "unknown routes still get an OCI error body"
    );
    let r = app
        .call(Method::POST, "/v2/a/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
    let r = app
        .call(
            Method::POST,
            "/v2/a/blobs/uploads/?digest=sha512:00",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}
