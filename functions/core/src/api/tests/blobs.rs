//! Blob reads, ranges, isolation between repositories and deletes.
use super::*;

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
