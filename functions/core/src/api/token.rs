//! The token endpoint (Docker token spec): `GET /token` and `POST /token` (OAuth2 form), and the
//! registry's public keys at `GET /token/keys`.
//!
//! Credentials: `Authorization: Basic` whose password is an OIDC ID token (any username) or a
//! refresh token this registry issued, or `Authorization: Bearer <OIDC ID token>`; none at all is
//! an anonymous caller, who can get public pulls only. The token grants the intersection of the
//! scopes asked and what the policy allows; asking more than allowed is not an error.
//!
//! A refused credential gets a fixed message per kind of refusal ([`refusal`]); the cause (an
//! IdP's URL, a library's error text) goes to the log only. An issuer that cannot be reached is
//! the registry's problem, not the caller's: 503, so clients retry instead of asking the user
//! to log in again.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use base64::Engine;
use serde::Deserialize;

use super::AppState;
use crate::auth::{Auth, CredentialError, OidcError, RefreshError, Scope, Verified};
use crate::oci::{ErrorCode, OciError};

/// Canonical routes of the token group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/token", get(get_token).post(post_token))
        .route("/token/keys", get(keys))
}

/// The token group as its own router.
pub fn router(state: AppState) -> Router {
    super::wrap(routes(), state)
}

fn enabled(state: &AppState) -> Result<&Auth, OciError> {
    state.auth.as_deref().ok_or_else(|| {
        OciError::new(
            ErrorCode::Unsupported,
            "authentication is not configured on this registry",
        )
        .with_status(StatusCode::NOT_FOUND)
    })
}

fn bad_request(message: impl Into<String>) -> OciError {
    OciError::new(ErrorCode::Unsupported, message).with_status(StatusCode::BAD_REQUEST)
}

fn check_service(auth: &Auth, service: Option<&str>) -> Result<(), OciError> {
    match service {
        Some(s) if s != auth.service => Err(bad_request(format!(
            "this registry's service is {:?}, not {s:?}",
            auth.service
        ))),
        _ => Ok(()),
    }
}

fn parse_scopes<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<Scope>, OciError> {
    let mut scopes = Vec::new();
    for value in values {
        scopes.extend(Scope::parse_list(value).map_err(|e| bad_request(e.to_string()))?);
    }
    Ok(scopes)
}

/// The credential of `Authorization`: a Basic password or a Bearer token.
fn credential(headers: &HeaderMap) -> Result<Option<String>, OciError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OciError::new(ErrorCode::Unauthorized, "malformed Authorization header");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.trim().to_owned()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (_user, password) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some(password.to_owned()))
}

async fn identify(auth: &Auth, credential: Option<String>) -> Result<Option<Verified>, OciError> {
    let Some(credential) = credential else {
        return Ok(None);
    };
    match auth.verify_credential(&credential).await {
        Ok(verified) => Ok(Some(verified)),
        Err(e) => Err(refusal(&e).with_cause(&e)),
    }
}

/// What the client is told about a refused credential: a fixed message per kind, never the
/// cause (which may hold an IdP's URL or an HTTP library's error text).
fn refusal(e: &CredentialError) -> OciError {
    let unauthorized = |message: &str| OciError::new(ErrorCode::Unauthorized, message);
    match e {
        CredentialError::Oidc(OidcError::Fetch(_) | OidcError::Config(_)) => OciError::new(
            ErrorCode::Unknown,
            "the token's issuer could not be reached to verify it; retry later",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE),
        CredentialError::Oidc(OidcError::Malformed(_)) => {
            unauthorized("credential refused: not a token this registry accepts")
        }
        CredentialError::Oidc(OidcError::UntrustedIssuer(_)) => {
            unauthorized("credential refused: its issuer is not trusted by this registry")
        }
        CredentialError::Oidc(OidcError::Algorithm(_)) => {
            unauthorized("credential refused: its signature algorithm is not accepted")
        }
        CredentialError::Oidc(OidcError::UnknownKey) => {
            unauthorized("credential refused: signed with a key its issuer does not publish")
        }
        CredentialError::Oidc(OidcError::Invalid(_)) => {
            unauthorized("credential refused: signature, expiry, audience or subject check failed")
        }
        CredentialError::Refresh(
            RefreshError::Revoked | RefreshError::FamilyRevoked | RefreshError::CutOff,
        ) => unauthorized("credential refused: the refresh token is revoked; log in again"),
        CredentialError::Refresh(
            RefreshError::IssuerGone | RefreshError::NotInteractive | RefreshError::AudienceGone,
        ) => unauthorized(
            "credential refused: the refresh token's issuer or audience is no longer accepted; \
             log in again",
        ),
    }
}

