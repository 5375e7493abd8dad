//! Manifest push, pull, validation, indexes, deletes and referrers.
use super::*;

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

/// The `tag` parameter of the spec's next revision ("Pushing Manifests", distribution-spec
/// main): a push by digest applies every tag, answering one `OCI-Tag` header per tag applied.
#[tokio::test]
async fn a_push_by_digest_applies_its_tag_parameters_and_names_each_in_oci_tag() {
    let app = App::new().await;
    let (bytes, digest) = app.push_image("lib/app", "base", b"layer", json!({})).await;
    let tagged = format!("{digest}?tag=1.2.3&tag=1.2&tag=latest&tag=1.2");
    let r = app
        .put_manifest("lib/app", &tagged, media::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let applied: Vec<&str> = r
        .headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(
        applied,
        ["1.2.3", "1.2", "latest"],
        "one header per tag, once each"
    );
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    for tag in ["1.2.3", "1.2", "latest", "base"] {
        let r = app.get(&format!("/v2/lib/app/manifests/{tag}")).await;
        assert_eq!(r.status, StatusCode::OK, "{tag}");
        assert_eq!(
            r.header("docker-content-digest"),
            digest.to_string(),
            "{tag}"
        );
    }
    // Without tag parameters a push by digest applies none and names none.
    let r = app
        .put_manifest("lib/app", &digest.to_string(), media::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.headers.get("oci-tag").is_none());
    let r = app.get("/v2/lib/app/tags/list").await;
    assert_eq!(
        r.json()["tags"],
        json!(["1.2", "1.2.3", "base", "latest"]),
        "exactly the tags pushed"
    );
}

/// A tag parameter that is not a valid tag refuses the whole push: no tag of the request is
/// applied, not even the valid ones before it.
#[tokio::test]
async fn a_push_by_digest_with_one_invalid_tag_applies_none() {
    let app = App::new().await;
    let (bytes, digest) = app.push_image("lib/app", "base", b"layer", json!({})).await;
    let tagged = format!("{digest}?tag=good&tag=-bad");
    let r = app
        .put_manifest("lib/app", &tagged, media::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "TAG_INVALID");
    let r = app.get("/v2/lib/app/manifests/good").await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "the valid tag was not applied"
    );
}

/// A read by a reference that is neither a valid tag nor a digest is a manifest that does not
/// exist (404 `MANIFEST_UNKNOWN`, as the conformance suite expects for `.INVALID_MANIFEST_NAME`).
#[tokio::test]
async fn reading_an_invalid_reference_is_manifest_unknown() {
    let app = App::new().await;
    app.push_image("lib/app", "v1", b"layer", json!({})).await;
    for reference in [".INVALID_MANIFEST_NAME", "sha256:0000", "-x"] {
        let r = app.get(&format!("/v2/lib/app/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{reference}");
        assert_eq!(r.error_code(), "MANIFEST_UNKNOWN", "{reference}");
        let h = app
            .call(
                Method::HEAD,
                &format!("/v2/lib/app/manifests/{reference}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(h.status, StatusCode::NOT_FOUND, "HEAD {reference}");
    }
}
