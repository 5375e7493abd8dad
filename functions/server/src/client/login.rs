//! `wharf login`: the OAuth 2.0 device authorization grant (RFC 8628) against any OIDC provider,
//! then the ID token is traded at the registry for a refresh token, which alone is stored.
//!
//! The person approves the login in a browser on any device; nothing is typed into the terminal
//! and the ID token itself is never written down.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde::Deserialize;

use super::credentials::{CredentialStore, Stored};
use super::realm;
use super::registry_host;

/// Extra wait the RFC asks for after a `slow_down` answer.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Poll interval when the provider names none (RFC 8628 §3.2).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Timeout of each HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    device_authorization_endpoint: Option<String>,
    token_endpoint: String,
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

#[derive(Deserialize)]
struct TokenReply {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// What `wharf login` needs.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    /// The registry (`host[:port]` or a URL).
    pub registry: String,
    /// The OIDC provider's issuer URL.
    pub issuer: String,
    /// The OAuth client id registered for Wharf at the provider.
    pub client_id: String,
    /// Scopes to ask for (`openid` is always included).
    pub scopes: Vec<String>,
}

fn http() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// The registry's base URL: as given when it has a scheme; plain HTTP on loopback; else HTTPS.
pub fn registry_base(registry: &str) -> String {
    if registry.contains("://") {
        return registry.trim_end_matches('/').to_owned();
    }
    let host = registry_host(registry);
    let name = host
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(&host)
        .trim_matches(['[', ']']);
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    format!("{}://{host}", if loopback { "http" } else { "https" })
}

/// Runs the device flow and stores the registry's refresh token; returns the registry host.
pub async fn login(req: &LoginRequest, out: &mut impl Write) -> Result<String> {
    let client = http()?;
    let id_token = device_flow(&client, req, out).await?;
    let refresh = exchange(&client, &registry_base(&req.registry), &id_token).await?;
    let host = registry_host(&req.registry);
    let mut store = CredentialStore::load()?;
    store.registries.insert(
        host.clone(),
        Stored {
            refresh_token: refresh,
        },
    );
    store.save()?;
    Ok(host)
}

async fn device_flow(
    client: &reqwest::Client,
    req: &LoginRequest,
    out: &mut impl Write,
) -> Result<String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        req.issuer.trim_end_matches('/')
    );
    let discovery: Discovery = client
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("reading {url}"))?;
    if discovery.issuer.trim_end_matches('/') != req.issuer.trim_end_matches('/') {
        bail!(
            "the provider at {} calls itself {:?}: refusing a discovery document for another issuer",
            req.issuer,
            discovery.issuer
        );
    }
    let device_endpoint = discovery
        .device_authorization_endpoint
        .context("this provider does not offer the device authorization grant")?;
    let mut scopes = vec!["openid".to_owned()];
    scopes.extend(req.scopes.iter().filter(|s| *s != "openid").cloned());
    let auth: DeviceAuthorization = client
        .post(&device_endpoint)
        .form(&[
            ("client_id", req.client_id.as_str()),
            ("scope", &scopes.join(" ")),
        ])
        .send()
        .await?
        .error_for_status()
        .context("the provider refused the device authorization request")?
        .json()
        .await?;
    let link = auth
        .verification_uri_complete
        .as_deref()
        .unwrap_or(&auth.verification_uri);
    writeln!(out, "To log in, open {link}")?;
    writeln!(out, "and confirm the code {}", auth.user_code)?;
    let mut interval = auth
        .interval
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_INTERVAL);
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in);
    write!(out, "waiting for approval")?;
    out.flush()?;
    loop {
        if Instant::now() > deadline {
            bail!("the code expired before the login was approved");
        }
        tokio::time::sleep(interval).await;
        write!(out, ".")?;
        out.flush()?;
        // A transient network failure while polling is retried at the next interval (RFC 8628
        // §3.5); the deadline still bounds the whole wait.
        let reply = match poll(
            client,
            &discovery.token_endpoint,
            &auth.device_code,
            &req.client_id,
        )
        .await
        {
            Ok(reply) => reply,
            Err(e) if e.is_timeout() || e.is_connect() => {
                interval += SLOW_DOWN_STEP;
                continue;
            }
            Err(e) => return Err(e).context("polling the provider's token endpoint"),
        };
        match (reply.id_token, reply.error.as_deref()) {
            (Some(token), _) => {
                writeln!(out, " approved")?;
                return Ok(token);
            }
            (None, Some("authorization_pending")) => {}
            (None, Some("slow_down")) => interval += SLOW_DOWN_STEP,
            (None, error) => bail!(
                "login failed: {} {}",
                error.unwrap_or("no ID token in the answer"),
                reply.error_description.unwrap_or_default()
            ),
        }
    }
}

/// One poll of the token endpoint.
async fn poll(
    client: &reqwest::Client,
    token_endpoint: &str,
    device_code: &str,
    client_id: &str,
) -> Result<TokenReply, reqwest::Error> {
    client
        .post(token_endpoint)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", client_id),
        ])
        .send()
        .await?
        .json()
        .await
}

/// The realm and service of the registry's challenge.
async fn challenge(client: &reqwest::Client, base: &str) -> Result<(String, String)> {
    let reply = client.get(format!("{base}/v2/")).send().await?;
    realm::challenge(reply.headers())
        .context("the registry sent no authentication challenge: is auth enabled there?")
}

/// Trades an ID token for the registry's refresh token.
pub async fn exchange(client: &reqwest::Client, base: &str, id_token: &str) -> Result<String> {
    #[derive(Deserialize)]
    struct Reply {
        refresh_token: Option<String>,
    }
    let (realm, service) = challenge(client, base).await?;
    // The ID token goes to the realm: only to the registry's own origin, over HTTPS.
    let realm = realm::check_from_env(base, &realm)?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("oidc:{id_token}"));
    let reply: Reply = client
        .get(realm)
        .query(&[
            ("service", service.as_str()),
            ("offline_token", "true"),
            ("client_id", "wharf"),
        ])
        .header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"))
        .send()
        .await?
        .error_for_status()
        .context("the registry refused the identity")?
        .json()
        .await?;
    reply
        .refresh_token
        .context("the registry issued no refresh token")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Serves `app` on a free loopback port; returns `http://127.0.0.1:PORT`.
    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        origin
    }

    #[tokio::test]
    async fn login_refuses_to_send_the_id_token_to_a_realm_on_another_origin() {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let realm = serve(axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { axum::http::StatusCode::UNAUTHORIZED }
        }))
        .await;
        let challenge = format!("Bearer realm=\"{realm}/token\",service=\"registry\"");
        let registry = serve(axum::Router::new().fallback(move || {
            let challenge = challenge.clone();
            async move {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [(axum::http::header::WWW_AUTHENTICATE, challenge)],
                )
            }
        }))
        .await;
        let err = exchange(&http().expect("client"), &registry, "id-token-do-not-leak")
            .await
            .expect_err("another origin's realm");
        assert!(
            matches!(
                err.downcast_ref::<realm::RealmError>(),
                Some(realm::RealmError::OtherOrigin { .. })
            ),
            "{err:#}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the realm was contacted");
    }

    #[test]
    fn registry_urls() {
        assert_eq!(registry_base("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(registry_base("localhost:5000"), "http://localhost:5000");
        assert_eq!(
            registry_base("registry.example.com"),
            "https://registry.example.com"
        );
        assert_eq!(
            registry_base("http://10.0.0.1:5000/"),
            "http://10.0.0.1:5000"
        );
    }
}
