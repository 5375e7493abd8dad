//! One repository: fingerprint it, and re-render its pages only when the fingerprint changed.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Value, context};
use serde::Serialize;
use wharf::oci::{Digest, RepoName};
use wharf::storage::{BlobStore, MetaStore, TagRecord};

use crate::model::{self, ManifestView, RepoData};
use crate::render::Renderer;
use crate::state::{RepoState, RepoSummary, TagSummary};
use crate::writer::{ContentKind, SiteWriter};
use crate::{CatalogError, sha256_hex, time};

/// What a build shares with each repository's step.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub meta: &'a dyn MetaStore,
    pub blobs: &'a dyn BlobStore,
    pub out: &'a dyn SiteWriter,
    pub renderer: &'a Renderer,
    /// Mixed into every fingerprint: templates and options.
    pub salt: &'a str,
    /// Registry host in pull commands.
    pub host: &'a str,
}

/// The result of one repository's step.
#[derive(Debug)]
pub struct Outcome {
    pub rendered: bool,
    pub state: RepoState,
}

/// Children of index manifests, by index digest (see [`RepoState::children`]).
type Children = BTreeMap<String, Vec<String>>;

/// Fingerprint over the tags (digest, push time), the referrers of each tagged manifest and
/// those of the children of tagged indexes (`children`, as the last render found them: a new
/// tag changes the fingerprint anyway, and an index's children never change).
async fn fingerprint(
    ctx: &Ctx<'_>,
    repo: &RepoName,
    tags: &[TagRecord],
    children: &Children,
) -> Result<String, CatalogError> {
    let mut text = format!("{}\n{repo}\n", ctx.salt);
    for t in tags {
        text.push_str(&format!("{} {} {:?}\n", t.tag, t.digest, t.pushed_ms));
    }
    let mut subjects: BTreeSet<Digest> = BTreeSet::new();
    for t in tags {
        subjects.insert(t.digest.clone());
        let kids = children.get(&t.digest.to_string()).into_iter().flatten();
        // A child digest that does not parse came from a hand-edited state file: skipping it
        // only costs a stale page until the next tag change.
        subjects.extend(kids.filter_map(|c| Digest::parse(c).ok()));
    }
    for d in &subjects {
        for r in ctx.meta.referrers(repo, d).await? {
            text.push_str(&format!("ref {d} {}\n", r.digest));
        }
    }
    Ok(sha256_hex(text.as_bytes()))
}

/// The children of every index among `data`'s manifests.
fn index_children(data: &RepoData) -> Children {
    data.manifests
        .values()
        .filter(|m| !m.children.is_empty())
        .map(|m| {
            let kids = m.children.iter().map(|c| c.digest.clone()).collect();
            (m.digest.clone(), kids)
        })
        .collect()
}

/// Handles one repository.
pub async fn process(
    ctx: &Ctx<'_>,
    repo: &RepoName,
    prev: Option<&RepoState>,
) -> Result<Outcome, CatalogError> {
    let tags = model::tag_records(ctx.meta, repo).await?;
    let known = prev.map(|p| p.children.clone()).unwrap_or_default();
    let fp = fingerprint(ctx, repo, &tags, &known).await?;
    if let Some(prev) = prev.filter(|p| p.fingerprint == fp) {
        return Ok(Outcome {
            rendered: false,
            state: prev.clone(),
        });
    }
    let data = model::load_repo(ctx.meta, ctx.blobs, repo, tags.clone()).await?;
    let children = index_children(&data);
    // Stored under the fingerprint the next build will compute, which sees these children.
    let fp = if children == known {
        fp
    } else {
        fingerprint(ctx, repo, &tags, &children).await?
    };
    let (summary, files) = render_repo(ctx, repo, &data).await?;
    Ok(Outcome {
        rendered: true,
        state: RepoState {
            fingerprint: fp,
            files,
            summary,
            children,
        },
    })
}

/// A tag row of the repository page and JSON.
#[derive(Debug, Serialize)]
struct TagRow {
    tag: String,
    digest: String,
    short: String,
    slug: String,
    page: bool,
    kind: Option<&'static str>,
    size: u64,
    platforms: Vec<String>,
    pushed: Option<String>,
    pushed_iso: Option<String>,
    pushed_ms: Option<u64>,
    created: Option<String>,
    labels: BTreeMap<String, String>,
    pull_by_tag: String,
    pull_by_digest: String,
}

/// `../` repeated once per path segment of `path` below the site root.
fn root_of(path: &str) -> String {
    "../".repeat(path.matches('/').count())
}

