//! `GET /v2/<name>/referrers/<digest>?artifactType=`: an image index of the manifests whose
//! `subject` is `<digest>`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{AppState, OCI_FILTERS_APPLIED, header as hv};
use crate::oci::{OciError, media};

/// Canonical routes of the referrers group.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v2/{name}/referrers/{digest}", get(referrers))
}

/// The referrers group as its own router.
pub fn router(state: AppState) -> Router {
    super::wrap(routes(), state)
}

async fn referrers(
    State(state): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, OciError> {
    let (repo, subject) = super::blobs::parse_path(&name, &digest)?;
    let filter = params.get("artifactType");
    let mut entries = state.meta.referrers(&repo, &subject).await?;
    if let Some(filter) = filter {
        entries.retain(|e| e.artifact_type.as_ref() == Some(filter));
    }
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": entries,
    });
    let bytes = serde_json::to_vec(&body).map_err(OciError::internal)?;
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv(media::OCI_INDEX));
    if filter.is_some() {
        h.insert(OCI_FILTERS_APPLIED, hv("artifactType"));
    }
    Ok((h, bytes).into_response())
}
