//! Authentication and authorization: OIDC identities in, short-lived repository-scoped registry
//! tokens out, verified locally on every request.
//!
//! Layer rule: this module knows the OCI model and HTTP header values, but never storage and
//! never a handler. The API asks it two questions: "who is this credential?" (token endpoint)
//! and "may this token do that?" (every other endpoint, with no network call).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;

use crate::config::AuthConfig;
use crate::oci::RepoName;

pub mod live;
pub mod oidc;
pub mod pattern;
pub mod policy;
pub mod refresh;
pub mod scope;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod token;

pub use live::{LivePolicy, POLICY_CACHE_TTL, PolicySource};
pub use oidc::{OidcError, OidcVerifier};
pub use policy::{Identity, Policy};
pub use refresh::{RefreshError, RefreshFamily, Verified};
pub use scope::{Action, Scope};
pub use token::{AccessClaims, AccessEntry, RefreshClaims, RegistryKeys};

/// File name of the signing key created in the data directory when none is configured.
pub const DEFAULT_KEY_FILE: &str = "keys/registry-es256.pem";

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The policy file.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The issuers.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// The signing keys.
    #[error(transparent)]
    Keys(#[from] token::KeyError),
    /// A lifetime over its bound.
    #[error("{0}")]
    Lifetime(String),
    /// Not exactly one of `policy_file`, `policy` and `policy_in_table` is set.
    #[error("[auth] needs exactly one of policy_file, policy and policy_in_table")]
    PolicySource,
    /// `policy_in_table` is set: the policy must be read from the metadata store.
    #[error("the policy is kept in the metadata store (policy_in_table)")]
    PolicyInTable,
}

/// Why a credential was refused at the token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The OIDC token failed verification.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// The refresh token is revoked, or its issuer or audience is no longer accepted.
    #[error(transparent)]
    Refresh(#[from] RefreshError),
}

/// Everything the API needs to authenticate and authorize.
#[derive(Debug)]
pub struct Auth {
    /// The service name.
    pub service: String,
    public_url: Option<String>,
    policy: LivePolicy,
    /// The OIDC verifier.
    pub oidc: OidcVerifier,
    /// The registry's keys.
    pub keys: RegistryKeys,
    token_ttl: Duration,
    refresh_ttl: Duration,
}

pub(crate) fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