fn tag_rows(host: &str, repo: &RepoName, data: &RepoData) -> Vec<TagRow> {
    let mut rows: Vec<TagRow> = data
        .tags
        .iter()
        .map(|t| {
            let digest = t.digest.to_string();
            let m = data.manifests.get(&digest);
            let created = m
                .and_then(|m| m.config.as_ref())
                .and_then(|c| c.created.clone());
            let mut labels = m
                .and_then(|m| m.config.as_ref())
                .map(|c| c.labels.clone())
                .unwrap_or_default();
            labels.extend(m.map(|m| m.annotations.clone()).unwrap_or_default());
            TagRow {
                tag: t.tag.to_string(),
                short: format!("{}…", &digest[..digest.len().min(19)]),
                slug: model::slug(&t.digest),
                page: m.is_some(),
                kind: m.map(|m| m.kind),
                size: m.map_or(0, |m| m.total_size),
                platforms: m.map(|m| m.platforms.clone()).unwrap_or_default(),
                pushed: t.pushed_ms.map(time::display),
                pushed_iso: t.pushed_ms.map(time::rfc3339),
                pushed_ms: t.pushed_ms,
                created,
                labels,
                pull_by_tag: format!("{host}/{repo}:{}", t.tag),
                pull_by_digest: format!("{host}/{repo}@{digest}"),
                digest,
            }
        })
        .collect();
    // Newest first; tags from before push times were recorded last, by name.
    rows.sort_by(|a, b| b.pushed_ms.cmp(&a.pushed_ms).then(a.tag.cmp(&b.tag)));
    rows
}

fn description(data: &RepoData, latest: Option<&TagRow>) -> Option<String> {
    let m: &ManifestView = data.manifests.get(&latest?.digest)?;
    m.description.clone().or_else(|| {
        m.children
            .iter()
            .find_map(|c| data.manifests.get(&c.digest)?.description.clone())
    })
}

/// Renders a repository's pages and JSON; returns its summary and the files written.
async fn render_repo(
    ctx: &Ctx<'_>,
    repo: &RepoName,
    data: &RepoData,
) -> Result<(RepoSummary, Vec<String>), CatalogError> {
    let rows = tag_rows(ctx.host, repo, data);
    let latest = rows.first();
    let description = description(data, latest);
    let dir = format!("r/{repo}");
    let mut files = Vec::new();

    let page = format!("{dir}/index.html");
    let html = ctx.renderer.render(
        "repo.html",
        context! {
            root => root_of(&page),
            name => repo.as_str(),
            description => description,
            latest => Value::from_serialize(latest),
            tags => Value::from_serialize(&rows),
        },
    )?;
    ctx.out.put(&page, html, ContentKind::Html).await?;
    files.push(page);

    let json_path = format!("{dir}/index.json");
    let json = serde_json::json!({
        "name": repo.as_str(),
        "description": description,
        "tags": rows.iter().map(|r| serde_json::json!({
            "tag": r.tag,
            "digest": r.digest,
            "kind": r.kind,
            "size": r.size,
            "platforms": r.platforms,
            "pushed": r.pushed_iso,
            "created": r.created,
            "pull": { "tag": r.pull_by_tag, "digest": r.pull_by_digest },
        })).collect::<Vec<_>>(),
        "manifests": data.manifests,
    });
    ctx.out
        .put(
            &json_path,
            serde_json::to_vec_pretty(&json)?,
            ContentKind::Json,
        )
        .await?;
    files.push(json_path);

    let known: BTreeMap<&str, &str> = data
        .manifests
        .values()
        .map(|m| (m.digest.as_str(), m.slug.as_str()))
        .collect();
    for m in data.manifests.values() {
        let path = format!("{dir}/-/{}.html", m.slug);
        let tags: Vec<&str> = rows
            .iter()
            .filter(|r| r.digest == m.digest)
            .map(|r| r.tag.as_str())
            .collect();
        let html = ctx.renderer.render(
            "manifest.html",
            context! {
                root => root_of(&path),
                name => repo.as_str(),
                m => Value::from_serialize(m),
                tags => tags,
                known => known,
            },
        )?;
        ctx.out.put(&path, html, ContentKind::Html).await?;
        files.push(path);
    }

    let summary = RepoSummary {
        name: repo.to_string(),
        description,
        latest_tag: latest.map(|r| r.tag.clone()),
        last_push_ms: latest.and_then(|r| r.pushed_ms),
        size: latest.map_or(0, |r| r.size),
        platforms: latest.map(|r| r.platforms.clone()).unwrap_or_default(),
        tags: rows
            .iter()
            .map(|r| TagSummary {
                tag: r.tag.clone(),
                digest: r.digest.clone(),
                pushed_ms: r.pushed_ms,
            })
            .collect(),
    };
    Ok((summary, files))
}
