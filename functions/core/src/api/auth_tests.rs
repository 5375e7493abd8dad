//! Router tests of authentication and authorization: the token endpoint against a real OIDC
//! issuer on loopback, enforcement on every endpoint, and the negative matrix, each refused
//! with the right status and with storage left unchanged.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, router};
use crate::auth::testing::TestIssuer;
use crate::auth::{AccessClaims, Auth, Policy, RegistryKeys};
use crate::config::{AuthConfig, IssuerConfig};
use crate::oci::{Algorithm as DigestAlg, media};
use crate::storage::Page;
use crate::storage::fs::FsBlobStore;
use crate::storage::redb::RedbMetaStore;

const AUD: &str = "wharf";
const HOST: &str = "registry.test";

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

struct Env {
    _dir: tempfile::TempDir,
    issuer: TestIssuer,
    state: AppState,
    router: Router,
}

fn policy(issuer: &str) -> String {
    format!(
        r#"
public = ["public/*"]

[[identity]]
name = "ci"
issuer = "{issuer}"
subject = "repo:acme/app:ref:refs/heads/main"
audience = "{AUD}"
claims = {{ repository_owner = "acme" }}
[[identity.grant]]
repositories = ["acme/**", "public/*"]
actions = ["pull", "push"]

[[identity]]
name = "reader"
issuer = "{issuer}"
subject = "repo:acme/reader:**"
[[identity.grant]]
repositories = ["acme/**"]
actions = ["pull"]

[[identity]]
name = "admin"
issuer = "{issuer}"
subject = "repo:acme/admin:**"
[[identity.grant]]
repositories = ["**"]
actions = ["pull", "push", "delete"]
"#
    )
}

fn auth_config(issuer: &str, policy_file: std::path::PathBuf) -> AuthConfig {
    AuthConfig {
        service: "wharf".into(),
        public_url: None,
        policy_file,
        signing_keys: Vec::new(),
        token_ttl_secs: 300,
        refresh_ttl_secs: 3600,
        issuers: vec![IssuerConfig {
            issuer: issuer.into(),
            audiences: vec![AUD.into()],
            algorithms: vec!["RS256".into(), "ES256".into()],
        }],
    }
}

impl Env {
    async fn new() -> Env {
        let issuer = TestIssuer::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, policy(issuer.url())).expect("policy");
        let auth =
            Auth::from_config(&auth_config(issuer.url(), policy_file), dir.path()).expect("auth");
        let blobs = FsBlobStore::open(dir.path()).await.expect("blobs");
        let meta = RedbMetaStore::open(&dir.path().join("meta.redb")).expect("meta");
        let state = AppState::new(Arc::new(blobs), Arc::new(meta)).with_auth(Arc::new(auth));
        let router = router(state.clone());
        Env {
            _dir: dir,
            issuer,
            state,
            router,
        }
    }

    fn auth(&self) -> &Auth {
        self.state.auth.as_deref().expect("auth")
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, String)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(body.into()).expect("request"))
            .await
            .expect("infallible");
        let (status, headers) = (res.status(), res.headers().clone());
        let body = res.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `GET /token` with the OIDC token as the Basic password.
    async fn exchange(&self, id_token: &str, scopes: &[&str]) -> Reply {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{id_token}"));
        let query: Vec<String> = scopes.iter().map(|s| format!("scope={s}")).collect();
        let uri = format!("/token?service=wharf&{}", query.join("&"));
        self.call(
            Method::GET,
            &uri,
            &[("authorization", format!("Basic {basic}"))],
            Body::empty(),
        )
        .await
    }

    /// A registry token for the GitHub identity `repo` with `scopes`.
    async fn token(&self, repo: &str, scopes: &[&str]) -> String {
        let id = self
            .issuer
            .mint(&self.issuer.github_claims(repo, "refs/heads/main", AUD));
        let r = self.exchange(&id, scopes).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.json()["token"].as_str().expect("token").to_owned()
    }

    async fn with_token(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: impl Into<Body>,
    ) -> Reply {
        self.call(
            method,
            uri,
            &[("authorization", format!("Bearer {token}"))],
            body,
        )
        .await
    }

    async fn push_blob(&self, repo: &str, token: &str, data: &'static [u8]) -> Reply {
        let digest = DigestAlg::Sha256.digest(data);
        self.with_token(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            token,
            data,
        )
        .await
    }

    async fn repositories(&self) -> Vec<String> {
        let page = Page {
            last: None,
            n: 1000,
        };
        self.state
            .meta
            .list_repositories(&page)
            .await
            .expect("list")
            .iter()
            .map(|r| r.to_string())
            .collect()
    }
}

