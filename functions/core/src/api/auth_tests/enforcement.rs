//! Enforcement on registry endpoints: grants, public repositories, isolation, the catalog.
use super::*;

#[tokio::test]
async fn anonymous_base_request_is_challenged() {
    let env = Env::new().await;
    let r = env.call(Method::GET, "/v2/", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"http://registry.test/token\",service=\"wharf\""
    );
}

#[tokio::test]
async fn ci_identity_pushes_and_pulls_within_its_policy() {
    let env = Env::new().await;
    let token = env
        .token("acme/app", &["repository:acme/app:pull,push"])
        .await;
    assert_eq!(
        env.with_token(Method::GET, "/v2/", &token, Body::empty())
            .await
            .status,
        StatusCode::OK
    );
    let (manifest, blobs) = image_manifest();
    for blob in blobs {
        assert_eq!(
            env.push_blob("acme/app", &token, blob).await.status,
            StatusCode::CREATED
        );
    }
    let r = env
        .with_token(
            Method::PUT,
            "/v2/acme/app/manifests/v1",
            &token,
            manifest.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = env
        .with_token(
            Method::GET,
            "/v2/acme/app/manifests/v1",
            &token,
            Body::empty(),
        )
        .await;
    assert_eq!(r.body.as_ref(), manifest.as_slice());
    // The same token does not reach another repository, even one the identity could get.
    let r = env
        .with_token(
            Method::GET,
            "/v2/acme/other/manifests/v1",
            &token,
            Body::empty(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    // Nor delete, which its policy does not grant.
    let r = env
        .with_token(
            Method::DELETE,
            "/v2/acme/app/manifests/v1",
            &token,
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn anonymous_may_pull_public_repositories_but_never_push() {
    let env = Env::new().await;
    let token = env
        .token("acme/app", &["repository:public/tool:pull,push"])
        .await;
    let (manifest, blobs) = image_manifest();
    for blob in blobs {
        env.push_blob("public/tool", &token, blob).await;
    }
    env.with_token(
        Method::PUT,
        "/v2/public/tool/manifests/v1",
        &token,
        manifest,
    )
    .await;
    let r = env
        .call(
            Method::GET,
            "/v2/public/tool/manifests/v1",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = env
        .call(Method::GET, "/v2/public/tool/tags/list", &[], Body::empty())
        .await;
    assert_eq!(r.json()["tags"], json!(["v1"]));
    let r = env
        .call(
            Method::POST,
            "/v2/public/tool/blobs/uploads/",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"http://registry.test/token\",service=\"wharf\",scope=\"repository:public/tool:pull,push\""
    );
    // An anonymous token exchange grants public pull only.
    let r = env
        .call(
            Method::GET,
            "/token?scope=repository:public/tool:pull,push",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.json()["scope"], "repository:public/tool:pull");
    let r = env
        .call(Method::GET, "/v2/acme/app/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "private repositories need a token"
    );
}

#[tokio::test]
async fn push_with_a_pull_only_grant_is_denied_and_changes_nothing() {
    let env = Env::new().await;
    let token = env
        .token("acme/reader", &["repository:acme/app:pull,push"])
        .await;
    let before = env.repositories().await;
    let r = env.push_blob("acme/app", &token, b"data").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    let (manifest, _) = image_manifest();
    let r = env
        .with_token(Method::PUT, "/v2/acme/app/manifests/v1", &token, manifest)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(env.repositories().await, before);
}

#[tokio::test]
async fn a_private_blob_is_not_readable_through_another_repository() {
    let env = Env::new().await;
    let admin = env
        .token("acme/admin", &["repository:secret/x:push,pull"])
        .await;
    assert_eq!(
        env.push_blob("secret/x", &admin, b"secret").await.status,
        StatusCode::CREATED
    );
    let digest = DigestAlg::Sha256.digest(b"secret");
    let reader = env
        .token(
            "acme/reader",
            &["repository:acme/reader:pull", "repository:secret/x:pull"],
        )
        .await;
    let r = env
        .with_token(
            Method::GET,
            &format!("/v2/acme/reader/blobs/{digest}"),
            &reader,
            Body::empty(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
    let r = env
        .with_token(
            Method::GET,
            &format!("/v2/secret/x/blobs/{digest}"),
            &reader,
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Mounting needs pull on the source: without it, a plain upload session starts.
    let ci = env
        .token(
            "acme/app",
            &["repository:acme/app:pull,push", "repository:secret/x:pull"],
        )
        .await;
    let r = env
        .with_token(
            Method::POST,
            &format!("/v2/acme/app/blobs/uploads/?mount={digest}&from=secret/x"),
            &ci,
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = env
        .with_token(
            Method::GET,
            &format!("/v2/acme/app/blobs/{digest}"),
            &ci,
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn catalog_lists_only_what_the_caller_may_pull() {
    let env = Env::new().await;
    let admin = env
        .token(
            "acme/admin",
            &[
                "repository:acme/app:push",
                "repository:secret/x:push",
                "repository:public/tool:push",
            ],
        )
        .await;
    for repo in ["acme/app", "secret/x", "public/tool"] {
        env.push_blob(repo, &admin, b"x").await;
    }
    let ci = env.token("acme/app", &["registry:catalog:*"]).await;
    let r = env
        .with_token(Method::GET, "/v2/_catalog", &ci, Body::empty())
        .await;
    assert_eq!(r.json()["repositories"], json!(["acme/app", "public/tool"]));
    let r = env
        .call(Method::GET, "/v2/_catalog", &[], Body::empty())
        .await;
    assert_eq!(r.json()["repositories"], json!(["public/tool"]));
    let r = env
        .call(Method::GET, "/v2/_catalog?n=1", &[], Body::empty())
        .await;
    assert_eq!(r.json()["repositories"], json!(["public/tool"]));
    assert_eq!(
        r.header("link"),
        "",
        "no next page: nothing else is visible"
    );
}

#[tokio::test]
async fn expired_registry_tokens_are_refused() {
    let env = Env::new().await;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = AccessClaims {
        iss: "wharf".into(),
        sub: "repo:acme/app:ref:refs/heads/main".into(),
        aud: "wharf".into(),
        exp: now - 60,
        nbf: now - 400,
        iat: now - 400,
        jti: "replayed".into(),
        idp: Some(env.issuer.url().into()),
        access: vec![crate::auth::AccessEntry {
            kind: "repository".into(),
            name: "acme/app".into(),
            actions: vec!["push".into(), "pull".into()],
        }],
        catalog: Vec::new(),
    };
    let expired = env.auth().keys.sign(&claims).expect("sign");
    let r = env.push_blob("acme/app", &expired, b"late").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").starts_with("Bearer realm="));
}

/// Issue 16: `wharf serve` copied the `Host` header into the challenge, so
/// `Host: evil",service="x` gave the client a second `service` (and any realm an attacker
/// liked). A host that is not `host[:port]` is dropped; every parameter is quote-escaped.
#[tokio::test]
async fn a_host_header_cannot_inject_challenge_parameters() {
    let env = Env::new().await;
    for host in [
        "evil\",service=\"x",
        "evil\\\",realm=\"https://evil.example/token",
        "registry.test:5000\", scope=\"repository:acme/app:push",
        "registry.test/path",
    ] {
        let req = Request::builder()
            .uri("/v2/acme/app/manifests/v1")
            .header("host", host)
            .body(Body::empty())
            .expect("request");
        let res = env.router.clone().oneshot(req).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            challenge,
            "Bearer realm=\"/token\",service=\"wharf\",scope=\"repository:acme/app:pull\"",
            "{host}"
        );
    }
    // A plain host with a port, or an IPv6 literal, is still the realm's origin.
    for (host, realm) in [
        ("registry.test:5000", "http://registry.test:5000/token"),
        ("[::1]:5000", "http://[::1]:5000/token"),
    ] {
        let req = Request::builder()
            .uri("/v2/")
            .header("host", host)
            .body(Body::empty())
            .expect("request");
        let res = env.router.clone().oneshot(req).await.expect("infallible");
        let challenge = res.headers()["www-authenticate"].to_str().expect("ascii");
        assert!(
            challenge.starts_with(&format!("Bearer realm=\"{realm}\",")),
            "{challenge}"
        );
    }
}
