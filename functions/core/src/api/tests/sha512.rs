//! sha512 content on every upload path (distribution-spec main branch: "When pushing a blob
//! with a digest algorithm other than `sha256`, the post request SHOULD include the
//! `digest-algorithm` parameter", end-4c), served and `HEAD`ed by its digest, referenced from
//! manifests; and the `digest-algorithm` hint held to what it said.
use super::*;

fn sha512(data: &[u8]) -> Digest {
    Algorithm::Sha512.digest(data)
}

/// The blob is served by its sha512 digest, `HEAD` and `GET` alike, with that digest in
/// `Docker-Content-Digest`.
async fn assert_served(app: &App, repo: &str, data: &[u8]) {
    let digest = sha512(data);
    let uri = format!("/v2/{repo}/blobs/{digest}");
    let head = app.call(Method::HEAD, &uri, &[], Body::empty()).await;
    assert_eq!(head.status, StatusCode::OK, "HEAD {uri}");
    assert_eq!(head.header("content-length"), data.len().to_string());
    assert_eq!(head.header("docker-content-digest"), digest.to_string());
    let get = app.get(&uri).await;
    assert_eq!(get.status, StatusCode::OK, "GET {uri}");
    assert_eq!(get.header("docker-content-digest"), digest.to_string());
    assert_eq!(&get.body[..], data);
}

