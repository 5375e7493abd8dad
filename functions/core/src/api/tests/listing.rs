//! Tag lists and the catalog, with pagination; bad input on every route.
use super::*;

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
    // A read by an invalid reference names no manifest (spec end-3 fails only with 404).
    let r = app.get("/v2/a/manifests/md5:abc").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
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
