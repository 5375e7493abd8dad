//! A test OIDC issuer on loopback: discovery document, JWKS with key rotation, and minting of
//! CI-shaped (GitHub Actions) ID tokens signed RS256 or ES256.
//!
//! It runs on its own thread and runtime, so synchronous and asynchronous tests can both use it,
//! and stops when dropped. Compiled for tests and with the `testing` feature only.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key of the test issuer.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
    public_pem: String,
}

#[derive(Default)]
struct Keys {
    /// Published keys; the last one signs.
    keys: Vec<TestKey>,
    /// The repository and ref the GitHub Actions token endpoint mints for.
    actions_identity: Option<(String, String)>,
}

/// The bearer token the GitHub Actions endpoint expects (what a runner gets in
/// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
pub const ACTIONS_REQUEST_TOKEN: &str = "test-actions-request-token";

/// The test issuer.
pub struct TestIssuer {
    url: String,
    keys: Arc<Mutex<Keys>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn new_key(alg: Algorithm, n: usize) -> TestKey {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let (private_pem, public_pem) = match alg {
        Algorithm::RS256 => {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
            let private = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
            let public = key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem");
            (private, public)
        }
        _ => {
            let private = crate::auth::token::generate_pem().expect("EC key");
            let secret: p256::SecretKey =
                p256::pkcs8::DecodePrivateKey::from_pkcs8_pem(&private).expect("parse EC key");
            let public = secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem");
            (private, public)
        }
    };
    let encoding = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(private_pem.as_bytes()),
    }
    .expect("encoding key");
    let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("jwk");
    let kid = format!("test-key-{n}");
    jwk.common.key_id = Some(kid.clone());
    TestKey {
        kid,
        alg,
        encoding,
        jwk,
        public_pem,
    }
}

async fn discovery(State(url): State<String>) -> Json<Value> {
    Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

/// The GitHub Actions runtime's ID token endpoint: bearer-protected, audience from the query.
fn actions_token(
    keys: &Mutex<Keys>,
    url: &str,
    headers: &axum::http::HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> Result<Json<Value>, axum::http::StatusCode> {
    let expected = format!("Bearer {ACTIONS_REQUEST_TOKEN}");
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !auth.eq_ignore_ascii_case(&expected) {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    let keys = keys
        .lock()
        .map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)?;
    let (repo, git_ref) = keys
        .actions_identity
        .clone()
        .ok_or(axum::http::StatusCode::NOT_FOUND)?;
    let audience = query
        .get("audience")
        .cloned()
        .unwrap_or_else(|| "https://github.com/acme".into());
    let claims = github_claims(url, &repo, &git_ref, &audience);
    Ok(Json(json!({ "value": sign(&keys, &claims) })))
}

fn sign(keys: &Keys, claims: &Value) -> String {
    let key = keys.keys.last().expect("a key");
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

fn github_claims(url: &str, repo: &str, git_ref: &str, aud: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    let owner = repo.split('/').next().unwrap_or_default();
    json!({
        "iss": url,
        "aud": aud,
        "sub": format!("repo:{repo}:ref:{git_ref}"),
        "repository": repo,
        "repository_owner": owner,
        "repository_owner_id": "4242",
        "repository_id": "777",
        "ref": git_ref,
        "job_workflow_ref": format!("{repo}/.github/workflows/release.yml@{git_ref}"),
        "event_name": "push",
        "jti": format!("{:032x}", rand::random::<u128>()),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    })
}

impl TestIssuer {
    /// Starts an issuer on a free loopback port with one RS256 key.
    pub fn start() -> TestIssuer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let keys = Arc::new(Mutex::new(Keys::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (served_keys, served_url) = (keys.clone(), url.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let actions_keys = served_keys.clone();
                let actions_url = served_url.clone();
                let jwks = get(move || {
                    let keys = served_keys.clone();
                    async move {
                        let keys = keys.lock().expect("keys");
                        Json(JwkSet {
                            keys: keys.keys.iter().map(|k| k.jwk.clone()).collect(),
                        })
                    }
                });
                let actions = get(
                    move |headers: axum::http::HeaderMap,
                          query: axum::extract::Query<
                        std::collections::HashMap<String, String>,
                    >| {
                        let keys = actions_keys.clone();
                        let url = actions_url.clone();
                        async move { actions_token(&keys, &url, &headers, &query) }
                    },
                );
                let app = Router::new()
                    .route("/.well-known/openid-configuration", get(discovery))
                    .with_state(served_url)
                    .route("/jwks", jwks)
                    .route("/actions/token", actions);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let issuer = TestIssuer {
            url,
            keys,
            stop: Some(stop),
            thread: Some(thread),
        };
        issuer.rotate(Algorithm::RS256);
        issuer
    }

    /// The issuer URL (the `iss` of its tokens).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Publishes a new key of `alg` and makes it the signing key; returns its `kid`.
    pub fn rotate(&self, alg: Algorithm) -> String {
        let mut keys = self.keys.lock().expect("keys");
        let key = new_key(alg, keys.keys.len() + 1);
        let kid = key.kid.clone();
        keys.keys.push(key);
        kid
    }

    /// Stops publishing every key but the signing one.
    pub fn retire_old_keys(&self) {
        let mut keys = self.keys.lock().expect("keys");
        let n = keys.keys.len();
        keys.keys.drain(..n.saturating_sub(1));
    }

    /// The signing key's public key as PEM (for algorithm-confusion tests).
    pub fn public_pem(&self) -> String {
        let keys = self.keys.lock().expect("keys");
        keys.keys
            .last()
            .map(|k| k.public_pem.clone())
            .unwrap_or_default()
    }

    /// Signs `claims` with the signing key.
    pub fn mint(&self, claims: &Value) -> String {
        sign(&self.keys.lock().expect("keys"), claims)
    }

    /// Claims shaped like a GitHub Actions ID token for `repo` (`owner/name`) at `git_ref`,
    /// valid for ten minutes, for audience `aud`.
    pub fn github_claims(&self, repo: &str, git_ref: &str, aud: &str) -> Value {
        github_claims(&self.url, repo, git_ref, aud)
    }

    /// Makes the GitHub Actions endpoint ([`TestIssuer::actions_url`]) mint tokens for `repo`
    /// at `git_ref`, as a runner of that workflow would get.
    pub fn set_actions_identity(&self, repo: &str, git_ref: &str) {
        self.keys.lock().expect("keys").actions_identity =
            Some((repo.to_owned(), git_ref.to_owned()));
    }

    /// The value of `ACTIONS_ID_TOKEN_REQUEST_URL` for this issuer.
    pub fn actions_url(&self) -> String {
        format!("{}/actions/token?api-version=2.0", self.url)
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