async fn open(app: &App, repo: &str, query: &str) -> String {
    let r = app
        .call(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/{query}"),
            &[("content-length", "0")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    r.header("location").to_owned()
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

fn staged_files(app: &App) -> usize {
    std::fs::read_dir(app.dir.path().join("uploads"))
        .expect("uploads dir")
        .count()
}

#[tokio::test]
async fn monolithic_post_with_a_sha512_digest_stores_the_blob() {
    let app = App::new().await;
    let data = b"one request, sha512";
    let digest = sha512(data);
    let r = app
        .call(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={digest}"),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("location"), format!("/v2/a/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    assert_served(&app, "a", data).await;
    assert!(
        app.dir
            .path()
            .join("blobs/sha512")
            .join(digest.hex())
            .is_file(),
        "kept under its own algorithm"
    );
}

#[tokio::test]
async fn post_then_put_with_a_sha512_digest_and_no_hint() {
    let app = App::new().await;
    let data = b"post, then one put";
    let loc = open(&app, "a/b", "").await;
    let r = app
        .call(
            Method::PUT,
            &with_digest(&loc, &sha512(data)),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_served(&app, "a/b", data).await;
}

#[tokio::test]
async fn chunked_sha512_upload_resumes_across_a_restart_with_and_without_the_hint() {
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    for query in ["", "?digest-algorithm=sha512"] {
        let mut app = App::new().await;
        let loc = open(&app, "c", query).await;
        let mut offset = 0;
        // Chunks that end inside and on SHA-512's 128-byte blocks, each on a "new instance".
        for len in [100, 156, 1000, 1744] {
            let end = offset + len;
            let range = format!("{offset}-{}", end - 1);
            let r = app
                .call(
                    Method::PATCH,
                    &loc,
                    &[
                        ("content-range", range.as_str()),
                        ("content-length", &len.to_string()),
                    ],
                    data[offset..end].to_vec(),
                )
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{query} {range}");
            assert_eq!(r.header("range"), format!("0-{}", end - 1));
            offset = end;
            app = app.restart().await;
        }
        let r = app
            .call(
                Method::PUT,
                &with_digest(&loc, &sha512(&data)),
                &[("content-length", "0")],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{query}: {:?}", r.body);
        assert_served(&app, "c", &data).await;
    }
}

#[tokio::test]
async fn streamed_patch_without_content_range_then_put_with_the_last_bytes() {
    let app = App::new().await;
    let data = b"streamed in one PATCH with no Content-Range, the rest with the PUT";
    let loc = open(&app, "s", "").await;
    let r = app
        .call(Method::PATCH, &loc, &[], data[..40].to_vec())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-39");
    let loc = r.header("location").to_owned();
    let r = app
        .call(
            Method::PUT,
            &with_digest(&loc, &sha512(data)),
            &[],
            data[40..].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_served(&app, "s", data).await;
}

#[tokio::test]
async fn a_sha512_blob_mounts_into_another_repository() {
    let app = App::new().await;
    let data = b"mounted by sha512";
    let digest = sha512(data);
    let r = app
        .call(
            Method::POST,
            &format!("/v2/src/blobs/uploads/?digest={digest}"),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("location"), format!("/v2/dst/blobs/{digest}"));
    assert_served(&app, "dst", data).await;
}

#[tokio::test]
async fn a_manifest_of_sha512_blobs_is_accepted_and_its_tags_listed() {
    let app = App::new().await;
    let (config, layer) = (b"{}".as_slice(), b"sha512 layer".as_slice());
    for blob in [config, layer] {
        let r = app
            .call(
                Method::POST,
                &format!("/v2/lib/x/blobs/uploads/?digest={}", sha512(blob)),
                &[],
                blob.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha512(config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha512(layer).to_string(), "size": layer.len()}]
    }))
    .expect("json");
    let r = app
        .put_manifest("lib/x", "v1", media::OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // The same bytes pushed by their sha512 digest, under the digest's own algorithm.
    let by_digest = sha512(&manifest);
    let r = app
        .put_manifest(
            "lib/x",
            &by_digest.to_string(),
            media::OCI_MANIFEST,
            &manifest,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("docker-content-digest"), by_digest.to_string());
    let r = app.get("/v2/lib/x/tags/list").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"name": "lib/x", "tags": ["v1"]}));
    let r = app.get("/v2/lib/x/manifests/v1").await;
    assert_eq!(&r.body[..], &manifest[..]);
}

#[tokio::test]
async fn a_digest_contradicting_the_hint_is_refused_and_the_session_kept() {
    let app = App::new().await;
    let data = b"hashed as sha512 only";
    for (hint, wrong, right) in [
        ("sha512", Algorithm::Sha256.digest(data), sha512(data)),
        ("sha256", sha512(data), Algorithm::Sha256.digest(data)),
    ] {
        let repo = format!("h/{hint}");
        let loc = open(&app, &repo, &format!("?digest-algorithm={hint}")).await;
        let r = app.call(Method::PATCH, &loc, &[], data.to_vec()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let r = app
            .call(
                Method::PUT,
                &with_digest(&loc, &wrong),
                &[],
                b"more".to_vec(),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            "{hint}"
        );
        assert_eq!(
            app.get(&format!("/v2/{repo}/blobs/{wrong}")).await.status,
            StatusCode::NOT_FOUND
        );
        // Nothing of the refused request was taken: the session goes on where it was.
        let r = app.get(&loc).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(r.header("range"), format!("0-{}", data.len() - 1));
        let r = app
            .call(Method::PUT, &with_digest(&loc, &right), &[], Body::empty())
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{hint}: {:?}", r.body);
    }
}

#[tokio::test]
async fn a_monolithic_digest_contradicting_its_hint_stores_nothing() {
    let app = App::new().await;
    let data = b"said sha512, sent sha256";
    let digest = Algorithm::Sha256.digest(data);
    let r = app
        .call(
            Method::POST,
            &format!("/v2/m/blobs/uploads/?digest-algorithm=sha512&digest={digest}"),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    assert_eq!(
        app.get(&format!("/v2/m/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(staged_files(&app), 0);
}

#[tokio::test]
async fn an_unknown_digest_algorithm_opens_no_session() {
    let app = App::new().await;
    for bad in ["md5", "sha384", "SHA512", ""] {
        let r = app
            .call(
                Method::POST,
                &format!("/v2/u/blobs/uploads/?digest-algorithm={bad}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            "{bad:?}"
        );
        assert_eq!(r.header("location"), "", "{bad:?}");
    }
    assert_eq!(staged_files(&app), 0);
}

#[tokio::test]
async fn sha512_content_that_is_not_the_digest_is_digest_invalid() {
    let app = App::new().await;
    let wrong = sha512(b"other bytes");
    let r = app
        .call(
            Method::POST,
            &format!("/v2/w/blobs/uploads/?digest={wrong}"),
            &[],
            b"these bytes".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let loc = open(&app, "w", "").await;
    let r = app
        .call(
            Method::PUT,
            &with_digest(&loc, &wrong),
            &[],
            b"these bytes".to_vec(),
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(
        app.get(&format!("/v2/w/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_direct_upload_request_for_sha512_gets_a_session_that_takes_the_bytes() {
    let app = App::new().await;
    let data = b"wharf cp falls back to the session for sha512";
    let digest = sha512(data);
    let r = app
        .call(
            Method::POST,
            "/v2/d/blobs/uploads/",
            &[
                ("wharf-direct-digest", &digest.to_string()),
                ("wharf-direct-size", &data.len().to_string()),
            ],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.header("wharf-direct-upload"), "");
    let loc = r.header("location").to_owned();
    let r = app
        .call(Method::PUT, &with_digest(&loc, &digest), &[], data.to_vec())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_served(&app, "d", data).await;
}
