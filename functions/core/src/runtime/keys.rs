//! Which registry keys a process gets: private keys only where tokens are minted (the token
//! function, and the uploads function, which signs upload-lane capabilities), public keys
//! everywhere else, so a pull-side function that is compromised cannot grant push or delete.
//!
//! In a deployment the private keys live in their own secret ([`SIGNING_SECRET_ID_ENV`]), read
//! only by the functions that sign; the other secrets hold `verify_keys` (public PEMs). A
//! process that only verifies also drops any private key it is handed ([`KeyUse::VerifyOnly`]):
//! the registry makes that check itself rather than trusting every secret to be laid out right.
//!
//! Layer rule: reads keys from secrets and files; never handles a request.

use std::path::Path;

use super::{RuntimeError, Secrets};
use crate::auth::token::{KeyError, RegistryKeys};
use crate::auth::{Auth, SetupError};
use crate::config::AuthConfig;

/// Names the secret holding the private signing keys (`{"signing_keys": [PEM, …]}`), read in
/// addition to [`super::SECRET_ID_ENV`] by the functions that sign.
pub const SIGNING_SECRET_ID_ENV: &str = "WHARF_SIGNING_SECRET_ID";

/// What a process does with registry keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Mints tokens or capabilities: needs a private key.
    Sign,
    /// Only checks tokens: keeps public keys, drops any private key it is handed.
    VerifyOnly,
}

impl Secrets {
    /// Takes the signing secret's keys into `self`. The signing secret holds nothing else, and
    /// the keys come from one place only.
    pub fn merge_signing(&mut self, signing: Secrets) -> Result<(), RuntimeError> {
        let only_keys = Secrets {
            signing_keys: Vec::new(),
            ..signing.clone()
        };
        if !only_keys.is_empty() {
            return Err(RuntimeError::Secret(format!(
                "the signing secret ({SIGNING_SECRET_ID_ENV}) holds only signing_keys"
            )));
        }
        if !self.signing_keys.is_empty() {
            return Err(RuntimeError::Secret(format!(
                "signing_keys in both secrets: keep them in the signing secret \
                 ({SIGNING_SECRET_ID_ENV}) only"
            )));
        }
        self.signing_keys = signing.signing_keys;
        Ok(())
    }

    /// Whether the secret holds any key, private or public.
    pub fn has_keys(&self) -> bool {
        !self.signing_keys.is_empty() || !self.verify_keys.is_empty()
    }

    fn is_empty(&self) -> bool {
        !self.has_keys()
            && self.blobs_access_key_id.is_none()
            && self.blobs_secret_access_key.is_none()
            && self.catalog_access_key_id.is_none()
            && self.catalog_secret_access_key.is_none()
    }
}

/// The keys of a process: from the secret when it holds any, else from `[auth] signing_keys`
/// (or the key file under `data_dir`, created on first use, when the process signs).
pub fn registry_keys(
    auth: &AuthConfig,
    secrets: Option<&Secrets>,
    data_dir: Option<&Path>,
    key_use: KeyUse,
) -> Result<RegistryKeys, RuntimeError> {
    let keys = match secrets.filter(|s| s.has_keys()) {
        Some(s) => from_secret(s)?,
        None if key_use == KeyUse::VerifyOnly && auth.signing_keys.is_empty() => {
            return Err(SetupError::from(KeyError::None).into());
        }
        None => Auth::load_keys(auth, data_dir.unwrap_or(Path::new(".")))?,
    };
    Ok(match key_use {
        KeyUse::Sign if !keys.can_sign() => {
            return Err(RuntimeError::Secret(format!(
                "this function signs tokens but holds only public keys: give it the signing \
                 secret ({SIGNING_SECRET_ID_ENV})"
            )));
        }
        KeyUse::Sign => keys,
        KeyUse::VerifyOnly => {
            if keys.can_sign() && secrets.is_some_and(|s| !s.signing_keys.is_empty()) {
                tracing::warn!(
                    "this function only verifies tokens, but its secret holds private \
                     signing_keys: they were dropped; keep only verify_keys in that secret"
                );
            }
            keys.verify_only()
        }
    })
}

