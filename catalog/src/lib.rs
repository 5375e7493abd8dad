//! The static public catalog: every repository the policy makes public, rendered from a
//! [`MetaStore`] + [`BlobStore`] into HTML pages, JSON, a search index, a sitemap and an Atom
//! feed, through a [`SiteWriter`].
//!
//! Layer rule: only repositories for which [`Policy::is_public`] holds are ever read past their
//! name; nothing of a private repository reaches any output. Builds are incremental: a
//! repository whose fingerprint (tags, digests, push times, referrers of tagged manifests and
//! of their index children, and the templates) is unchanged keeps its files, and only the
//! site-wide pages are re-rendered.

#![warn(missing_docs)]

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt, stream};
use minijinja::context;
use sha2::{Digest as _, Sha256};
use wharf::auth::policy::Policy;
use wharf::oci::RepoName;
use wharf::storage::{BlobStore, MetaStore, Page, StorageError};

pub mod model;
mod render;
mod repo;
pub mod s3;
pub mod state;
pub mod time;
pub mod writer;

pub use s3::{S3Target, S3Writer};
pub use state::{RepoSummary, STATE_FILE, State};
pub use writer::{ContentKind, FsWriter, SiteWriter, WriteError};

use render::Renderer;

/// Repositories listed per store call.
const REPO_PAGE: usize = 1000;

/// Repositories processed at once: store round trips (DynamoDB) dominate, so a few in flight
/// hide latency without flooding the table.
const CONCURRENCY: usize = 8;

/// The directory holding every repository's files (`r/<name>/…`).
const REPO_DIR: &str = "r";

/// Entries in the Atom feed.
const FEED_ENTRIES: usize = 50;

/// A catalog build failure.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Reading the stores failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Writing the site failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A template failed to render (a bug in the templates).
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    /// JSON encoding failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// How the site is built.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registry host in pull commands (`registry.example.com`).
    pub registry_host: String,
    /// Absolute URL the site is published at, ending in `/` (for the sitemap and the feed).
    pub site_url: String,
    /// Title shown on every page.
    pub site_title: String,
    /// Also delete every repository file no repository owns, found by listing the output (the
    /// state alone cannot know of files written by a build whose state was overwritten by a
    /// concurrent one). Always done when the state file is missing or unreadable.
    pub sweep: bool,
}

/// Title of the generated site unless told otherwise.
pub const DEFAULT_TITLE: &str = "Wharf catalog";

impl Options {
    /// Options for a registry at `registry_host`, published at `site_url` (default
    /// `https://<registry_host>/`; a `/` is appended if missing), with the default title.
    pub fn new(registry_host: String, site_url: Option<String>) -> Options {
        let site_url = site_url.unwrap_or_else(|| format!("https://{registry_host}/"));
        let site_url = if site_url.ends_with('/') {
            site_url
        } else {
            format!("{site_url}/")
        };
        Options {
            registry_host,
            site_url,
            site_title: DEFAULT_TITLE.to_owned(),
            sweep: false,
        }
    }
}

/// One step of a build, for progress display.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Public repositories handled so far.
    pub done: usize,
    /// Public repositories in all.
    pub total: usize,
    /// The repository just handled.
    pub repo: &'a str,
    /// Whether it was re-rendered (false: unchanged).
    pub rendered: bool,
}

/// What a build did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Public repositories in the catalog.
    pub repositories: usize,
    /// Repositories whose pages were re-rendered.
    pub rendered: Vec<String>,
    /// Repositories removed from the catalog (deleted or no longer public).
    pub removed: Vec<String>,
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn public_repositories(
    meta: &dyn MetaStore,
    policy: &Policy,
) -> Result<Vec<RepoName>, CatalogError> {
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = Page {
            last: last.clone(),
            n: REPO_PAGE,
        };
        let batch = meta.list_repositories(&page).await?;
        let done = batch.len() < REPO_PAGE;
        last = batch.last().map(|r| r.to_string());
        out.extend(batch.into_iter().filter(|r| policy.is_public(r)));
        if done {
            return Ok(out);
        }
    }
}

