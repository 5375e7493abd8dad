//! Blob uploads: monolithic, chunked, resumed, cancelled, mounted.
use super::*;

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
    // So does a mount whose digest or source repository is not valid (the spec: "If a mount
    // fails due to invalid repository or digest arguments, the registry will fall back to the
    // standard upload behavior").
    for query in [
        "mount=sha256:ABC&from=src".to_owned(),
        format!("mount={digest}&from=..%2Fsrc"),
        format!("mount={digest}"),
    ] {
        let r = app
            .call(
                Method::POST,
                &format!("/v2/dst2/blobs/uploads/?{query}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{query}: {:?}", r.body);
        assert!(r.header("location").starts_with("/v2/dst2/blobs/uploads/"));
    }
    let r = app.get(&format!("/v2/dst2/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing was mounted");
}

#[tokio::test]
async fn a_content_range_ending_at_u64_max_is_refused_and_does_not_wrap() {
    // `0-18446744073709551615` covers 2^64 bytes: `end - start + 1` wraps to 0 (and panics in a
    // debug build). The spec answers a range that cannot be this chunk with 416.
    let app = App::new().await;
    let loc = app
        .call(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .to_owned();
    for range in [
        "0-18446744073709551615",
        "bytes 0-18446744073709551615/18446744073709551615",
        "0-18446744073709551616",
    ] {
        let r = app
            .call(
                Method::PATCH,
                &loc,
                &[("content-range", range)],
                b"hello".to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.error_code(), "BLOB_UPLOAD_INVALID", "{range}");
        assert_eq!(r.header("range"), "0-0", "{range}");
    }
    let r = app.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-0", "nothing was committed");
    // The session still takes a real chunk from byte 0.
    let r = app
        .call(
            Method::PATCH,
            &loc,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.header("range"), "0-4");
}

#[tokio::test]
async fn a_content_range_disagreeing_with_content_length_is_refused_before_reading() {
    let app = App::new().await;
    let loc = app
        .call(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .to_owned();
    // Two billion bytes announced by the range, five by Content-Length.
    let r = app
        .call(
            Method::PATCH,
            &loc,
            &[("content-range", "0-1999999999"), ("content-length", "5")],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "SIZE_INVALID");
    assert_eq!(app.get(&loc).await.header("range"), "0-0");
}
