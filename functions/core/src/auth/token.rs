//! Registry tokens: short-lived JWTs signed with the registry's own ES256 keys.
//!
//! The first key signs; every key verifies, so a key can be rotated in (added second, then moved
//! first) and out (removed once the last token it signed has expired) without a gap. Every
//! endpoint verifies tokens locally with these keys: nothing on the request path calls out.
//! Access tokens and refresh tokens carry different audiences, so one can never pass for the
//! other.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Longest lifetime of a registry access token: a leaked token is useless within minutes.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Longest lifetime of a refresh token (what `docker login` stores): bounded, and re-checked
/// against the current policy at every use.
pub const MAX_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Clock skew tolerated on registry tokens. Wharf issues and checks them itself, so only the
/// skew between Wharf's own instances matters.
pub const REGISTRY_LEEWAY: Duration = Duration::from_secs(5);

/// The algorithm of registry keys.
const ALGORITHM: Algorithm = Algorithm::ES256;

/// One entry of the Docker `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name (or `catalog`).
    pub name: String,
    /// Granted actions.
    pub actions: Vec<String>,
}

/// Claims of a registry access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The registry service.
    pub iss: String,
    /// The caller's OIDC subject (empty for anonymous).
    pub sub: String,
    /// The registry service.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Unique id.
    pub jti: String,
    /// The caller's OIDC issuer (absent for anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// Granted access.
    pub access: Vec<AccessEntry>,
    /// Repository patterns the caller may pull, present when the catalog was asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catalog: Vec<String>,
}

/// The identity snapshot carried by a refresh token, re-evaluated against the policy at use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshClaims {
    /// The registry service.
    pub iss: String,
    /// The OIDC subject.
    pub sub: String,
    /// `<service>#refresh`.
    pub aud: String,
    /// Expiry.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Unique id (for revocation).
    pub jti: String,
    /// The OIDC issuer.
    pub idp: String,
    /// The OIDC audiences.
    pub idp_aud: Vec<String>,
    /// The OIDC claims, as verified when the refresh token was issued.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// A key problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unreadable or unwritable key file.
    #[error("key file {0}: {1}")]
    Io(String, std::io::Error),
    /// Not a PKCS#8 P-256 private key.
    #[error("key {0}: {1}")]
    Invalid(String, String),
    /// No key configured.
    #[error("no signing key configured")]
    None,
}

/// Why a registry token was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid registry token: {0}")]
pub struct TokenError(pub String);

/// The registry's signing and verifying keys.
pub struct RegistryKeys {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

impl std::fmt::Debug for RegistryKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryKeys")
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

/// A new P-256 private key as PKCS#8 PEM.
pub fn generate_pem() -> Result<String, KeyError> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    loop {
        let bytes: [u8; 32] = rand::random();
        // Fails only for the zero scalar or one above the group order: draw again.
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
            let pem = secret
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Invalid("generated".into(), e.to_string()))?;
            return Ok(pem.to_string());
        }
    }
}