pub(crate) fn new_jti() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Auth {
    /// Builds the auth state from configuration (reading the policy and the keys).
    /// A policy file is re-read when it changes ([`live`]).
    pub fn from_config(config: &AuthConfig, data_dir: &Path) -> Result<Auth, SetupError> {
        let policy = Auth::policy_from_config(config)?;
        let keys = Auth::load_keys(config, data_dir)?;
        let auth = Auth::new(config, policy, keys)?;
        Ok(match &config.policy_file {
            Some(path) => auth.with_live_policy(LivePolicy::from_file(path)?),
            None => auth,
        })
    }

    /// The same auth state with `policy` in force (e.g. one that follows its source).
    pub fn with_live_policy(self, policy: LivePolicy) -> Auth {
        Auth { policy, ..self }
    }

    /// The policy in force now (see [`live`] for how it follows its source).
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.get()
    }

    /// The policy and its reload state: call [`LivePolicy::refresh`] before authorizing.
    pub fn live_policy(&self) -> &LivePolicy {
        &self.policy
    }

    /// The signing keys `config` names, or the one under `data_dir` (created on first use).
    pub fn load_keys(config: &AuthConfig, data_dir: &Path) -> Result<RegistryKeys, SetupError> {
        let pems = if config.signing_keys.is_empty() {
            vec![token::read_or_create_pem(&data_dir.join(DEFAULT_KEY_FILE))?]
        } else {
            config
                .signing_keys
                .iter()
                .map(|p| {
                    std::fs::read(p).map_err(|e| token::KeyError::Io(p.display().to_string(), e))
                })
                .collect::<Result<_, _>>()?
        };
        Ok(RegistryKeys::from_pems(&pems)?)
    }

    /// The policy `config` names: its file, or its inline text. A policy kept in the metadata
    /// store is read by `runtime::load_policy`, which has the store.
    pub fn policy_from_config(config: &AuthConfig) -> Result<Policy, SetupError> {
        match (&config.policy_file, &config.policy, config.policy_in_table) {
            (Some(path), None, false) => Ok(Policy::load(path)?),
            (None, Some(text), false) => Ok(Policy::parse(text)?),
            (None, None, true) => Err(SetupError::PolicyInTable),
            _ => Err(SetupError::PolicySource),
        }
    }

    /// Builds the auth state from parts already loaded.
    pub fn new(
        config: &AuthConfig,
        policy: Policy,
        keys: RegistryKeys,
    ) -> Result<Auth, SetupError> {
        let token_ttl = Duration::from_secs(config.token_ttl_secs);
        if token_ttl > token::MAX_TOKEN_TTL || token_ttl.is_zero() {
            return Err(SetupError::Lifetime(format!(
                "token_ttl_secs must be between 1 and {}",
                token::MAX_TOKEN_TTL.as_secs()
            )));
        }
        let refresh_ttl = Duration::from_secs(config.refresh_ttl_secs);
        if refresh_ttl > token::MAX_REFRESH_TTL {
            return Err(SetupError::Lifetime(format!(
                "refresh_ttl_secs must be at most {}",
                token::MAX_REFRESH_TTL.as_secs()
            )));
        }
        Ok(Auth {
            service: config.service.clone(),
            public_url: config.public_url.clone(),
            policy: LivePolicy::fixed(policy),
            oidc: OidcVerifier::new(&config.issuers)?,
            keys,
            token_ttl,
            refresh_ttl,
        })
    }

    /// Access token lifetime.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// Resolves a credential presented at the token endpoint: an OIDC ID token of a trusted
    /// issuer, or a refresh token this registry issued.
    pub async fn identify(&self, credential: &str) -> Result<Identity, CredentialError> {
        Ok(self.verify_credential(credential).await?.identity)
    }

    /// Like [`Auth::identify`], also telling the refresh-token family of a refresh token.
    pub async fn verify_credential(&self, credential: &str) -> Result<Verified, CredentialError> {
        if let Ok(refresh) =
            self.keys
                .verify::<RefreshClaims>(credential, &self.service, &self.refresh_audience())
        {
            return Ok(self.check_refresh(refresh)?);
        }
        Ok(Verified {
            identity: self.oidc.verify(credential).await?,
            family: None,
        })
    }

    /// The intersection of what was asked and what the policy allows. A partial grant is not an
    /// error; a scope granting nothing is left out.
    pub fn grant(
        &self,
        identity: Option<&Identity>,
        scopes: &[Scope],
    ) -> (Vec<AccessEntry>, Vec<String>) {
        let policy = self.policy();
        let mut access = Vec::new();
        let mut catalog = Vec::new();
        for scope in scopes {
            match scope {
                Scope::Repository(repo, asked) => {
                    let allowed = policy.allowed(identity, repo);
                    let granted: Vec<String> = asked
                        .intersection(&allowed)
                        .map(|a| a.to_string())
                        .collect();
                    if !granted.is_empty() {
                        access.push(AccessEntry {
                            kind: "repository".into(),
                            name: repo.to_string(),
                            actions: granted,
                        });
                    }
                }
                Scope::Catalog => {
                    catalog = policy.pull_patterns(identity);
                    access.push(AccessEntry {
                        kind: "registry".into(),
                        name: "catalog".into(),
                        actions: vec!["*".into()],
                    });
                }
            }
        }
        (access, catalog)
    }

    /// Issues an access token.
    pub fn issue(
        &self,
        identity: Option<&Identity>,
        access: Vec<AccessEntry>,
        catalog: Vec<String>,
    ) -> Result<String, token::TokenError> {
        let now = now();
        let claims = AccessClaims {
            iss: self.service.clone(),
            sub: identity.map(|i| i.subject.clone()).unwrap_or_default(),
            aud: self.service.clone(),
            exp: now + self.token_ttl.as_secs(),
            nbf: now,
            iat: now,
            jti: new_jti(),
            idp: identity.map(|i| i.issuer.clone()),
            access,
            catalog,
        };
        self.keys.sign(&claims)
    }

    /// Verifies an access token presented to a registry endpoint.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, token::TokenError> {
        self.keys.verify(token, &self.service, &self.service)
    }

    /// The token realm: `<public_url>/token`, or `<origin>/token` for the origin
    /// (`scheme://host`) the request reached.
    pub fn realm(&self, origin: Option<&str>) -> String {
        match (&self.public_url, origin) {
            (Some(url), _) => format!("{}/token", url.trim_end_matches('/')),
            (None, Some(origin)) => format!("{origin}/token"),
            (None, None) => "/token".to_owned(),
        }
    }

    /// The `WWW-Authenticate` challenge naming the scope a request needs. Every parameter is
    /// a quoted-string with `"` and `\\` escaped (RFC 9110 §5.6.4), so no value can close its
    /// quotes and add a parameter of its own.
    pub fn challenge(&self, origin: Option<&str>, scope: Option<&Scope>) -> HeaderValue {
        let mut value = format!(
            "Bearer realm={},service={}",
            quoted(&self.realm(origin)),
            quoted(&self.service)
        );
        if let Some(scope) = scope {
            value.push_str(&format!(",scope={}", quoted(&scope.to_string())));
        }
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// `value` as an HTTP quoted-string.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// True when `host` is a host name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port: what a `Host` header or a platform-reported domain must be before it is
/// written into a token realm.
pub fn is_host_port(host: &str) -> bool {
    let is_name = |n: &str| {
        !n.is_empty()
            && n.len() <= 253
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    };
    let (name_ok, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let name = host.split_once(':').map_or(host, |(name, _)| name);
            (is_name(name), &host[name.len()..])
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    name_ok && port_ok
}

/// What a verified caller may do, as seen by handlers.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Development mode (no `[auth]`): everything is allowed.
    Unrestricted,
    /// No token.
    Anonymous,
    /// A verified access token.
    Token(Box<AccessClaims>),
}

impl Caller {
    /// True when the caller may perform `action` on `repo` (public repositories are pullable
    /// by anyone).
    pub fn may(&self, auth: Option<&Auth>, repo: &RepoName, action: Action) -> bool {
        let Some(auth) = auth else { return true };
        if action == Action::Pull && auth.policy().is_public(repo) {
            return true;
        }
        match self {
            Caller::Unrestricted => true,
            Caller::Anonymous => false,
            Caller::Token(claims) => claims.access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repo.as_str()
                    && a.actions.iter().any(|x| x == action.as_str())
            }),
        }
    }

    /// True when the caller may see `repo` in the catalog.
    pub fn may_list(&self, auth: Option<&Auth>, repo: &RepoName) -> bool {
        let Some(auth) = auth else { return true };
        if auth.policy().is_public(repo) || self.may(Some(auth), repo, Action::Pull) {
            return true;
        }
        match self {
            Caller::Unrestricted => true,
            Caller::Anonymous => false,
            Caller::Token(claims) => claims
                .catalog
                .iter()
                .any(|p| pattern::matches(p, repo.as_str())),
        }
    }
}

