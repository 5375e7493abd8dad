//! Cross-cutting layers: request logging and the headers every answer carries.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::oci::ErrorCode;
use crate::oci::error::ErrorLog;

/// Logs one line per request: method, path (never the query, which may carry capabilities, and
/// never a header, which may carry tokens), status, latency and any error with its cause.
pub(super) async fn log_requests(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    match response.extensions().get::<ErrorLog>() {
        Some(e) if e.code == ErrorCode::Unknown => tracing::error!(
            %method, %path, status, ms, code = ?e.code, error = %e.message,
            cause = e.cause.as_deref().unwrap_or(""), "request failed"
        ),
        Some(e) => tracing::info!(
            %method, %path, status, ms, code = ?e.code, error = %e.message,
            cause = e.cause.as_deref().unwrap_or(""), "request refused"
        ),
        None => tracing::debug!(%method, %path, status, ms, "request"),
    }
    response
}

/// Adds `Docker-Distribution-API-Version`, which docker checks on `/v2/`.
pub(super) async fn common_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}
