//! What the pages show, read from the stores: one [`ManifestView`] per manifest a public
//! repository's tags reach (index children and referrers included), and the repository's tags.
//!
//! Layer rule: this module reads stores and parses JSON; it never renders nor writes. It is only
//! ever handed repositories the policy made public.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use wharf::oci::{Digest, RepoName};
use wharf::storage::{BlobStore, MetaStore, Page, ReferrerEntry, TagRecord};

use crate::CatalogError;

/// Largest image config read for its summary: configs are a few KB; a bigger blob is not a
/// config worth showing and must not be pulled into memory.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Most manifests rendered per repository (tags' manifests, index children, referrers): bounds
/// the work a repository full of referrers can cause.
const MAX_MANIFESTS_PER_REPO: usize = 2000;

/// Tags fetched per listing call.
const TAG_PAGE: usize = 1000;

/// Annotation (or label) that describes an image.
const DESCRIPTION_KEY: &str = "org.opencontainers.image.description";

/// A layer (or artifact blob).
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Compressed size.
    pub size: u64,
}

/// An entry of an index.
#[derive(Debug, Clone, Serialize)]
pub struct Child {
    /// Its digest.
    pub digest: String,
    /// `os/arch[/variant]`, if given.
    pub platform: Option<String>,
    /// Size of the child manifest.
    pub size: u64,
}

/// The summary of an image config. Environment variables are listed by name only: values often
/// hold secrets baked in by mistake.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigSummary {
    /// `os/arch[/variant]`.
    pub platform: Option<String>,
    /// Entrypoint and command, as given.
    pub entrypoint: Vec<String>,
    /// Default command.
    pub cmd: Vec<String>,
    /// Names of the environment variables.
    pub env_names: Vec<String>,
    /// Number of history entries.
    pub history_count: usize,
    /// Creation time, as written in the config.
    pub created: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Referrers of one artifact type.
#[derive(Debug, Clone, Serialize)]
pub struct ReferrerGroup {
    /// The artifact type (or the media type when none is given).
    pub artifact_type: String,
    /// The referrers.
    pub items: Vec<ReferrerEntry>,
}

/// One manifest, as its page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestView {
    /// Its digest.
    pub digest: String,
    /// File-name form of the digest (`sha256-<hex>`).
    pub slug: String,
    /// Its media type.
    pub media_type: String,
    /// `image`, `index` or `artifact`.
    pub kind: &'static str,
    /// Its artifact type, if any.
    pub artifact_type: Option<String>,
    /// The manifest it refers to, if any.
    pub subject: Option<String>,
    /// Size of the manifest itself.
    pub manifest_size: u64,
    /// Compressed size of everything it pulls: config and layers, or every child's.
    pub total_size: u64,
    /// Layers or blobs.
    pub layers: Vec<Layer>,
    /// Index entries.
    pub children: Vec<Child>,
    /// Config summary of an image.
    pub config: Option<ConfigSummary>,
    /// Its platforms (one for an image, each child's for an index).
    pub platforms: Vec<String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Referrers, grouped by artifact type.
    pub referrers: Vec<ReferrerGroup>,
    /// A description from annotations or labels.
    pub description: Option<String>,
}

/// Everything read about one repository.
#[derive(Debug, Clone)]
pub struct RepoData {
    /// Its tags (lexical order, as listed).
    pub tags: Vec<TagRecord>,
    /// Every manifest reached from its tags, by digest.
    pub manifests: BTreeMap<String, ManifestView>,
}

