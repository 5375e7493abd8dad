//! The policy in force, and how it follows its source without a restart.
//!
//! A policy read from a file or from the metadata store is re-read when it is older than its
//! source's bound ([`POLICY_FILE_CHECK_INTERVAL`] for a file, [`POLICY_CACHE_TTL`] for the
//! table), before the next request is authorized: no background task, so the same code holds in
//! `wharf serve` and in a warm Lambda instance that was frozen between invocations. A revocation
//! therefore takes effect within that bound everywhere. An inline policy (`policy = "…"`) is
//! part of the configuration and changes with it only.
//!
//! **A bad new policy never weakens anything**: when the new text does not parse (or cannot be
//! read), the last valid policy stays in force and the failure is logged at ERROR, once per bad
//! version. Falling back to "deny everything" instead would let one typo lock every user and CI
//! job out; keeping the old one grants nothing that was not granted a moment before.
//! `wharf policy check` and `wharf policy push` refuse an invalid policy before it is written.
//!
//! Layer rule: no storage here. A source is a [`PolicySource`]; the metadata store's is built by
//! `runtime`, which has the store.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::policy::{Policy, PolicyError};

/// Longest a policy read from the metadata store is used before it is read again: the bound on
/// how long a revocation takes to reach every instance, at one table read per instance per
/// bound.
pub const POLICY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Least time between two reads of a policy file: a file read costs microseconds, so a change
/// is seen within a second.
pub const POLICY_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Where a reloadable policy's text comes from.
#[async_trait::async_trait]
pub trait PolicySource: Send + Sync + fmt::Debug {
    /// The policy text as it is now, or why it could not be read.
    async fn read(&self) -> Result<String, String>;
    /// How long a read stays fresh.
    fn ttl(&self) -> Duration;
}

/// A policy file, re-read every [`POLICY_FILE_CHECK_INTERVAL`].
#[derive(Debug)]
pub struct PolicyFile(pub PathBuf);

#[async_trait::async_trait]
impl PolicySource for PolicyFile {
    async fn read(&self) -> Result<String, String> {
        tokio::fs::read_to_string(&self.0)
            .await
            .map_err(|e| format!("reading {}: {e}", self.0.display()))
    }

    fn ttl(&self) -> Duration {
        POLICY_FILE_CHECK_INTERVAL
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Not due yet, or no source to reload from.
    NotDue,
    /// Read; the text is the one in force.
    Unchanged,
    /// A new valid policy is in force.
    Replaced,
    /// The source could not be read or its text is invalid: the last valid policy stays.
    Kept(String),
}

#[derive(Debug)]
struct Reloading {
    source: Arc<dyn PolicySource>,
    state: tokio::sync::Mutex<ReloadState>,
}

#[derive(Debug)]
struct ReloadState {
    /// The text of the policy in force.
    text: String,
    /// The last text refused (or read error), so one bad version is logged once.
    refused: Option<String>,
    checked: Instant,
}

/// The policy in force, swapped whole on a reload (a request sees one version throughout).
#[derive(Debug)]
pub struct LivePolicy {
    current: RwLock<Arc<Policy>>,
    reloading: Option<Reloading>,
}

impl LivePolicy {
    /// A policy that never changes.
    pub fn fixed(policy: Policy) -> LivePolicy {
        LivePolicy {
            current: RwLock::new(Arc::new(policy)),
            reloading: None,
        }
    }

    /// A policy parsed from `text`, re-read from `source` when older than its TTL.
    pub fn reloading(policy: Policy, text: String, source: Arc<dyn PolicySource>) -> LivePolicy {
        LivePolicy {
            current: RwLock::new(Arc::new(policy)),
            reloading: Some(Reloading {
                source,
                state: tokio::sync::Mutex::new(ReloadState {
                    text,
                    refused: None,
                    checked: Instant::now(),
                }),
            }),
        }
    }

    /// The policy in the file at `path`, re-read every [`POLICY_FILE_CHECK_INTERVAL`].
    pub fn from_file(path: &std::path::Path) -> Result<LivePolicy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::Read(path.display().to_string(), e))?;
        let policy = Policy::parse(&text).map_err(|e| match e {
            PolicyError::Parse(_, e) => PolicyError::Parse(path.display().to_string(), e),
            other => other,
        })?;
        let source = Arc::new(PolicyFile(path.to_owned()));
        Ok(LivePolicy::reloading(policy, text, source))
    }

    /// The policy in force.
    pub fn get(&self) -> Arc<Policy> {
        // A poisoned lock still holds a whole policy: the swap is one assignment.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the source when the policy in force is older than the source's TTL.
    pub async fn refresh(&self) -> Reload {
        let Some(r) = &self.reloading else {
            return Reload::NotDue;
        };
        let mut state = r.state.lock().await;
        if state.checked.elapsed() < r.source.ttl() {
            return Reload::NotDue;
        }
        self.reload_locked(r, &mut state).await
    }

    /// Re-reads the source now, whatever its age.
    pub async fn reload(&self) -> Reload {
        let Some(r) = &self.reloading else {
            return Reload::NotDue;
        };
        let mut state = r.state.lock().await;
        self.reload_locked(r, &mut state).await
    }

    async fn reload_locked(&self, r: &Reloading, state: &mut ReloadState) -> Reload {
        let read = r.source.read().await;
        state.checked = Instant::now();
        let text = match read {
            Ok(text) => text,
            Err(e) => {
                // Logged once per failure, not at every check while it lasts.
                let key = format!("unreadable: {e}");
                if state.refused.as_deref() != Some(key.as_str()) {
                    tracing::error!(source = ?r.source, error = %e,
                        "the policy could not be re-read: the last valid policy stays in force");
                    state.refused = Some(key);
                }
                return Reload::Kept(e);
            }
        };
        if text == state.text {
            state.refused = None;
            return Reload::Unchanged;
        }
        match Policy::parse(&text) {
            Ok(policy) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
                state.text = text;
                state.refused = None;
                tracing::info!(source = ?r.source, "policy reloaded");
                Reload::Replaced
            }
            Err(e) => {
                if state.refused.as_deref() != Some(text.as_str()) {
                    tracing::error!(source = ?r.source, error = %e,
                        "the changed policy is INVALID and was not loaded: the last valid \
                         policy stays in force until it is fixed");
                    state.refused = Some(text);
                }
                Reload::Kept(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_invalid_policy_file_keeps_the_last_valid_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "public = [\"a/*\"]\n").expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let live = LivePolicy::reloading(
            Policy::parse(&text).expect("valid"),
            text,
            Arc::new(PolicyFile(path.clone())),
        );
        let repo = |n: &str| crate::oci::RepoName::parse(n).expect("name");
        assert_eq!(live.reload().await, Reload::Unchanged);
        std::fs::write(&path, "public = [\"b/*\"]\n").expect("write");
        assert_eq!(live.reload().await, Reload::Replaced);
        assert!(live.get().is_public(&repo("b/x")) && !live.get().is_public(&repo("a/x")));
        // A typo (an unknown key, or a rule matching everyone) is refused, not half-applied.
        std::fs::write(&path, "publik = [\"**\"]\n").expect("write");
        assert!(matches!(live.reload().await, Reload::Kept(_)));
        assert!(live.get().is_public(&repo("b/x")), "the old policy stays");
        assert!(!live.get().is_public(&repo("c/x")));
        std::fs::remove_file(&path).expect("rm");
        assert!(matches!(live.reload().await, Reload::Kept(_)));
        assert!(live.get().is_public(&repo("b/x")));
        // Not due within the bound.
        assert_eq!(live.refresh().await, Reload::NotDue);
    }
}
