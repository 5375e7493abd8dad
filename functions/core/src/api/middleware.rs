//! Cross-cutting layers: request logging and the headers every answer carries.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use super::limits;
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

/// Fails a request body that delivers nothing for `idle` (a stalled client) or arrives slower
/// than [`limits::MIN_BODY_BYTES_PER_SEC`] (a deliberately slow one, see [`limits`]), so it
/// cannot hold a connection and an upload session for long. The handler sees a body error and
/// answers `BLOB_UPLOAD_INVALID`; nothing of that request is committed.
pub(super) async fn body_idle_timeout(
    State(idle): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = Body::new(tower_http::timeout::TimeoutBody::new(idle, body));
    let body = Body::from_stream(limits::PacedBody::new(body.into_data_stream()));
    next.run(Request::from_parts(parts, body)).await
}