fn image_manifest() -> (Vec<u8>, Vec<&'static [u8]>) {
    let config: &'static [u8] = b"{}";
    let layer: &'static [u8] = b"layer bytes";
    let m = json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DigestAlg::Sha256.digest(config).to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": DigestAlg::Sha256.digest(layer).to_string(), "size": layer.len()}]});
    (serde_json::to_vec(&m).expect("json"), vec![config, layer])
}

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
async fn grant_is_the_intersection_of_request_and_policy() {
    let env = Env::new().await;
    let id = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    let r = env
        .exchange(
            &id,
            &[
                "repository:acme/app:pull,push,delete",
                "repository:other/x:pull",
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["scope"], "repository:acme/app:pull,push");
    // A branch the policy does not name gets nothing, and that is not an error.
    let dev = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/dev", AUD));
    let r = env.exchange(&dev, &["repository:acme/app:pull,push"]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["scope"], "");
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
async fn docker_login_flow_returns_a_refresh_token_that_works() {
    let env = Env::new().await;
    let id = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{id}"));
    let r = env
        .call(
            Method::GET,
            "/token?service=wharf&offline_token=true&client_id=docker&account=ci",
            &[("authorization", format!("Basic {basic}"))],
            Body::empty(),
        )
        .await;
    let refresh = r.json()["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let form = format!(
        "grant_type=refresh_token&service=wharf&client_id=docker&scope=repository%3Aacme%2Fapp%3Apull%2Cpush&refresh_token={refresh}"
    );
    let r = env
        .call(
            Method::POST,
            "/token",
            &[("content-type", "application/x-www-form-urlencoded".into())],
            form,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["scope"], "repository:acme/app:pull,push");
    let token = r.json()["access_token"].as_str().expect("token").to_owned();
    assert_eq!(
        env.push_blob("acme/app", &token, b"via refresh")
            .await
            .status,
        StatusCode::CREATED
    );
    // A refresh token is not an access token, and an access token is not a refresh token.
    let r = env
        .with_token(Method::GET, "/v2/", &refresh, Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let form = format!("grant_type=refresh_token&refresh_token={token}");
    let r = env
        .call(
            Method::POST,
            "/token",
            &[("content-type", "application/x-www-form-urlencoded".into())],
            form,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Password grant with the OIDC token.
    let form = format!(
        "grant_type=password&username=ci&password={id}&scope=repository%3Aacme%2Fapp%3Apull&access_type=offline"
    );
    let r = env
        .call(
            Method::POST,
            "/token",
            &[("content-type", "application/x-www-form-urlencoded".into())],
            form,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["refresh_token"].is_string());
}

#[tokio::test]
async fn revoked_refresh_tokens_are_refused() {
    let env = Env::new().await;
    let id = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    let identity = env.auth().identify(&id).await.expect("valid");
    let refresh = env.auth().issue_refresh(&identity).expect("refresh");
    assert!(env.auth().identify(&refresh).await.is_ok());
    let claims: crate::auth::RefreshClaims =
        jsonwebtoken::dangerous::insecure_decode_claims(&refresh).expect("claims");
    let mut policy = Policy::parse(&policy(env.issuer.url())).expect("policy");
    policy.revoked_refresh_tokens = vec![claims.jti];
    let keys_pem = std::fs::read(env._dir.path().join(crate::auth::DEFAULT_KEY_FILE)).expect("key");
    let keys = RegistryKeys::from_pems(&[keys_pem]).expect("keys");
    let config = auth_config(env.issuer.url(), env._dir.path().join("policy.toml"));
    let revoked = Auth::new(&config, policy, keys).expect("auth");
    assert!(revoked.identify(&refresh).await.is_err());
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

#[tokio::test]
async fn forged_and_invalid_id_tokens_are_refused_and_change_nothing() {
    let env = Env::new().await;
    let other = TestIssuer::start();
    other.rotate(Algorithm::RS256);
    let good = env.issuer.github_claims("acme/app", "refs/heads/main", AUD);
    let now = jsonwebtoken::get_current_timestamp();
    let with = |patch: Value| {
        let mut c = good.clone();
        if let (Some(c), Some(p)) = (c.as_object_mut(), patch.as_object()) {
            c.extend(p.clone());
        }
        c
    };
    let valid = env.issuer.mint(&good);
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with(json!({"sub": "repo:acme/admin:ref:refs/heads/main"}))),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("test-key-1".into());
    let hs256 = jsonwebtoken::encode(
        &hs,
        &good,
        &EncodingKey::from_secret(env.issuer.public_pem().as_bytes()),
    )
    .expect("hs");
    // `other` signs with its second key, a kid this issuer never published.
    let unknown_kid = other.mint(&good);
    let untrusted = other.mint(&with(json!({"iss": other.url()})));
    let cases = [
        ("alg none", alg_none, "unknown variant `none`"),
        (
            "HS256 keyed with the issuer's public key",
            hs256,
            "algorithm HS256 is not allowed",
        ),
        (
            "expired",
            env.issuer.mint(&with(
                json!({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}),
            )),
            "ExpiredSignature",
        ),
        (
            "nbf in the future",
            env.issuer.mint(&with(json!({"nbf": now + 3600}))),
            "ImmatureSignature",
        ),
        (
            "iat in the future",
            env.issuer.mint(&with(json!({"iat": now + 3600}))),
            "issued in the future",
        ),
        (
            "wrong iss",
            env.issuer
                .mint(&with(json!({"iss": "https://evil.example.com"}))),
            "untrusted issuer",
        ),
        (
            "wrong aud",
            env.issuer.mint(&with(json!({"aud": "someone-else"}))),
            "InvalidAudience",
        ),
        (
            "no sub",
            env.issuer.mint(&with(json!({"sub": ""}))),
            "missing subject",
        ),
        ("unknown kid", unknown_kid, "unknown signing key"),
        ("tampered payload", tampered, "InvalidSignature"),
        (
            "untrusted issuer with a valid signature",
            untrusted,
            "untrusted issuer",
        ),
        ("not a JWT", "garbage".to_owned(), "malformed token"),
    ];
    let before = env.repositories().await;
    for (name, token, why) in cases {
        let r = env
            .exchange(&token, &["repository:acme/app:pull,push"])
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            "{name}"
        );
        let message = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(
            message.contains(why),
            "{name}: refused for the wrong reason: {message}"
        );
        let r = env
            .call(
                Method::GET,
                "/token?service=wharf&scope=repository:acme/app:push",
                &[("authorization", format!("Bearer {token}"))],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name} (Bearer)");
        // Presented straight to the registry, an ID token is no registry token.
        let r = env.push_blob("acme/app", &token, b"forged").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name} at the registry");
    }
    let r = env.push_blob("acme/app", &valid, b"forged").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a valid ID token is not a registry token"
    );
    assert_eq!(env.repositories().await, before, "nothing was written");
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

#[tokio::test]
async fn injected_scopes_are_refused() {
    let env = Env::new().await;
    let id = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    for scope in [
        "repository:acme/app,secret/x:pull",
        "repository:acme/app:pull,push:secret",
        "repository:acme/../secret:pull",
        "repository:acme/app:pull%0Arepository:secret/x:push",
        "repository:ACME/app:pull",
        "registry:catalog:push",
    ] {
        let r = env.exchange(&id, &[scope]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{scope}");
    }
    let r = env
        .call(Method::GET, "/token?service=not-wharf", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rotated_issuer_keys_verify_and_unknown_kids_do_not_refetch_every_time() {
    let env = Env::new().await;
    let old = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    env.issuer.rotate(Algorithm::ES256);
    let new = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    // Both keys are published: both tokens verify (ES256 and RS256).
    assert!(env.auth().identify(&old).await.is_ok());
    assert!(env.auth().identify(&new).await.is_ok());
    // A key published after the last fetch is found only once the refresh interval passed.
    env.issuer.rotate(Algorithm::RS256);
    let newest = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    let err = env
        .auth()
        .identify(&newest)
        .await
        .expect_err("refetch is rate-limited");
    assert!(err.to_string().contains("unknown signing key"), "{err}");
}
