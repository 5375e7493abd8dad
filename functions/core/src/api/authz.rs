//! Enforcement: every request to `/v2/…` is authorized here, after its path was canonicalized
//! and before any handler runs.
//!
//! The scope a request needs comes from its method and canonical route alone. Without `[auth]`
//! (development mode) every request passes as [`Caller::Unrestricted`]. With it: a verified
//! access token becomes [`Caller::Token`]; no token is [`Caller::Anonymous`], which may only pull
//! public repositories. A request lacking its scope gets 401 with a challenge naming that scope
//! when it carried no valid token, and 403 `DENIED` when its token does not grant it.

use std::collections::BTreeSet;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppState, PublicOrigin, lane};
use crate::auth::{Action, Auth, Caller, Scope};
use crate::oci::{ErrorCode, OciError, RepoName};

/// What a request needs.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// Any authenticated caller (`GET /v2/`).
    Login,
    /// Nothing (`_catalog` filters its own answer; unknown routes answer 404).
    Nothing,
    /// An action on a repository.
    Repo(RepoName, Action),
}

/// The need of a canonical path (`/v2/<name-as-one-segment>/<kind>/…`).
fn need(method: &Method, path: &str) -> Need {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Need::Nothing;
    };
    if rest.is_empty() {
        return Need::Login;
    }
    let mut segs = rest.splitn(3, '/');
    let (Some(name), Some(kind), tail) =
        (segs.next(), segs.next(), segs.next().unwrap_or_default())
    else {
        return Need::Nothing;
    };
    let Ok(repo) = RepoName::parse(&name.replace("%2F", "/")) else {
        return Need::Nothing;
    };
    let action = match (kind, method) {
        ("blobs", _) if tail.starts_with("uploads/") => Action::Push,
        ("manifests", &Method::PUT) => Action::Push,
        ("manifests" | "blobs", &Method::DELETE) => Action::Delete,
        ("manifests" | "blobs" | "tags" | "referrers", _) => Action::Pull,
        _ => return Need::Nothing,
    };
    Need::Repo(repo, action)
}

/// The upload session id of a canonical session path (`/v2/<name>/blobs/uploads/<id>`).
fn session_id(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    let mut segs = rest.splitn(3, '/');
    let (_, kind, tail) = (segs.next()?, segs.next()?, segs.next()?);
    let id = tail.strip_prefix("uploads/")?;
    (kind == "blobs" && !id.is_empty() && !id.contains('/')).then_some(id)
}

/// Authorizes a request by the upload capability in its URL (see [`super::lane`]): it stands
/// in for a bearer token on its one session (PATCH/PUT/GET/DELETE) and nothing else.
fn by_capability(auth: &Auth, need: &Need, path: &str, capability: &str) -> Result<(), OciError> {
    let (Need::Repo(repo, Action::Push), Some(id)) = (need, session_id(path)) else {
        return Err(OciError::new(
            ErrorCode::Denied,
            "an upload capability is only valid on its upload session",
        ));
    };
    lane::verify(auth, capability, repo, id).map_err(|e| {
        OciError::new(
            ErrorCode::Denied,
            "the upload URL's capability is invalid, expired or for another upload: start a \
             new upload",
        )
        .with_cause(e)
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The middleware.
pub(super) async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = state.auth.as_deref() else {
        request.extensions_mut().insert(Caller::Unrestricted);
        return next.run(request).await;
    };
    // Revocations and grant changes take effect within the policy source's bound (auth::live).
    auth.live_policy().refresh().await;
    // A `Host` that is not a plain host[:port] is dropped, never written into the challenge.
    let origin = match request.extensions().get::<PublicOrigin>() {
        Some(origin) => Some(origin.as_str().to_owned()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(PublicOrigin::http)
            .map(|origin| origin.as_str().to_owned()),
    };
    let (caller, token_error) = match bearer(request.headers()) {
        None => (Caller::Anonymous, None),
        Some(token) => match auth.verify_access(token) {
            Ok(claims) => (Caller::Token(Box::new(claims)), None),
            Err(e) => (Caller::Anonymous, Some(e)),
        },
    };
    let need = need(request.method(), request.uri().path());
    if let Some(capability) = lane::capability_in(request.uri().query()) {
        // A capability is the whole authority of the request, whatever token came with it. The
        // session handlers consult no caller, so the request goes on as an anonymous one.
        if let Err(e) = by_capability(auth, &need, request.uri().path(), capability) {
            return e.into_response();
        }
        request.extensions_mut().insert(Caller::Anonymous);
        return next.run(request).await;
    }
    let refuse = |scope: Option<Scope>, why: String| {
        let has_token = matches!(caller, Caller::Token(_));
        let err = if has_token {
            OciError::new(ErrorCode::Denied, why)
        } else {
            OciError::new(ErrorCode::Unauthorized, why).with_header(
                header::WWW_AUTHENTICATE,
                auth.challenge(origin.as_deref(), scope.as_ref()),
            )
        };
        let err = match &token_error {
            Some(e) => err.with_cause(e),
            None => err,
        };
        err.into_response()
    };
    match &need {
        Need::Nothing => {}
        Need::Login => {
            if matches!(caller, Caller::Anonymous) {
                return refuse(None, "authentication required".into());
            }
        }
        Need::Repo(repo, action) => {
            if !caller.may(Some(auth), repo, *action) {
                // Pushing clients need pull too (to check for existing blobs): ask for both.
                let mut actions = BTreeSet::from([*action]);
                if *action == Action::Push {
                    actions.insert(Action::Pull);
                }
                let scope = Scope::Repository(repo.clone(), actions);
                return refuse(
                    Some(scope),
                    format!("{action} access to {repo} is required"),
                );
            }
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(n: &str, a: Action) -> Need {
        Need::Repo(RepoName::parse(n).expect("name"), a)
    }

    #[test]
    fn needs_follow_method_and_route() {
        assert_eq!(need(&Method::GET, "/v2/"), Need::Login);
        assert_eq!(need(&Method::GET, "/v2/_catalog"), Need::Nothing);
        assert_eq!(
            need(&Method::GET, "/v2/a%2Fb/manifests/v1"),
            repo("a/b", Action::Pull)
        );
        assert_eq!(
            need(&Method::HEAD, "/v2/a/blobs/sha256:x"),
            repo("a", Action::Pull)
        );
        assert_eq!(
            need(&Method::PUT, "/v2/a/manifests/v1"),
            repo("a", Action::Push)
        );
        assert_eq!(
            need(&Method::DELETE, "/v2/a/manifests/v1"),
            repo("a", Action::Delete)
        );
        assert_eq!(
            need(&Method::DELETE, "/v2/a/blobs/sha256:x"),
            repo("a", Action::Delete)
        );
        assert_eq!(
            need(&Method::POST, "/v2/a/blobs/uploads/"),
            repo("a", Action::Push)
        );
        assert_eq!(
            need(&Method::DELETE, "/v2/a/blobs/uploads/abc"),
            repo("a", Action::Push)
        );
        assert_eq!(
            need(&Method::GET, "/v2/a/blobs/uploads/abc"),
            repo("a", Action::Push)
        );
        assert_eq!(
            need(&Method::GET, "/v2/a/tags/list"),
            repo("a", Action::Pull)
        );
        assert_eq!(
            need(&Method::GET, "/v2/a/referrers/sha256:x"),
            repo("a", Action::Pull)
        );
        assert_eq!(need(&Method::GET, "/token"), Need::Nothing);
    }
}
