//! OIDC ID token verification against trusted issuers.
//!
//! For each trusted issuer, the discovery document and its JWKS are fetched on first use and
//! cached; an unknown `kid` triggers a refetch at most once per [`JWKS_REFRESH_INTERVAL`], so a
//! flood of tokens with made-up key ids cannot make Wharf hammer an issuer. Algorithms are pinned
//! per issuer and limited to RS256/ES256/EdDSA: `none` and the HMAC family can never be
//! configured, so a token "signed" with an issuer's public key as an HMAC secret is refused.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::policy::Identity;
use crate::config::IssuerConfig;

/// Clock skew tolerated on `exp`, `nbf` and `iat`: small, since ID tokens live minutes.
pub const OIDC_LEEWAY: Duration = Duration::from_secs(30);

/// Least time between two JWKS fetches of one issuer.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Timeout of discovery and JWKS requests.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The only algorithms an issuer may be configured with.
pub const ALLOWED_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Not a JWT, or an algorithm Wharf never accepts (including `none`).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `iss` is not a trusted issuer.
    #[error("untrusted issuer {0:?}")]
    UntrustedIssuer(String),
    /// The algorithm is not allowed for this issuer.
    #[error("algorithm {0:?} is not allowed for this issuer")]
    Algorithm(Algorithm),
    /// No key with this `kid` in the issuer's JWKS.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature, expiry, not-before, audience or issuer check failed.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Discovery or JWKS could not be fetched.
    #[error("fetching issuer keys: {0}")]
    Fetch(String),
    /// The issuer configuration is unusable.
    #[error("issuer configuration: {0}")]
    Config(String),
}

#[derive(Debug, Default)]
struct KeyCache {
    keys: Option<JwkSet>,
    fetched: Option<Instant>,
}

#[derive(Debug)]
struct TrustedIssuer {
    config: IssuerConfig,
    algorithms: Vec<Algorithm>,
    cache: tokio::sync::Mutex<KeyCache>,
}

/// Verifies ID tokens of the configured issuers.
#[derive(Debug)]
pub struct OidcVerifier {
    issuers: HashMap<String, TrustedIssuer>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Issuer and key URLs must be https, except on loopback (test issuers, local development).
fn check_url(url: &str) -> Result<(), OidcError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| OidcError::Config(format!("{url:?}: {e}")))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(OidcError::Config(format!("{url:?} must use https"))),
    }
}

impl OidcVerifier {
    /// A verifier for `issuers`; refuses configurations that name a forbidden algorithm or an
    /// insecure URL.
    pub fn new(issuers: &[IssuerConfig]) -> Result<OidcVerifier, OidcError> {
        let mut map = HashMap::new();
        for config in issuers {
            check_url(&config.issuer)?;
            if config.audiences.is_empty() {
                return Err(OidcError::Config(format!(
                    "issuer {:?} needs at least one audience",
                    config.issuer
                )));
            }
            let mut algorithms = Vec::new();
            for name in &config.algorithms {
                let alg = Algorithm::from_str(name)
                    .map_err(|_| OidcError::Config(format!("unknown algorithm {name:?}")))?;
                if !ALLOWED_ALGORITHMS.contains(&alg) {
                    return Err(OidcError::Config(format!(
                        "algorithm {name:?} is not allowed (only RS256, ES256, EdDSA)"
                    )));
                }
                algorithms.push(alg);
            }
            let issuer = TrustedIssuer {
                config: config.clone(),
                algorithms,
                cache: tokio::sync::Mutex::new(KeyCache::default()),
            };
            map.insert(config.issuer.clone(), issuer);
        }
        // One TLS crypto provider for the whole process (ring, as the AWS SDK clients use); the
        // first caller installs it, later calls find it in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcError::Config(e.to_string()))?;
        Ok(OidcVerifier { issuers: map, http })
    }

    /// The configuration of the trusted issuer `iss`.
    pub fn issuer(&self, iss: &str) -> Option<&IssuerConfig> {
        self.issuers.get(iss).map(|i| &i.config)
    }

    /// True when `iss` is a trusted issuer.
    pub fn trusts(&self, iss: &str) -> bool {
        self.issuers.contains_key(iss)
    }

    /// Verifies an ID token and returns its identity.
    pub async fn verify(&self, token: &str) -> Result<Identity, OidcError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::Malformed(e.to_string()))?;
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let unverified: Iss = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| OidcError::Malformed(e.to_string()))?;
        let iss = unverified.iss.unwrap_or_default();
        let issuer = self
            .issuers
            .get(&iss)
            .ok_or(OidcError::UntrustedIssuer(iss))?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(OidcError::Algorithm(header.alg));
        }
        let key = issuer
            .key(&self.http, header.kid.as_deref(), header.alg)
            .await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = OIDC_LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_audience(&issuer.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| OidcError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if let Some(iat) = claims.get("iat").and_then(|v| v.as_u64())
            && iat > jsonwebtoken::get_current_timestamp() + OIDC_LEEWAY.as_secs()
        {
            return Err(OidcError::Invalid("issued in the future".into()));
        }
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OidcError::Invalid("missing subject".into()))?
            .to_owned();
        let audiences = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Identity {
            issuer: issuer.config.issuer.clone(),
            subject,
            audiences,
            claims,
        })
    }
}

impl TrustedIssuer {
    async fn key(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some(key) = find_key(cache.keys.as_ref(), kid, alg)? {
            return Ok(key);
        }
        if cache
            .fetched
            .is_some_and(|t| t.elapsed() < JWKS_REFRESH_INTERVAL)
        {
            return Err(OidcError::UnknownKey);
        }
        cache.fetched = Some(Instant::now());
        cache.keys = Some(self.fetch(http).await?);
        find_key(cache.keys.as_ref(), kid, alg)?.ok_or(OidcError::UnknownKey)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<JwkSet, OidcError> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let discovery: Discovery = get_json(http, &url).await?;
        if discovery.issuer != self.config.issuer {
            return Err(OidcError::Fetch(format!(
                "discovery document names issuer {:?}, expected {:?}",
                discovery.issuer, self.config.issuer
            )));
        }
        check_url(&discovery.jwks_uri)?;
        let jwks: JwkSet = get_json(http, &discovery.jwks_uri).await?;
        tracing::info!(issuer = %self.config.issuer, keys = jwks.keys.len(), "fetched issuer keys");
        Ok(jwks)
    }
}

/// GETs `url` and parses its JSON body; any failure is a [`OidcError::Fetch`].
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, OidcError> {
    let fetch = |e: reqwest::Error| OidcError::Fetch(e.to_string());
    http.get(url)
        .send()
        .await
        .map_err(fetch)?
        .error_for_status()
        .map_err(fetch)?
        .json()
        .await
        .map_err(fetch)
}

/// The key for `kid` (or the only key, when the token names none), if its declared algorithm,
/// if any, is the token's.
fn find_key(
    keys: Option<&JwkSet>,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<DecodingKey>, OidcError> {
    let Some(keys) = keys else { return Ok(None) };
    let jwk = match kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    };
    let Some(jwk) = jwk else { return Ok(None) };
    if let Some(declared) = jwk.common.key_algorithm
        && declared.to_string() != format!("{alg:?}")
    {
        return Err(OidcError::Algorithm(alg));
    }
    DecodingKey::from_jwk(jwk)
        .map(Some)
        .map_err(|e| OidcError::Invalid(format!("issuer key: {e}")))
}
