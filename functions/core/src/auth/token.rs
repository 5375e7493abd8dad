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
    /// Unique id (for revocation of this one token).
    pub jti: String,
    /// The token family: every refresh token descended from one login shares it, and its
    /// absolute expiry (`exp` never moves later within a family). Revocable as a whole.
    pub fam: String,
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

/// The registry's signing and verifying keys. A process that only verifies tokens (every
/// Lambda function but the token function and the uploads function) holds public keys only:
/// [`RegistryKeys::from_public_pems`] or [`RegistryKeys::verify_only`].
pub struct RegistryKeys {
    signing: Option<(String, EncodingKey)>,
    verifying: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

impl std::fmt::Debug for RegistryKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryKeys")
            .field("signing_kid", &self.signing.as_ref().map(|(kid, _)| kid))
            .field("verifying", &self.verifying.len())
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
    /// Keys from PKCS#8 PEM documents of private keys; the first signs.
    pub fn from_pems(pems: &[Vec<u8>]) -> Result<RegistryKeys, KeyError> {
        let mut keys = RegistryKeys::empty();
        for (i, pem) in pems.iter().enumerate() {
            let invalid =
                |e: jsonwebtoken::errors::Error| KeyError::Invalid(format!("#{i}"), e.to_string());
            let encoding = EncodingKey::from_ec_pem(pem).map_err(invalid)?;
            let jwk = Jwk::from_encoding_key(&encoding, ALGORITHM).map_err(invalid)?;
            let kid = keys.add_public(jwk).map_err(invalid)?;
            if keys.signing.is_none() {
                keys.signing = Some((kid, encoding));
            }
        }
        if keys.signing.is_none() {
            return Err(KeyError::None);
        }
        Ok(keys)
    }

    /// Verifying keys only, from SPKI PEM documents (`-----BEGIN PUBLIC KEY-----`, what
    /// `openssl pkey -pubout` prints) of P-256 keys. Such keys can check tokens, never mint one.
    pub fn from_public_pems(pems: &[Vec<u8>]) -> Result<RegistryKeys, KeyError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::DecodePublicKey;
        let mut keys = RegistryKeys::empty();
        for (i, pem) in pems.iter().enumerate() {
            let name = || format!("public #{i}");
            let text =
                std::str::from_utf8(pem).map_err(|e| KeyError::Invalid(name(), e.to_string()))?;
            let public = p256::PublicKey::from_public_key_pem(text)
                .map_err(|e| KeyError::Invalid(name(), e.to_string()))?;
            let point = public.to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(KeyError::Invalid(name(), "not an affine point".into()));
            };
            let b64 = |bytes: &[u8]| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            };
            let jwk = Jwk {
                common: jsonwebtoken::jwk::CommonParameters {
                    key_algorithm: Some(jsonwebtoken::jwk::KeyAlgorithm::ES256),
                    ..Default::default()
                },
                algorithm: jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(
                    jsonwebtoken::jwk::EllipticCurveKeyParameters {
                        key_type: jsonwebtoken::jwk::EllipticCurveKeyType::EC,
                        curve: jsonwebtoken::jwk::EllipticCurve::P256,
                        x: b64(x),
                        y: b64(y),
                    },
                ),
            };
            keys.add_public(jwk)
                .map_err(|e| KeyError::Invalid(name(), e.to_string()))?;
        }
        if keys.verifying.is_empty() {
            return Err(KeyError::None);
        }
        Ok(keys)
    }

    /// The same keys without the private part: what a process that must never mint a token
    /// keeps of keys it was handed.
    pub fn verify_only(self) -> RegistryKeys {
        RegistryKeys {
            signing: None,
            ..self
        }
    }

    /// Merges in `other`'s verifying keys (`self`'s signing key stays the one that signs).
    pub fn with_verifying(mut self, other: RegistryKeys) -> RegistryKeys {
        for jwk in other.jwks.keys {
            if let Some(kid) = &jwk.common.key_id
                && !self.verifying.contains_key(kid)
                && let Some(key) = other.verifying.get(kid)
            {
                self.verifying.insert(kid.clone(), key.clone());
                self.jwks.keys.push(jwk);
            }
        }
        if self.signing.is_none() {
            self.signing = other.signing;
        }
        self
    }

    /// Whether these keys can sign (hold a private key).
    pub fn can_sign(&self) -> bool {
        self.signing.is_some()
    }

    fn empty() -> RegistryKeys {
        RegistryKeys {
            signing: None,
            verifying: HashMap::new(),
            jwks: JwkSet { keys: Vec::new() },
        }
    }

    /// Adds a public key under its RFC 7638 thumbprint, which is its key id.
    fn add_public(&mut self, mut jwk: Jwk) -> Result<String, jsonwebtoken::errors::Error> {
        let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
        jwk.common.key_id = Some(kid.clone());
        if !self.verifying.contains_key(&kid) {
            self.verifying
                .insert(kid.clone(), DecodingKey::from_jwk(&jwk)?);
            self.jwks.keys.push(jwk);
        }
        Ok(kid)
    }

    /// The public keys, for the JWKS endpoint.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs claims with the active key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let Some((kid, key)) = &self.signing else {
            return Err(TokenError(
                "this process holds only public keys and mints no token".into(),
            ));
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).map_err(|e| TokenError(e.to_string()))
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
    fn public_keys_verify_what_the_private_key_signed_and_never_sign() {
        use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
        let private = generate_pem().expect("key");
        let public = p256::SecretKey::from_pkcs8_pem(&private)
            .expect("pkcs8")
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("spki");
        let signer = RegistryKeys::from_pems(&[private.into_bytes()]).expect("keys");
        let verifier = RegistryKeys::from_public_pems(&[public.into_bytes()]).expect("keys");
        assert_eq!(
            signer.jwks().keys[0].common.key_id,
            verifier.jwks().keys[0].common.key_id,
            "the key id is the thumbprint of the public key alone"
        );
        let now = jsonwebtoken::get_current_timestamp();
        let token = signer.sign(&claims(now + 60)).expect("sign");
        let got: AccessClaims = verifier.verify(&token, "wharf", "wharf").expect("verify");
        assert_eq!(got.access[0].name, "a");
        assert!(!verifier.can_sign());
        assert!(verifier.sign(&claims(now + 60)).is_err(), "no private key");
        let dropped = signer.verify_only();
        assert!(!dropped.can_sign() && dropped.sign(&claims(now + 60)).is_err());
        assert!(
            dropped
                .verify::<AccessClaims>(&token, "wharf", "wharf")
                .is_ok()
        );
        assert!(RegistryKeys::from_public_pems(&[b"-----BEGIN PUBLIC KEY-----".to_vec()]).is_err());
        assert!(matches!(
            RegistryKeys::from_public_pems(&[]),
            Err(KeyError::None)
        ));
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
