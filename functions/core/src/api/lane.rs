//! Where upload `Location` URLs point, and the capabilities they carry.
//!
//! A serverless deployment cannot take a big layer through a function (ARCHITECTURE.md §6), so its
//! configuration may name an *upload lane*: the same binary run as `wharf serve --only uploads` on
//! another host, sharing the bucket and the table. Upload sessions opened on the registry then
//! answer with a `Location` on the lane. containerd and docker drop `Authorization` when a
//! `Location` names another host, so such a URL carries a *capability*: a short-lived token, signed
//! with the registry's own key, for that one session of that one repository. The authorization
//! middleware accepts it in place of a bearer token for PATCH/PUT/GET/DELETE on that session only
//! ([`verify`]).
//!
//! Layer rule: this module signs and checks capabilities and spells session URLs; it never
//! touches storage. A capability is a secret while it lives: it travels only in a query string,
//! which the request log never prints.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::oci::RepoName;
use crate::storage::UploadSession;

/// The query parameter carrying an upload capability.
pub const CAPABILITY_PARAM: &str = "_cap";

/// How long a capability stays valid after it is handed out. The answers that move an upload
/// on (POST, PATCH) hand out a fresh one, so this bounds the gap between two requests of one
/// upload: an hour covers a client that pauses between chunks, while a URL copied out of a
/// client's log is useless soon after. A status request (GET) renews nothing: it answers with
/// the capability it came with, so polling a copied URL does not keep it alive.
pub const CAPABILITY_TTL: Duration = Duration::from_secs(3600);

/// No capability of a session outlives this, counted from the session's creation, however
/// often it was renewed: a URL that leaked mid-upload dies with the upload. A day, the gc grace
/// period ([`crate::gc::DEFAULT_GRACE`]) within which any upload is expected to finish.
pub const CAPABILITY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The audience of capabilities: distinct from the audience of access tokens (the service
/// name), so neither kind of token is accepted as the other.
fn audience(auth: &Auth) -> String {
    format!("{}#upload", auth.service)
}

/// What a capability says.
#[derive(Debug, Serialize, Deserialize)]
struct CapabilityClaims {
    /// The registry service.
    iss: String,
    /// `<service>#upload`.
    aud: String,
    /// The upload session id.
    sub: String,
    /// The repository of the session.
    repo: String,
    /// Expiry (Unix seconds).
    exp: u64,
    /// Issued at (Unix seconds).
    iat: u64,
}

/// Where upload sessions are reached, and whether their URLs carry capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadRouting {
    /// Absolute base URL of the upload lane (e.g. `https://uploads.example.com`); `None`: the
    /// registry itself (relative `Location`s).
    pub lane_url: Option<String>,
    /// Put a capability in every session URL (when authentication is on). True on a registry
    /// with a lane and on the lane itself.
    pub capabilities: bool,
}

/// The expiry of a capability for `session` handed out at `now` (Unix seconds): [`CAPABILITY_TTL`]
/// from now, never past [`CAPABILITY_MAX_AGE`] from the session's creation.
fn expiry(session: &UploadSession, now: u64) -> u64 {
    let renewed = now.saturating_add(CAPABILITY_TTL.as_secs());
    let absolute = session.created.saturating_add(CAPABILITY_MAX_AGE.as_secs());
    renewed.min(absolute)
}

/// A capability for `session`, valid until [`expiry`].
fn sign(auth: &Auth, session: &UploadSession) -> Result<String, crate::auth::token::TokenError> {
    let now = jsonwebtoken::get_current_timestamp();
    auth.keys.sign(&CapabilityClaims {
        iss: auth.service.clone(),
        aud: audience(auth),
        sub: session.id.clone(),
        repo: session.repo.to_string(),
        exp: expiry(session, now),
        iat: now,
    })
}

/// Why a capability was refused (for the log; the client sees one generic message).
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    /// Bad signature, expired, wrong audience or malformed.
    #[error(transparent)]
    Token(#[from] crate::auth::token::TokenError),
    /// A valid capability for another session or repository.
    #[error("the capability is for another upload session")]
    OtherSession,
}

/// Checks that `token` is a live capability for session `id` of `repo`.
pub fn verify(auth: &Auth, token: &str, repo: &RepoName, id: &str) -> Result<(), CapabilityError> {
    let claims: CapabilityClaims = auth.keys.verify(token, &auth.service, &audience(auth))?;
    if claims.sub != id || claims.repo != repo.as_str() {
        return Err(CapabilityError::OtherSession);
    }
    Ok(())
}

/// Whether an answer on a session hands out a renewed capability or the one the request came
/// with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal<'a> {
    /// A fresh capability (the answers that open or move an upload on).
    Renew,
    /// The capability the request presented, if any (status answers): a request that came with
    /// a capability gets no later expiry back; one that came with a token gets a fresh one.
    Keep(Option<&'a str>),
}

/// The URL of `session`: on the lane when one is configured, with a capability when asked for
/// and authentication is on.
pub fn session_url(
    routing: &UploadRouting,
    auth: Option<&Auth>,
    session: &UploadSession,
    renewal: Renewal<'_>,
) -> Result<String, crate::auth::token::TokenError> {
    let base = routing
        .lane_url
        .as_deref()
        .map(|u| u.trim_end_matches('/'))
        .unwrap_or("");
    let mut url = format!("{base}/v2/{}/blobs/uploads/{}", session.repo, session.id);
    if routing.capabilities
        && let Some(auth) = auth
    {
        // The authorization middleware verified a presented capability for this very session
        // before the handler ran, so handing it back adds nothing.
        let capability = match renewal {
            Renewal::Keep(Some(presented)) => presented.to_owned(),
            Renewal::Keep(None) | Renewal::Renew => sign(auth, session)?,
        };
        url.push_str(&format!("?{CAPABILITY_PARAM}={capability}"));
    }
    Ok(url)
}

/// The capability in a query string, if any.
pub fn capability_in(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(CAPABILITY_PARAM)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(created: u64) -> UploadSession {
        UploadSession {
            id: "ab".into(),
            repo: RepoName::parse("a").expect("name"),
            offset: 0,
            hash_state: String::new(),
            staging: Default::default(),
            created,
            version: 0,
        }
    }

    #[test]
    fn a_capability_never_expires_past_the_sessions_absolute_lifetime() {
        let created = 1_000_000;
        let s = session(created);
        assert_eq!(expiry(&s, created), created + CAPABILITY_TTL.as_secs());
        let late = created + CAPABILITY_MAX_AGE.as_secs() - 60;
        assert_eq!(expiry(&s, late), created + CAPABILITY_MAX_AGE.as_secs());
        let after = created + CAPABILITY_MAX_AGE.as_secs() + 3600;
        assert!(
            expiry(&s, after) < after,
            "renewed past the end is already expired"
        );
        assert_eq!(
            expiry(&session(u64::MAX), u64::MAX),
            u64::MAX,
            "no overflow"
        );
    }
}
