//! `GET /v2/<name>/tags/list`, and the route of `GET /v2/_catalog` (see [`super::catalog`]),
//! with `n`/`last` and `Link` pagination.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{AppState, header as hv, page_params};
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::storage::Page;

/// Canonical routes of the tags group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/{name}/tags/list", get(list_tags))
        .route("/v2/_catalog", get(super::catalog::catalog))
}

/// The tags group as its own router.
pub fn router(state: AppState) -> Router {
    super::wrap(routes(), state)
}

/// Fetches one entry more than asked to learn whether a next page exists; returns the page and
/// the `Link` header pointing at the next one.
pub(super) fn paginate<T: ToString>(
    mut items: Vec<T>,
    n: usize,
    base: &str,
) -> (Vec<String>, HeaderMap) {
    let more = items.len() > n;
    items.truncate(n);
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    let mut h = HeaderMap::new();
    if more && let Some(last) = items.last() {
        h.insert(
            header::LINK,
            hv(format!("<{base}?n={n}&last={last}>; rel=\"next\"")),
        );
    }
    (items, h)
}

async fn list_tags(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, OciError> {
    let repo =
        RepoName::parse(&name).map_err(|e| OciError::new(ErrorCode::NameInvalid, e.to_string()))?;
    let (n, last) = page_params(
        params.get("n").map(String::as_str),
        params.get("last").map(String::as_str),
    )?;
    if !state.meta.repository_exists(&repo).await? {
        return Err(OciError::new(
            ErrorCode::NameUnknown,
            format!("repository {repo} is unknown"),
        ));
    }
    let tags = if n == 0 {
        Vec::new()
    } else {
        state
            .meta
            .list_tags(&repo, &Page { last, n: n + 1 })
            .await?
    };
    let (tags, h) = paginate(tags, n, &format!("/v2/{repo}/tags/list"));
    Ok((
        h,
        Json(serde_json::json!({ "name": repo.as_str(), "tags": tags })),
    )
        .into_response())
}