fn from_secret(s: &Secrets) -> Result<RegistryKeys, RuntimeError> {
    let pems =
        |texts: &[String]| -> Vec<Vec<u8>> { texts.iter().map(|k| k.clone().into()).collect() };
    let signing = match s.signing_keys.is_empty() {
        true => None,
        false => Some(RegistryKeys::from_pems(&pems(&s.signing_keys)).map_err(SetupError::from)?),
    };
    let public = match s.verify_keys.is_empty() {
        true => None,
        false => {
            Some(RegistryKeys::from_public_pems(&pems(&s.verify_keys)).map_err(SetupError::from)?)
        }
    };
    match (signing, public) {
        (Some(signing), Some(public)) => Ok(signing.with_verifying(public)),
        (Some(keys), None) | (None, Some(keys)) => Ok(keys),
        (None, None) => Err(SetupError::from(KeyError::None).into()),
    }
}

#[cfg(test)]
mod tests {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};

    use super::*;
    use crate::auth::token::generate_pem;

    fn public_of(private: &str) -> String {
        p256::SecretKey::from_pkcs8_pem(private)
            .expect("pkcs8")
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("spki")
    }

    fn auth() -> AuthConfig {
        toml::from_str("policy = \"\"").expect("auth table")
    }

    #[test]
    fn a_verify_only_function_keeps_no_private_key_even_when_handed_one() {
        let private = generate_pem().expect("key");
        let secrets = Secrets {
            signing_keys: vec![private],
            ..Secrets::default()
        };
        let keys = registry_keys(&auth(), Some(&secrets), None, KeyUse::VerifyOnly).expect("keys");
        assert!(!keys.can_sign(), "the private key was dropped");
        let keys = registry_keys(&auth(), Some(&secrets), None, KeyUse::Sign).expect("keys");
        assert!(keys.can_sign());
    }

    #[test]
    fn public_keys_verify_and_a_signing_function_refuses_them_alone() {
        let private = generate_pem().expect("key");
        let secrets = Secrets {
            verify_keys: vec![public_of(&private)],
            ..Secrets::default()
        };
        let keys = registry_keys(&auth(), Some(&secrets), None, KeyUse::VerifyOnly).expect("keys");
        assert!(!keys.can_sign());
        assert_eq!(keys.jwks().keys.len(), 1);
        let err = registry_keys(&auth(), Some(&secrets), None, KeyUse::Sign)
            .expect_err("a signer needs the private key");
        assert!(err.to_string().contains(SIGNING_SECRET_ID_ENV), "{err}");
    }

    #[test]
    fn a_verify_only_function_with_no_key_anywhere_refuses_to_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = registry_keys(&auth(), None, Some(dir.path()), KeyUse::VerifyOnly)
            .expect_err("no key to verify with");
        assert!(err.to_string().contains("no signing key"), "{err}");
        assert!(
            std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
            "no key file was created for a process that only verifies"
        );
    }

    #[test]
    fn the_signing_secret_holds_only_keys_and_the_keys_come_from_one_place() {
        let signing = Secrets::parse(r#"{"signing_keys":["k"]}"#).expect("json");
        let mut pull =
            Secrets::parse(r#"{"blobs_access_key_id":"A","blobs_secret_access_key":"s"}"#)
                .expect("json");
        pull.merge_signing(signing.clone()).expect("merged");
        assert_eq!(pull.signing_keys, ["k"]);
        assert!(pull.merge_signing(signing).is_err(), "keys twice");
        let mut other = Secrets::default();
        let leaky = Secrets::parse(
            r#"{"signing_keys":["k"],"blobs_access_key_id":"A","blobs_secret_access_key":"s"}"#,
        )
        .expect("json");
        assert!(other.merge_signing(leaky).is_err());
    }
}
