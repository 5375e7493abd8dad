//! The headers the distribution spec names on each successful answer (spec.md, "Pulling blobs",
//! "Pushing blobs", "Pushing Manifests", "Deleting"), checked in one table so that a change to
//! any handler that drops one fails here: `Location` and `Docker-Content-Digest` on every 201,
//! `Location` and `Range` on every 202/204 of a session, `Docker-Content-Digest` and
//! `Content-Length` on blob and manifest reads, and a cancelled session answering 204 and then
//! 404 `BLOB_UPLOAD_UNKNOWN`.
use super::*;

/// Asserts the named headers of `r` (`None`: present with any value).
fn expect(what: &str, r: &Reply, status: StatusCode, want: &[(&str, Option<&str>)]) {
    assert_eq!(r.status, status, "{what}: {:?}", r.body);
    for (name, value) in want {
        let got = r.headers.get(*name).and_then(|v| v.to_str().ok());
        match value {
            Some(v) => assert_eq!(got, Some(*v), "{what}: header {name}"),
            None => assert!(
                got.is_some_and(|g| !g.is_empty()),
                "{what}: header {name} missing"
            ),
        }
    }
}

#[tokio::test]
async fn every_success_answer_carries_the_headers_the_spec_names() {
    let app = App::new().await;
    let data = b"header table".to_vec();
    let digest = Algorithm::Sha256.digest(&data);
    let d = digest.to_string();
    let blob_at = format!("/v2/h/blobs/{d}");

    // Monolithic POST ?digest=.
    let r = app
        .call(
            Method::POST,
            &format!("/v2/h/blobs/uploads/?digest={d}"),
            &[],
            data.clone(),
        )
        .await;
    let created = [
        ("location", Some(blob_at.as_str())),
        ("docker-content-digest", Some(d.as_str())),
        ("content-length", Some("0")),
    ];
    expect("monolithic POST", &r, StatusCode::CREATED, &created);

    // POST, PATCH, GET status, PUT ?digest= in another repository.
    let r = app
        .call(Method::POST, "/v2/h2/blobs/uploads/", &[], Body::empty())
        .await;
    expect(
        "POST",
        &r,
        StatusCode::ACCEPTED,
        &[("location", None), ("range", Some("0-0"))],
    );
    let session = r.header("location");
    let r = app
        .call(
            Method::PATCH,
            session,
            &[("content-range", "0-11")],
            data.clone(),
        )
        .await;
    expect(
        "PATCH",
        &r,
        StatusCode::ACCEPTED,
        &[("location", None), ("range", Some("0-11"))],
    );
    let session = r.header("location");
    let r = app.get(session).await;
    expect(
        "GET session",
        &r,
        StatusCode::NO_CONTENT,
        &[("location", None), ("range", Some("0-11"))],
    );
    let sep = if session.contains('?') { '&' } else { '?' };
    let r = app
        .call(
            Method::PUT,
            &format!("{session}{sep}digest={d}"),
            &[],
            Body::empty(),
        )
        .await;
    let at2 = format!("/v2/h2/blobs/{d}");
    expect(
        "PUT",
        &r,
        StatusCode::CREATED,
        &[
            ("location", Some(at2.as_str())),
            ("docker-content-digest", Some(d.as_str())),
        ],
    );

    // Mount.
    let r = app
        .call(
            Method::POST,
            &format!("/v2/h3/blobs/uploads/?mount={d}&from=h"),
            &[],
            Body::empty(),
        )
        .await;
    let at3 = format!("/v2/h3/blobs/{d}");
    expect(
        "mount",
        &r,
        StatusCode::CREATED,
        &[
            ("location", Some(at3.as_str())),
            ("docker-content-digest", Some(d.as_str())),
        ],
    );

    // Blob reads.
    let len = data.len().to_string();
    let read = [
        ("docker-content-digest", Some(d.as_str())),
        ("content-length", Some(len.as_str())),
    ];
    let r = app.call(Method::HEAD, &blob_at, &[], Body::empty()).await;
    expect("HEAD blob", &r, StatusCode::OK, &read);
    let r = app.get(&blob_at).await;
    expect("GET blob", &r, StatusCode::OK, &read);
    assert_eq!(r.body, data);

    // Manifests: PUT answers Location and digest, reads answer digest, type and length.
    let (bytes, m) = app.push_image("h", "v1", b"layer", json!({})).await;
    let m = m.to_string();
    let r = app
        .put_manifest("h", "v2", media::OCI_MANIFEST, &bytes)
        .await;
    let at = format!("/v2/h/manifests/{m}");
    expect(
        "PUT manifest",
        &r,
        StatusCode::CREATED,
        &[
            ("location", Some(at.as_str())),
            ("docker-content-digest", Some(m.as_str())),
        ],
    );
    let len = bytes.len().to_string();
    let read = [
        ("docker-content-digest", Some(m.as_str())),
        ("content-type", Some(media::OCI_MANIFEST)),
        ("content-length", Some(len.as_str())),
    ];
    for reference in ["v1", m.as_str()] {
        let uri = format!("/v2/h/manifests/{reference}");
        let r = app.call(Method::HEAD, &uri, &[], Body::empty()).await;
        expect("HEAD manifest", &r, StatusCode::OK, &read);
        let r = app.get(&uri).await;
        expect("GET manifest", &r, StatusCode::OK, &read);
    }

    // Cancel: 204, then the session is unknown.
    let r = app
        .call(Method::POST, "/v2/h/blobs/uploads/", &[], Body::empty())
        .await;
    let session = r.header("location");
    let r = app.call(Method::DELETE, session, &[], Body::empty()).await;
    expect("DELETE session", &r, StatusCode::NO_CONTENT, &[]);
    let r = app.get(session).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");

    // Deletes answer 202.
    let r = app
        .call(Method::DELETE, "/v2/h/manifests/v2", &[], Body::empty())
        .await;
    expect("DELETE tag", &r, StatusCode::ACCEPTED, &[]);
    let r = app.call(Method::DELETE, &at3, &[], Body::empty()).await;
    expect("DELETE blob", &r, StatusCode::ACCEPTED, &[]);
}
