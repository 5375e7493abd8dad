//! `GET /v2/_catalog`: the repositories the caller may see, with `n`/`last` and `Link` pagination.
//!
//! The work of a request follows what the caller may see, not the size of the registry:
//! - it reads only the parts of the index under the literal prefixes of the patterns the caller
//!   may list ([`Caller::catalog_prefixes`]: `team/*` reads `team/…` and nothing else);
//! - within them it reads at most [`CATALOG_MAX_INDEX_READS`] index pages once it has a name to
//!   answer with, and then continues with a `Link` after its last name, even if the page is
//!   shorter than `n`.
//!
//! A `Link` only ever names a repository the caller may see: the index entry a scan stopped at
//! is not one, and the pull side holds no secret to seal it into an opaque cursor. So a request
//! that has found nothing yet reads on until it finds a name or its parts of the index end;
//! that walk is bounded by the names under the caller's own prefixes, and is the whole index
//! only for a policy pattern that starts with a wildcard (`*/public`), which an operator writes.

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::tags::paginate;
use super::{AppState, header as hv, page_params};
use crate::auth::Caller;
use crate::oci::{OciError, RepoName};
use crate::storage::{MetaStore, Page};

/// Index pages (of `n + 1` entries) one `_catalog` request reads at most once it has a name to
/// answer with: bounds the work a caller who may see few repositories makes one request do,
/// while a caller who sees most of them still gets full pages.
pub const CATALOG_MAX_INDEX_READS: usize = 4;

pub(super) async fn catalog(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, OciError> {
    let (n, last) = page_params(
        params.get("n").map(String::as_str),
        params.get("last").map(String::as_str),
    )?;
    let caller = caller.map(|Extension(c)| c).unwrap_or(Caller::Anonymous);
    let auth = state.auth.as_deref();
    let prefixes = caller.catalog_prefixes(auth);
    let scan = visible_page(&*state.meta, &prefixes, n, last, |repo| {
        caller.may_list(auth, repo)
    })
    .await?;
    tracing::debug!(
        entries_read = scan.entries_read,
        prefixes = prefixes.len(),
        "catalog page"
    );
    let (repos, mut h) = paginate(scan.visible, n, "/v2/_catalog");
    if scan.cut_short
        && let Some(last) = repos.last()
    {
        h.insert(
            header::LINK,
            hv(format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\"")),
        );
    }
    Ok((h, Json(serde_json::json!({ "repositories": repos }))).into_response())
}

/// What one catalog request found.
#[derive(Debug)]
pub(super) struct CatalogScan {
    /// Visible names in order, one more than `n` when a next page exists.
    pub visible: Vec<RepoName>,
    /// The read budget ran out with names found: the caller continues after the last one.
    pub cut_short: bool,
    /// Index entries read, for the log and for tests that bound the work.
    pub entries_read: usize,
}

/// Reads the index under `prefixes` (sorted, none a prefix of another), after `last`, until one
/// more than `n` visible names are found, the prefixes are exhausted, or the read budget is
/// spent with a name to answer.
pub(super) async fn visible_page(
    meta: &dyn MetaStore,
    prefixes: &[String],
    n: usize,
    mut last: Option<String>,
    visible_to_caller: impl Fn(&RepoName) -> bool,
) -> Result<CatalogScan, OciError> {
    let mut scan = CatalogScan {
        visible: Vec::new(),
        cut_short: false,
        entries_read: 0,
    };
    let mut reads = 0;
    'prefixes: for prefix in prefixes {
        while n > 0 && scan.visible.len() <= n {
            if reads >= CATALOG_MAX_INDEX_READS && !scan.visible.is_empty() {
                scan.cut_short = true;
                break 'prefixes;
            }
            let page = Page {
                last: last.clone(),
                n: n + 1,
            };
            let batch = meta.list_repositories_under(prefix, &page).await?;
            reads += 1;
            scan.entries_read += batch.len();
            let exhausted = batch.len() <= n;
            for repo in batch {
                last = Some(repo.to_string());
                if visible_to_caller(&repo) {
                    scan.visible.push(repo);
                }
            }
            if exhausted {
                continue 'prefixes;
            }
        }
        break;
    }
    Ok(scan)
}