impl Caller {
    /// The name prefixes outside of which the caller sees no repository in the catalog, sorted,
    /// none a prefix of another; `[""]` (the whole index) when a pattern the caller may list
    /// starts with a wildcard or nothing restricts the caller. A catalog request reads only
    /// these parts of the index, so its work follows what the caller may see rather than the
    /// size of the registry.
    pub fn catalog_prefixes(&self, auth: Option<&Auth>) -> Vec<String> {
        let everything = vec![String::new()];
        let Some(auth) = auth else { return everything };
        let policy = auth.policy();
        let mut patterns: Vec<&str> = policy.public.iter().map(String::as_str).collect();
        match self {
            Caller::Unrestricted => return everything,
            Caller::Anonymous => {}
            Caller::Token(claims) => {
                patterns.extend(claims.catalog.iter().map(String::as_str));
                patterns.extend(
                    claims
                        .access
                        .iter()
                        .filter(|a| a.kind == "repository" && a.actions.iter().any(|x| x == "pull"))
                        .map(|a| a.name.as_str()),
                );
            }
        }
        let mut prefixes: Vec<String> = patterns
            .iter()
            .map(|p| pattern::literal_prefix(p).to_owned())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        // Sorted, a prefix comes right before the names it covers: keep only the first of each run.
        let mut out: Vec<String> = Vec::with_capacity(prefixes.len());
        for p in prefixes {
            if !out.last().is_some_and(|kept| p.starts_with(kept.as_str())) {
                out.push(p);
            }
        }
        out
    }
}

/// Actions as a set, for explanations.
pub fn action_set(actions: &[Action]) -> BTreeSet<Action> {
    actions.iter().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_host_and_port_only() {
        for ok in [
            "registry.test",
            "registry.test:5000",
            "127.0.0.1:5000",
            "[::1]",
            "[::1]:5000",
            "a-b.example.com",
        ] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "",
            "evil\",service=\"x",
            "a b",
            "host:",
            "host:5000:1",
            "host:12345678",
            "host:50a0",
            "[::1",
            "[::1]x",
            "[not-v6]:1",
            "host/path",
            "user@host",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn every_challenge_parameter_is_quote_escaped() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        let config: AuthConfig =
            toml::from_str("service = 'reg\"istry'\npolicy = ''").expect("auth table");
        let pem = token::generate_pem().expect("key").into_bytes();
        let keys = RegistryKeys::from_pems(&[pem]).expect("keys");
        let auth = Auth::new(&config, Policy::default(), keys).expect("auth");
        let challenge = auth.challenge(Some("http://h\",service=\"x"), None);
        assert_eq!(
            challenge.to_str().expect("ascii"),
            r#"Bearer realm="http://h\",service=\"x/token",service="reg\"istry""#
        );
    }
}