/// Builds (or brings up to date) the catalog in `out`.
pub async fn build(
    meta: &dyn MetaStore,
    blobs: &dyn BlobStore,
    policy: &Policy,
    out: &dyn SiteWriter,
    options: &Options,
    progress: &(dyn Fn(&Progress<'_>) + Sync),
) -> Result<Report, CatalogError> {
    // An unreadable state file only costs a full re-render, and a sweep of the repository
    // pages no state remembers (those of a repository made private meanwhile, say).
    let previous: Option<State> = match out.get(STATE_FILE).await? {
        Some(bytes) => serde_json::from_slice(&bytes).ok(),
        None => None,
    };
    let sweep = previous.is_none() || options.sweep;
    let previous = previous.unwrap_or_default();
    let generated = time::display(wharf::storage::now_ms());
    let renderer = Renderer::new(context! {
        registry_host => options.registry_host,
        site_title => options.site_title,
        site_url => options.site_url,
        generated => generated,
    })?;
    let salt = format!(
        "{}\n{}\n{}",
        render::source_fingerprint(),
        options.registry_host,
        options.site_title
    );
    let repos = public_repositories(meta, policy).await?;
    let total = repos.len();
    let ctx = repo::Ctx {
        meta,
        blobs,
        out,
        renderer: &renderer,
        salt: &salt,
        host: &options.registry_host,
    };
    let mut done = 0;
    let results: Vec<(String, repo::Outcome)> = stream::iter(repos)
        .map(|name| {
            let ctx = &ctx;
            let prev = previous.repos.get(name.as_str());
            async move {
                let outcome = repo::process(ctx, &name, prev).await?;
                Ok::<_, CatalogError>((name.to_string(), outcome))
            }
        })
        .buffered(CONCURRENCY)
        .inspect_ok(|(name, outcome)| {
            done += 1;
            progress(&Progress {
                done,
                total,
                repo: name,
                rendered: outcome.rendered,
            });
        })
        .try_collect()
        .await?;

    let mut report = Report {
        repositories: results.len(),
        ..Report::default()
    };
    let mut state = State::default();
    for (name, outcome) in results {
        if outcome.rendered {
            report.rendered.push(name.clone());
        }
        state.repos.insert(name, outcome.state);
    }
    for (name, old) in &previous.repos {
        let kept = state.repos.get(name);
        for file in &old.files {
            if !kept.is_some_and(|k| k.files.contains(file)) {
                out.delete(file).await?;
            }
        }
        if kept.is_none() {
            report.removed.push(name.clone());
        }
    }
    if sweep {
        sweep_unknown(out, &state).await?;
    }
    site_pages(out, &renderer, &state).await?;
    out.put(STATE_FILE, serde_json::to_vec(&state)?, ContentKind::Json)
        .await?;
    Ok(report)
}

/// Deletes every file under `r/` that no repository of `state` owns.
async fn sweep_unknown(out: &dyn SiteWriter, state: &State) -> Result<(), CatalogError> {
    let owned: std::collections::BTreeSet<&str> = state
        .repos
        .values()
        .flat_map(|r| r.files.iter().map(String::as_str))
        .collect();
    for file in out.list(REPO_DIR).await? {
        if !owned.contains(file.as_str()) {
            out.delete(&file).await?;
        }
    }
    Ok(())
}

/// The index, search index, sitemap, feed and assets: rebuilt every time from the summaries.
async fn site_pages(
    out: &dyn SiteWriter,
    renderer: &Renderer,
    state: &State,
) -> Result<(), CatalogError> {
    let summaries: Vec<&RepoSummary> = state.repos.values().map(|r| &r.summary).collect();
    let cards: Vec<serde_json::Value> = summaries
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "description": s.description,
                "latest_tag": s.latest_tag,
                "last_push": s.last_push_ms.map(time::display),
                "last_push_iso": s.last_push_ms.map(time::rfc3339),
                "size": s.size,
                "platforms": s.platforms,
            })
        })
        .collect();
    let index = renderer.render(
        "index.html",
        context! { root => "", repos => minijinja::Value::from_serialize(&cards) },
    )?;
    out.put("index.html", index, ContentKind::Html).await?;
    let search: Vec<serde_json::Value> = summaries
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "description": s.description,
                "latest_tag": s.latest_tag,
                "platforms": s.platforms,
                "url": format!("r/{}/index.html", s.name),
            })
        })
        .collect();
    out.put(
        "search-index.json",
        serde_json::to_vec(&search)?,
        ContentKind::Json,
    )
    .await?;
    let sitemap = renderer.render(
        "sitemap.xml",
        context! { repos => minijinja::Value::from_serialize(&cards) },
    )?;
    out.put("sitemap.xml", sitemap, ContentKind::Xml).await?;
    out.put("feed.xml", feed(renderer, &summaries)?, ContentKind::Atom)
        .await?;
    out.put("style.css", render::STYLE_CSS.into(), ContentKind::Css)
        .await?;
    out.put("search.js", render::SEARCH_JS.into(), ContentKind::Js)
        .await?;
    Ok(())
}

fn feed(renderer: &Renderer, summaries: &[&RepoSummary]) -> Result<Vec<u8>, CatalogError> {
    let mut entries: Vec<(u64, &str, &state::TagSummary)> = summaries
        .iter()
        .flat_map(|s| {
            s.tags
                .iter()
                .filter_map(move |t| t.pushed_ms.map(|at| (at, s.name.as_str(), t)))
        })
        .collect();
    entries.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    entries.truncate(FEED_ENTRIES);
    let updated = entries.first().map_or(0, |e| e.0);
    let entries: Vec<BTreeMap<&str, String>> = entries
        .into_iter()
        .map(|(at, name, t)| {
            BTreeMap::from([
                ("name", name.to_owned()),
                ("tag", t.tag.clone()),
                ("digest", t.digest.clone()),
                ("pushed_iso", time::rfc3339(at)),
            ])
        })
        .collect();
    renderer.render(
        "feed.xml",
        context! { entries => entries, updated => time::rfc3339(updated) },
    )
}

#[cfg(test)]
mod tests;
