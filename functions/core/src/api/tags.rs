//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, with `n`/`last` and `Link` pagination.
//!
//! The catalog lists only the repositories the caller may see, so a page of `n` names can take
//! many index pages to fill for a caller who sees few. One request reads at most
//! [`CATALOG_MAX_INDEX_READS`] index pages once it has found a name to answer with, and then
//! continues with a `Link` after its last name, even if the page is shorter than `n`. A `Link`
//! only ever names a repository the caller may see: the index entry a scan stopped at is not
//! one, and the pull side holds no secret to seal it into an opaque cursor, so a request that
//! has found nothing yet reads on until it finds a name or the index ends.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{AppState, header as hv, page_params};
use crate::auth::Caller;
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::storage::Page;

/// Canonical routes of the tags group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/{name}/tags/list", get(list_tags))
        .route("/v2/_catalog", get(catalog))
}

/// The tags group as its own router.
pub fn router(state: AppState) -> Router {
    super::wrap(routes(), state)
}

/// Index pages (of `n + 1` entries) one `_catalog` request reads at most once it has a name to
/// answer with: bounds the work a caller who may see few repositories makes one request do,
/// while a caller who sees most of them still gets full pages.
pub const CATALOG_MAX_INDEX_READS: usize = 4;

/// Fetches one entry more than asked to learn whether a next page exists; returns the page and
/// the `Link` header pointing at the next one.
fn paginate<T: ToString>(mut items: Vec<T>, n: usize, base: &str) -> (Vec<String>, HeaderMap) {
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

async fn catalog(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, OciError> {
    let (n, mut last) = page_params(
        params.get("n").map(String::as_str),
        params.get("last").map(String::as_str),
    )?;
    let caller = caller.map(|Extension(c)| c).unwrap_or(Caller::Anonymous);
    let auth = state.auth.as_deref();
    // Only repositories the caller may pull are listed: read pages until one more than asked
    // is visible (to know whether a next page exists), the index is exhausted, or the read
    // budget is spent with a name to answer.
    let mut visible = Vec::new();
    let mut reads = 0;
    let mut cut_short = false;
    while n > 0 && visible.len() <= n {
        if reads >= CATALOG_MAX_INDEX_READS && !visible.is_empty() {
            cut_short = true;
            break;
        }
        let batch = state
            .meta
            .list_repositories(&Page {
                last: last.clone(),
                n: n + 1,
            })
            .await?;
        reads += 1;
        let exhausted = batch.len() <= n;
        for repo in batch {
            last = Some(repo.to_string());
            if caller.may_list(auth, &repo) {
                visible.push(repo);
            }
        }
        if exhausted {
            break;
        }
    }
    let (repos, mut h) = paginate(visible, n, "/v2/_catalog");
    if cut_short && let Some(last) = repos.last() {
        h.insert(
            header::LINK,
            hv(format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\"")),
        );
    }
    Ok((h, Json(serde_json::json!({ "repositories": repos }))).into_response())
}
