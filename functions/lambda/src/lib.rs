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
use wharf::api::{AppState, ClientAddr};

/// Sets up logging and the state, then serves `group` until the runtime stops the process.
/// A setup error is returned (and so reported by the runtime as an init error) after being
/// logged; its text never holds a secret value.
pub async fn run(group: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    let (_, state) = wharf::runtime::start_logging(wharf::runtime::state_from_env().await)?;
    let app = group(state).layer(axum::middleware::from_fn(client_addr));
    lambda_http::run(app).await
}

/// Hands the API Gateway's view of the client address (the TCP peer it saw, which the client
/// cannot forge, unlike `X-Forwarded-For`) to the rate limiter.
async fn client_addr(mut request: Request, next: Next) -> Response {
    let ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok())
        }
        _ => None,
    };
    if let Some(ip) = ip {
        request.extensions_mut().insert(ClientAddr(ip));
    }
    next.run(request).await
}
