//! The build state kept in the output (`catalog-state.json`): per repository, the fingerprint of
//! what its pages were rendered from, the files they are, and the summary the index, search,
//! sitemap and feed need, so an unchanged repository is never read past its tag list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Site path of the state file.
pub const STATE_FILE: &str = "catalog-state.json";

/// A tag, as the summary keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagSummary {
    /// The tag.
    pub tag: String,
    /// Its digest.
    pub digest: String,
    /// Push time, Unix milliseconds.
    pub pushed_ms: Option<u64>,
}

/// What the index shows about a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSummary {
    /// Repository name.
    pub name: String,
    /// Description from annotations or labels.
    pub description: Option<String>,
    /// Latest tag (most recently pushed).
    pub latest_tag: Option<String>,
    /// Time of the latest push, Unix milliseconds.
    pub last_push_ms: Option<u64>,
    /// Compressed size of the latest tag.
    pub size: u64,
    /// Platforms of the latest tag.
    pub platforms: Vec<String>,
    /// Tags, newest first.
    pub tags: Vec<TagSummary>,
}

/// One repository's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoState {
    /// Fingerprint of the inputs its pages were rendered from.
    pub fingerprint: String,
    /// Site paths of its files.
    pub files: Vec<String>,
    /// Its summary.
    pub summary: RepoSummary,
    /// Children of the index manifests it rendered, by index digest. Manifests never change
    /// under their digest, so the next build fingerprints the children's referrers from this
    /// without reading a manifest.
    #[serde(default)]
    pub children: BTreeMap<String, Vec<String>>,
}

/// The whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// By repository name.
    pub repos: BTreeMap<String, RepoState>,
}