/// Reads `path`, creating it with a new key (mode 0600) when it does not exist yet.
pub fn read_or_create_pem(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |e| KeyError::Io(path.display().to_string(), e);
    match std::fs::read(path) {
        Ok(pem) => Ok(pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let pem = generate_pem()?;
            write_private(path, pem.as_bytes()).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new registry signing key");
            Ok(pem.into_bytes())
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl RegistryKeys {
    /// Keys from PKCS#8 PEM documents; the first signs.
    pub fn from_pems(pems: &[Vec<u8>]) -> Result<RegistryKeys, KeyError> {
        let mut verifying = HashMap::new();
        let mut jwks = JwkSet { keys: Vec::new() };
        let mut signing = None;
        for (i, pem) in pems.iter().enumerate() {
            let invalid =
                |e: jsonwebtoken::errors::Error| KeyError::Invalid(format!("#{i}"), e.to_string());
            let encoding = EncodingKey::from_ec_pem(pem).map_err(invalid)?;
            let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM).map_err(invalid)?;
            let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(invalid)?;
            jwk.common.key_id = Some(kid.clone());
            verifying.insert(kid.clone(), DecodingKey::from_jwk(&jwk).map_err(invalid)?);
            jwks.keys.push(jwk);
            if signing.is_none() {
                signing = Some((kid, encoding));
            }
        }
        let (signing_kid, signing) = signing.ok_or(KeyError::None)?;
        Ok(RegistryKeys {
            signing_kid,
            signing,
            verifying,
            jwks,
        })
    }

    /// The public keys, for the JWKS endpoint.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs claims with the active key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).map_err(|e| TokenError(e.to_string()))
    }

    /// Verifies a token signed by any of the keys, for `issuer` and `audience`.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError(e.to_string()))?;
        if header.alg != ALGORITHM {
            return Err(TokenError(format!("algorithm {:?}", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| TokenError("no key id".into()))?;
        let key = self
            .verifying
            .get(&kid)
            .ok_or_else(|| TokenError("unknown key id".into()))?;
        let mut validation = Validation::new(ALGORITHM);
        validation.leeway = REGISTRY_LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<T>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|e| TokenError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> AccessClaims {
        let now = jsonwebtoken::get_current_timestamp();
        AccessClaims {
            iss: "wharf".into(),
            sub: "s".into(),
            aud: "wharf".into(),
            exp,
            nbf: now,
            iat: now,
            jti: "j".into(),
            idp: None,
            access: vec![AccessEntry {
                kind: "repository".into(),
                name: "a".into(),
                actions: vec!["pull".into()],
            }],
            catalog: Vec::new(),
        }
    }

    #[test]
    fn sign_verify_and_rotate() {
        let old = generate_pem().expect("key").into_bytes();
        let new = generate_pem().expect("key").into_bytes();
        let before = RegistryKeys::from_pems(std::slice::from_ref(&old)).expect("keys");
        let now = jsonwebtoken::get_current_timestamp();
        let token = before.sign(&claims(now + 60)).expect("sign");
        let after = RegistryKeys::from_pems(&[new.clone(), old]).expect("keys");
        assert_eq!(after.jwks().keys.len(), 2);
        let got: AccessClaims = after
            .verify(&token, "wharf", "wharf")
            .expect("old key still verifies");
        assert_eq!(got.access[0].name, "a");
        let retired = RegistryKeys::from_pems(&[new]).expect("keys");
        assert!(
            retired
                .verify::<AccessClaims>(&token, "wharf", "wharf")
                .is_err(),
            "retired key"
        );
    }

    #[test]
    fn expired_wrong_audience_and_tampered_tokens_fail() {
        let keys =
            RegistryKeys::from_pems(&[generate_pem().expect("key").into_bytes()]).expect("keys");
        let now = jsonwebtoken::get_current_timestamp();
        let expired = keys.sign(&claims(now - 60)).expect("sign");
        assert!(
            keys.verify::<AccessClaims>(&expired, "wharf", "wharf")
                .is_err()
        );
        let fresh = keys.sign(&claims(now + 60)).expect("sign");
        assert!(
            keys.verify::<AccessClaims>(&fresh, "wharf", "wharf#refresh")
                .is_err()
        );
        let mut parts: Vec<String> = fresh.split('.').map(str::to_owned).collect();
        let mut c = claims(now + 60);
        c.access[0].name = "b".into();
        use base64::Engine;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&c).expect("json"));
        assert!(
            keys.verify::<AccessClaims>(&parts.join("."), "wharf", "wharf")
                .is_err()
        );
    }

    #[test]
    fn created_key_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/registry.pem");
        let first = read_or_create_pem(&path).expect("create");
        assert_eq!(
            read_or_create_pem(&path).expect("read"),
            first,
            "created once"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
