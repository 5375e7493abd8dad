//! What every Wharf Lambda function shares: build the state from the environment
//! ([`wharf::runtime::state_from_env`]) once per cold start, then hand one endpoint group's
//! router to the Lambda runtime. Each function crate under `functions/` is one call to [`run`].
//!
//! Layer rule: nothing here handles a request; the routers in `wharf::api` do, exactly as under
//! `wharf serve`.

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use wharf::api::{AppState, ClientAddr, PublicOrigin};
use wharf::runtime::KeyUse;

/// Sets up logging and the state, then serves `group` until the runtime stops the process.
/// The function only verifies registry tokens: it keeps no private key
/// ([`KeyUse::VerifyOnly`]). A setup error is returned (and so reported by the runtime as an
/// init error) after being logged; its text never holds a secret value.
pub async fn run(group: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    serve(group, KeyUse::VerifyOnly).await
}

/// [`run`] for a function that mints tokens or upload capabilities (the token and uploads
/// functions): it needs the private signing keys ([`wharf::runtime::SIGNING_SECRET_ID_ENV`]).
pub async fn run_signing(group: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    serve(group, KeyUse::Sign).await
}

async fn serve(group: fn(AppState) -> Router, key_use: KeyUse) -> Result<(), lambda_http::Error> {
    let (_, state) = wharf::runtime::start_logging(wharf::runtime::state_from_env(key_use).await)?;
    lambda_http::run(app(group, state)).await
}

/// The service a function hands the runtime: `group`'s router behind what API Gateway's
/// request context tells (see [`gateway_context`]).
pub fn app(group: fn(AppState) -> Router, state: AppState) -> Router {
    group(state).layer(axum::middleware::from_fn(gateway_context))
}

/// Hands what API Gateway saw to the handlers: the client address (the TCP peer it saw, which
/// the client cannot forge, unlike `X-Forwarded-For`) for the rate limiter, and the HTTPS
/// origin the request reached (API Gateway serves HTTPS only) for the token realm, so the first
/// deployment's challenges name a working `https://` realm without `public_url`.
async fn gateway_context(mut request: Request, next: Next) -> Response {
    let (ip, origin) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (
            ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
            ctx.domain_name.as_deref().and_then(PublicOrigin::https),
        ),
        _ => (None, None),
    };
    if let Some(ip) = ip {
        request.extensions_mut().insert(ClientAddr(ip));
    }
    if let Some(origin) = origin {
        request.extensions_mut().insert(origin);
    }
    next.run(request).await
}
