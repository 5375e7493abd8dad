//! `GET /v2/`: the API version check.

use axum::routing::get;
use axum::{Json, Router};

use super::AppState;

/// Canonical routes of the base group.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v2/", get(|| async { Json(serde_json::json!({})) }))
}

/// The base group as its own router (one Lambda function).
pub fn router(state: AppState) -> Router {
    super::wrap(routes(), state)
}
