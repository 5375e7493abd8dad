//! The uploads group's body limit and `OCI-Chunk-Min-Length`.
use super::*;

const LIMIT: u64 = 1000;

async fn limited() -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = state_in(dir.path()).await;
    state.max_upload_body = Some(LIMIT);
    let router = router(state);
    App { dir, router }
}

fn assert_refused_naming_the_limit(r: &Reply) {
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert_eq!(r.error_code(), "SIZE_INVALID");
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(message.contains("1000 bytes"), "{message}");
    assert!(message.contains("wharf cp"), "{message}");
    assert_eq!(r.json()["errors"][0]["detail"]["limit"], LIMIT);
}

#[tokio::test]
async fn a_monolithic_push_over_the_limit_is_refused_from_its_content_length() {
    let app = limited().await;
    let data = vec![7u8; LIMIT as usize + 1];
    let digest = Algorithm::Sha256.digest(&data);
    let r = app
        .call(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={digest}"),
            &[("content-length", &data.len().to_string())],
            data,
        )
        .await;
    assert_refused_naming_the_limit(&r);
    assert_eq!(
        app.get(&format!("/v2/a/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_chunk_without_content_length_is_cut_off_at_the_limit_and_the_session_is_kept() {
    let app = limited().await;
    let r = app
        .call(Method::POST, "/v2/a/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let location = r.header("location").to_owned();
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..3)
        .map(|_| Ok(bytes::Bytes::from(vec![1u8; 600])))
        .collect();
    let streamed = Body::from_stream(futures_util::stream::iter(chunks));
    let r = app.call(Method::PATCH, &location, &[], streamed).await;
    assert_refused_naming_the_limit(&r);
    // The session is as it was: a chunk within the limit goes on from byte 0.
    let r = app.call(Method::GET, &location, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-0");
    let r = app
        .call(Method::PATCH, &location, &[], vec![2u8; LIMIT as usize])
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.header("range"), format!("0-{}", LIMIT - 1));
    let digest = Algorithm::Sha256.digest(&vec![2u8; LIMIT as usize]);
    let r = app
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[("content-length", "0")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn without_a_limit_big_bodies_pass_and_the_filesystem_store_advertises_no_chunk_size() {
    let app = App::new().await;
    let data = vec![3u8; 64 * 1024];
    app.push_blob("a", &data).await;
    let r = app
        .call(Method::POST, "/v2/a/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("oci-chunk-min-length"), "");
}

#[tokio::test]
async fn a_direct_upload_request_on_a_store_that_cannot_presign_gets_a_plain_session() {
    let app = App::new().await;
    let digest = Algorithm::Sha256.digest(b"direct bytes");
    let r = app
        .call(
            Method::POST,
            "/v2/a/blobs/uploads/",
            &[
                ("wharf-direct-digest", &digest.to_string()),
                ("wharf-direct-size", "12"),
            ],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.header("wharf-direct-upload"),
        "",
        "the filesystem store cannot presign"
    );
    assert!(r.body.is_empty());
    // The session works as any other: the client falls back to pushing through it.
    let location = r.header("location").to_owned();
    let r = app
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            b"direct bytes".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .call(
            Method::POST,
            "/v2/a/blobs/uploads/",
            &[("wharf-direct-digest", "sha256:nothex")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn an_empty_put_naming_a_blob_of_another_repository_links_nothing() {
    let app = App::new().await;
    let digest = app.push_blob("private/a", b"secret layer").await;
    let r = app
        .call(Method::POST, "/v2/thief/blobs/uploads/", &[], Body::empty())
        .await;
    let location = r.header("location").to_owned();
    let r = app
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[("content-length", "0")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(
        app.get(&format!("/v2/thief/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
}