/// All tag records of `repo`.
pub async fn tag_records(
    meta: &dyn MetaStore,
    repo: &RepoName,
) -> Result<Vec<TagRecord>, CatalogError> {
    let mut out: Vec<TagRecord> = Vec::new();
    loop {
        let page = Page {
            last: out.last().map(|r| r.tag.to_string()),
            n: TAG_PAGE,
        };
        let batch = meta.list_tag_records(repo, &page).await?;
        let done = batch.len() < TAG_PAGE;
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// File-name form of a digest: `sha256-<hex>`.
pub fn slug(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().as_str(), digest.hex())
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// `os/arch[/variant]` of a platform object (an index entry's or a config's top level).
fn platform(v: &Value) -> Option<String> {
    let os = v.get("os")?.as_str()?;
    let arch = v.get("architecture")?.as_str()?;
    if os == "unknown" || arch == "unknown" {
        // Attestation manifests in BuildKit indexes carry `unknown/unknown`: not a platform.
        return None;
    }
    Some(match v.get("variant").and_then(Value::as_str) {
        Some(variant) => format!("{os}/{arch}/{variant}"),
        None => format!("{os}/{arch}"),
    })
}

async fn read_config(
    meta: &dyn MetaStore,
    blobs: &dyn BlobStore,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<Value>, CatalogError> {
    // Through the repository's link only, like a pull.
    match meta.blob_link(repo, digest).await? {
        Some(link) if link.size <= MAX_CONFIG_BYTES => {}
        _ => return Ok(None),
    }
    let Some(read) = blobs.get(digest, None).await? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    let mut body = read.body;
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.map_err(wharf::storage::StorageError::Body)?);
    }
    Ok(serde_json::from_slice(&bytes).ok())
}

fn summarize_config(c: &Value) -> ConfigSummary {
    let inner = c.get("config");
    let env_names = strings(inner.and_then(|i| i.get("Env")))
        .into_iter()
        .map(|e| e.split('=').next().unwrap_or_default().to_owned())
        .collect();
    ConfigSummary {
        platform: platform(c),
        entrypoint: strings(inner.and_then(|i| i.get("Entrypoint"))),
        cmd: strings(inner.and_then(|i| i.get("Cmd"))),
        env_names,
        history_count: c
            .get("history")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        created: str_of(c, "created"),
        labels: string_map(inner.and_then(|i| i.get("Labels"))),
    }
}

fn group_referrers(entries: Vec<ReferrerEntry>) -> Vec<ReferrerGroup> {
    let mut groups: BTreeMap<String, Vec<ReferrerEntry>> = BTreeMap::new();
    for e in entries {
        let key = e
            .artifact_type
            .clone()
            .unwrap_or_else(|| e.media_type.clone());
        groups.entry(key).or_default().push(e);
    }
    groups
        .into_iter()
        .map(|(artifact_type, items)| ReferrerGroup {
            artifact_type,
            items,
        })
        .collect()
}

/// Reads one manifest into its view; returns it with the digests it leads to (children,
/// referrers).
async fn manifest_view(
    meta: &dyn MetaStore,
    blobs: &dyn BlobStore,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<(ManifestView, Vec<Digest>)>, CatalogError> {
    let Some(record) = meta.manifest(repo, digest).await? else {
        return Ok(None);
    };
    let v: Value = serde_json::from_slice(&record.bytes).unwrap_or(Value::Null);
    let media_type = str_of(&v, "mediaType").unwrap_or(record.media_type.clone());
    let layers: Vec<Layer> = v
        .get("layers")
        .or_else(|| v.get("blobs"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|l| Layer {
                    digest: str_of(l, "digest").unwrap_or_default(),
                    media_type: str_of(l, "mediaType").unwrap_or_default(),
                    size: u64_of(l, "size"),
                })
                .collect()
        })
        .unwrap_or_default();
    let children: Vec<Child> = v
        .get("manifests")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| Child {
                    digest: str_of(m, "digest").unwrap_or_default(),
                    platform: m.get("platform").and_then(platform),
                    size: u64_of(m, "size"),
                })
                .collect()
        })
        .unwrap_or_default();
    let config_desc = v.get("config");
    let artifact_type = str_of(&v, "artifactType").or_else(|| {
        config_desc
            .and_then(|c| str_of(c, "mediaType"))
            .filter(|m| !m.contains("image.config") && !m.contains("container.image"))
    });
    let is_index = v.get("manifests").is_some();
    let kind = match (is_index, &artifact_type) {
        (true, _) => "index",
        (false, Some(_)) => "artifact",
        (false, None) => "image",
    };
    let config = match (kind, config_desc.and_then(|c| str_of(c, "digest"))) {
        ("image", Some(d)) => match Digest::parse(&d) {
            Ok(d) => read_config(meta, blobs, repo, &d)
                .await?
                .map(|c| summarize_config(&c)),
            Err(_) => None,
        },
        _ => None,
    };
    let annotations = string_map(v.get("annotations"));
    let description = annotations.get(DESCRIPTION_KEY).cloned().or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.labels.get(DESCRIPTION_KEY).cloned())
    });
    let referrers = meta.referrers(repo, digest).await?;
    let mut next: Vec<Digest> = children
        .iter()
        .filter_map(|c| Digest::parse(&c.digest).ok())
        .collect();
    next.extend(referrers.iter().map(|r| r.digest.clone()));
    let platforms = match kind {
        "index" => children.iter().filter_map(|c| c.platform.clone()).collect(),
        _ => config
            .as_ref()
            .and_then(|c| c.platform.clone())
            .into_iter()
            .collect(),
    };
    let own =
        config_desc.map_or(0, |c| u64_of(c, "size")) + layers.iter().map(|l| l.size).sum::<u64>();
    let view = ManifestView {
        digest: digest.to_string(),
        slug: slug(digest),
        media_type,
        kind,
        artifact_type,
        subject: v.get("subject").and_then(|s| str_of(s, "digest")),
        manifest_size: record.bytes.len() as u64,
        total_size: own,
        layers,
        children,
        config,
        platforms,
        annotations,
        referrers: group_referrers(referrers),
        description,
    };
    Ok(Some((view, next)))
}

/// Reads every manifest the tags reach: tagged manifests, index children and referrers.
pub async fn load_repo(
    meta: &dyn MetaStore,
    blobs: &dyn BlobStore,
    repo: &RepoName,
    tags: Vec<TagRecord>,
) -> Result<RepoData, CatalogError> {
    let mut manifests = BTreeMap::new();
    let mut seen: BTreeSet<Digest> = BTreeSet::new();
    let mut queue: VecDeque<Digest> = tags.iter().map(|t| t.digest.clone()).collect();
    while let Some(d) = queue.pop_front() {
        if manifests.len() >= MAX_MANIFESTS_PER_REPO || !seen.insert(d.clone()) {
            continue;
        }
        if let Some((view, next)) = manifest_view(meta, blobs, repo, &d).await? {
            manifests.insert(view.digest.clone(), view);
            queue.extend(next);
        }
    }
    // An index pulls what its children pull.
    let totals: BTreeMap<String, u64> = manifests
        .values()
        .map(|m| (m.digest.clone(), m.total_size))
        .collect();
    for m in manifests.values_mut().filter(|m| m.kind == "index") {
        m.total_size = m
            .children
            .iter()
            .map(|c| totals.get(&c.digest).copied().unwrap_or(0) + c.size)
            .sum();
    }
    Ok(RepoData { tags, manifests })
}
