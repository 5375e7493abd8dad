//! Where a client may send a credential: the token realm a registry's challenge names.
//!
//! A registry answers `401` with `WWW-Authenticate: Bearer realm="…"`, and a client sends its
//! credential there, not to the registry. Whoever controls that header (a hostile registry, a
//! `Host` header copied into the challenge, a proxy on a plain-HTTP hop) therefore picks where
//! an OIDC ID token or a refresh token goes. So before `wharf login`, `wharf cp` or `wharf
//! doctor` send one, the realm must be:
//!
//! - HTTPS, or plain HTTP on a loopback address (local registries and tests: nothing leaves the
//!   machine), and
//! - on the registry's own origin (scheme, host and port), unless the user allowed its origin
//!   by name in [`ALLOW_REALM_ENV`] (a deployment whose tokens come from another host).
//!
//! Anonymous token requests carry nothing and are not checked.

use reqwest::Url;
use reqwest::header::HeaderMap;

/// Names the origins (comma-separated, e.g. `https://auth.example.com`) a token realm may have
/// besides the registry's own.
pub const ALLOW_REALM_ENV: &str = "WHARF_ALLOW_REALM";

/// Why a realm is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RealmError {
    /// The realm or the registry URL does not parse.
    #[error("the registry's challenge names token realm {realm:?}, which is not a URL")]
    NotAUrl {
        /// The realm as the challenge spells it.
        realm: String,
    },
    /// Plain HTTP to a host that is not loopback.
    #[error(
        "refusing to send credentials to token realm {realm}: not HTTPS (plain HTTP only on a loopback address)"
    )]
    NotHttps {
        /// The realm.
        realm: String,
    },
    /// Another origin than the registry's, not allowed by name.
    #[error(
        "refusing to send credentials to token realm {realm}: its origin {origin} is not the registry's ({registry}); if that host really issues this registry's tokens, allow it with {ALLOW_REALM_ENV}={origin}"
    )]
    OtherOrigin {
        /// The realm.
        realm: String,
        /// The realm's origin.
        origin: String,
        /// The registry's origin.
        registry: String,
    },
}

fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// Checks `realm` for a registry at `registry_base` (`https://host[:port]`), with `allowed`
/// further origins; returns the realm as a URL.
pub fn check(registry_base: &str, realm: &str, allowed: &[String]) -> Result<Url, RealmError> {
    let not_a_url = || RealmError::NotAUrl {
        realm: realm.to_owned(),
    };
    let url = Url::parse(realm).map_err(|_| not_a_url())?;
    let registry = Url::parse(registry_base).map_err(|_| not_a_url())?;
    let secure = match url.scheme() {
        "https" => true,
        "http" => is_loopback(&url),
        _ => false,
    };
    if !secure || url.host().is_none() {
        return Err(RealmError::NotHttps {
            realm: realm.to_owned(),
        });
    }
    let origin = url.origin();
    let named = allowed
        .iter()
        .filter_map(|a| Url::parse(a.trim()).ok())
        .any(|a| a.origin() == origin);
    if origin != registry.origin() && !named {
        return Err(RealmError::OtherOrigin {
            realm: realm.to_owned(),
            origin: origin.ascii_serialization(),
            registry: registry.origin().ascii_serialization(),
        });
    }
    Ok(url)
}

/// The origins [`ALLOW_REALM_ENV`] names.
pub fn allowed_from_env() -> Vec<String> {
    std::env::var(ALLOW_REALM_ENV)
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_owned())
        .collect()
}

/// [`check`] with the origins the environment allows.
pub fn check_from_env(registry_base: &str, realm: &str) -> Result<Url, RealmError> {
    check(registry_base, realm, &allowed_from_env())
}

/// The `realm` and `service` of a `Bearer` challenge in `headers`, if there is one.
pub fn challenge(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(reqwest::header::WWW_AUTHENTICATE)?
        .to_str()
        .ok()?;
    let rest = value.strip_prefix("Bearer ")?;
    let param = |name: &str| {
        rest.split(',').find_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    Some((param("realm")?, param("service").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realm_on_the_registrys_own_origin_is_accepted() {
        for (base, realm) in [
            (
                "https://registry.example.com",
                "https://registry.example.com/token",
            ),
            (
                "https://registry.example.com",
                "https://REGISTRY.example.com:443/token?x=1",
            ),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000/token"),
            ("http://localhost:5000", "http://localhost:5000/token"),
            ("http://[::1]:5000", "http://[::1]:5000/token"),
        ] {
            assert!(check(base, realm, &[]).is_ok(), "{base} {realm}");
        }
    }

    #[test]
    fn a_realm_on_another_origin_is_refused_unless_allowed_by_name() {
        for (base, realm) in [
            ("https://registry.example.com", "https://evil.example/token"),
            (
                "https://registry.example.com",
                "https://registry.example.com:8443/token",
            ),
            (
                "https://registry.example.com",
                "https://registry.example.com.evil.example/token",
            ),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token"),
        ] {
            let err = check(base, realm, &[]).expect_err(realm);
            assert!(
                matches!(err, RealmError::OtherOrigin { .. }),
                "{realm}: {err}"
            );
            assert!(err.to_string().contains(ALLOW_REALM_ENV), "{err}");
        }
        let allowed = vec!["https://auth.example.com".to_owned()];
        assert!(
            check(
                "https://registry.example.com",
                "https://auth.example.com/token",
                &allowed
            )
            .is_ok()
        );
        assert!(
            check(
                "https://registry.example.com",
                "https://auth.example.com:444/t",
                &allowed
            )
            .is_err(),
            "the whole origin must match, port included"
        );
    }

    #[test]
    fn a_realm_over_plain_http_off_loopback_is_refused_even_when_allowed() {
        let allowed = vec!["http://registry.example.com".to_owned()];
        for (base, realm) in [
            (
                "https://registry.example.com",
                "http://registry.example.com/token",
            ),
            ("http://10.0.0.1:5000", "http://10.0.0.1:5000/token"),
            (
                "http://127.0.0.1:5000",
                "http://127.0.0.1.evil.example:5000/token",
            ),
            (
                "https://registry.example.com",
                "ftp://registry.example.com/token",
            ),
            ("https://registry.example.com", "file:///etc/passwd"),
        ] {
            let err = check(base, realm, &allowed).expect_err(realm);
            assert!(matches!(err, RealmError::NotHttps { .. }), "{realm}: {err}");
        }
        assert!(matches!(
            check("https://registry.example.com", "/token", &[]),
            Err(RealmError::NotAUrl { .. })
        ));
    }
}