/// Issues the token response (both the Docker `token` and the OAuth2 `access_token` fields).
fn respond(
    auth: &Auth,
    verified: Option<&Verified>,
    scopes: &[Scope],
    offline: bool,
) -> Result<Response, OciError> {
    let identity = verified.map(|v| &v.identity);
    let (access, catalog) = auth.grant(identity, scopes);
    let granted: Vec<String> = access
        .iter()
        .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
        .collect();
    let token = auth
        .issue(identity, access, catalog)
        .map_err(OciError::internal)?;
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": auth.token_ttl().as_secs(),
        "issued_at": rfc3339_now(),
        "scope": granted.join(" "),
    });
    // The family the caller came with (a refresh token), or the one a new refresh token starts.
    let mut family = verified.and_then(|v| v.family.clone());
    if offline
        && let Some(v) = verified
        && let Some((refresh, issued)) = auth
            .issue_refresh(&v.identity, v.family.as_ref())
            .map_err(OciError::internal)?
    {
        body["refresh_token"] = refresh.into();
        family = Some(issued);
    }
    tracing::info!(
        subject = identity.map(|i| i.subject.as_str()).unwrap_or("anonymous"),
        issuer = identity.map(|i| i.issuer.as_str()).unwrap_or(""),
        granted = %granted.join(" "),
        family = family.as_ref().map(|f| f.id.as_str()).unwrap_or(""),
        "token issued"
    );
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, super::header("no-store"));
    Ok(response)
}

fn rfc3339_now() -> String {
    crate::time::rfc3339(crate::storage::now_ms())
}

async fn get_token(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, OciError> {
    let auth = enabled(&state)?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    check_service(auth, param("service"))?;
    let scopes = parse_scopes(
        params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    )?;
    let identity = identify(auth, credential(&headers)?).await?;
    respond(
        auth,
        identity.as_ref(),
        &scopes,
        param("offline_token") == Some("true"),
    )
}

/// The OAuth2 form of `POST /token`.
#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    service: Option<String>,
    scope: Option<String>,
    access_type: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
}

async fn post_token(
    State(state): State<AppState>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, OciError> {
    let auth = enabled(&state)?;
    let Form(form) = form.map_err(|e| bad_request(format!("invalid token request form: {e}")))?;
    check_service(auth, form.service.as_deref())?;
    let scopes = parse_scopes(form.scope.as_deref().into_iter())?;
    let credential = match form.grant_type.as_str() {
        "password" => form
            .password
            .ok_or_else(|| bad_request("password is required"))?,
        "refresh_token" => form
            .refresh_token
            .ok_or_else(|| bad_request("refresh_token is required"))?,
        other => return Err(bad_request(format!("unsupported grant_type {other:?}"))),
    };
    let identity = identify(auth, Some(credential)).await?;
    respond(
        auth,
        identity.as_ref(),
        &scopes,
        form.access_type.as_deref() == Some("offline"),
    )
}

async fn keys(State(state): State<AppState>) -> Result<Response, OciError> {
    let auth = enabled(&state)?;
    Ok(Json(auth.keys.jwks().clone()).into_response())
}
