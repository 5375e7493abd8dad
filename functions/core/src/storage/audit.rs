//! The audit trail: one [`AuditEvent`] per push, tag move and delete, with the identity that
//! made it. The embedded backend appends JSON lines to `audit.jsonl` beside its database; the
//! DynamoDB backend writes items in `AUDIT#<day>` partitions. Neither ever holds a token: an
//! event names the caller by OIDC issuer and subject only.

use serde::{Deserialize, Serialize};

use crate::oci::{Digest, RepoName};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A manifest was pushed (by digest, or under a new tag or its current digest).
    Push,
    /// A push moved an existing tag to another digest.
    TagMove,
    /// A tag was deleted.
    TagDelete,
    /// A manifest (and every tag on it) was deleted.
    ManifestDelete,
}

/// One audited change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (Unix milliseconds).
    pub time_ms: u64,
    /// What.
    pub action: AuditAction,
    /// Where.
    pub repo: RepoName,
    /// The manifest pushed or deleted (for a tag delete: what the tag pointed at, if known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The tag pushed, moved or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// For a tag move: the digest the tag pointed at before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
    /// The caller's OIDC issuer (absent in development mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The caller's OIDC subject (absent in development mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events at or after this time (Unix milliseconds).
    pub since_ms: u64,
    /// Only events of this repository.
    pub repo: Option<RepoName>,
    /// At most this many (the oldest first).
    pub n: usize,
}

impl AuditQuery {
    /// True when `event` is asked for.
    pub fn wants(&self, event: &AuditEvent) -> bool {
        event.time_ms >= self.since_ms && self.repo.as_ref().is_none_or(|r| *r == event.repo)
    }
}
