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
    /// The cause the log records (never sent to the client).
    cause: String,
}

impl Reply {
    /// Reads a whole response, with the cause its log entry carries.
    async fn of(res: axum::response::Response) -> Reply {
        let (status, headers) = (res.status(), res.headers().clone());
        let cause = res
            .extensions()
            .get::<crate::oci::error::ErrorLog>()
            .and_then(|log| log.cause.clone())
            .unwrap_or_default();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body,
            cause,
        }
    }

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
        policy_file: Some(policy_file),
        policy: None,
        policy_in_table: false,
        signing_keys: Vec::new(),
        token_ttl_secs: 300,
        refresh_ttl_secs: 3600,
        issuers: vec![IssuerConfig {
            issuer: issuer.into(),
            audiences: vec![AUD.into()],
            algorithms: vec!["RS256".into(), "ES256".into()],
            interactive: false,
        }],
    }
}

impl Env {
    /// A registry trusting one CI-style (not interactive) issuer.
    async fn new() -> Env {
        Env::with_config(|_| {}).await
    }

    /// A registry whose issuer is marked interactive: its identities get refresh tokens.
    async fn people() -> Env {
        Env::with_config(|c| c.issuers[0].interactive = true).await
    }

    async fn with_config(tweak: impl FnOnce(&mut AuthConfig)) -> Env {
        let issuer = TestIssuer::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, policy(issuer.url())).expect("policy");
        let mut config = auth_config(issuer.url(), policy_file);
        tweak(&mut config);
        let auth = Auth::from_config(&config, dir.path()).expect("auth");
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
        Reply::of(res).await
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

mod enforcement;
mod lane;
mod oidc;
mod refresh;
mod token_endpoint;
