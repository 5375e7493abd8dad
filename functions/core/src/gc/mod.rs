//! Online garbage collection: removes blobs no repository needs, expired upload sessions with
//! their staging, and staging no session owns — while pushes go on.
//!
//! One run: (1) **mark**: read every repository's links and manifests into the set of live
//! digests; (2) **uploads**: delete sessions idle for longer than the grace period (conditional
//! on their version, so one written meanwhile stays) and abort their staging, then remove
//! staging that no session owns once it is older than the grace period (on S3 that includes
//! bytes a crash left under `objects/` that no blob points at; the backend re-checks before it
//! removes them, so a published blob's bytes never go as staging); (3) **sweep**: for every
//! stored blob that is not live and whose bytes are older than the grace period, take a *hold*
//! on its digest in the metadata store — a conditional write that fails if any repository
//! linked the digest since the cutoff or since the run began — and only then delete the bytes.
//! (4) Records whose hold expired and whose bytes are gone are forgotten.
//!
//! Why it is safe while pushes go on: a run first bumps the metadata store's garbage-collection
//! epoch, and every link records the epoch it committed in, atomically with an unchanged epoch
//! ([`crate::storage::BlobActivity`]). A link committed before the bump is seen by the mark
//! phase; one committed after carries the new epoch, and the hold is refused. Linking is in
//! turn conditional on no live hold ([`crate::storage::GC_HOLD_MS`]): a link racing with a
//! deletion fails (retryably, 409) instead of pointing at deleted bytes. No clock decides
//! safety; the grace period only spares young things.
//!
//! Why the grace period: bytes are stored before they are linked (an upload finishes, then
//! links), so fresh unlinked bytes are normal for a moment; a blob younger than the grace period
//! is never a candidate. It must also exceed the clock skew between machines.
//!
//! Layer rule: only the `BlobStore`/`MetaStore` traits; nothing here knows a backend or HTTP.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::api::AppState;
use crate::auth::Policy;
use crate::oci::{Digest, RepoName};
use crate::storage::{BlobStore, GC_HOLD_MS, MetaStore, Page, StorageError, hold_is_live, now_ms};

mod mark;
mod retention;

use mark::PAGE;
pub use mark::referenced_digests;

/// Default grace period: nothing younger than a day is collected, which covers any upload in
/// progress and any clock skew by a wide margin.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Default interval between runs inside `wharf serve`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// What a run does.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Only things idle for longer than this are removed.
    pub grace: Duration,
    /// Report what would go, remove nothing.
    pub dry_run: bool,
    /// The policy whose `[[retention]]` rules prune tags first (none: no retention).
    pub policy: Option<Arc<Policy>>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: DEFAULT_GRACE,
            dry_run: false,
            policy: None,
        }
    }
}

/// One thing removed (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GcItem {
    /// A blob's bytes.
    Blob {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// An expired upload session and its staging.
    Session {
        /// Session id.
        id: String,
        /// Its repository.
        repo: RepoName,
        /// Bytes it had received.
        size: u64,
    },
    /// Staging no session owns.
    Staged {
        /// Upload id.
        id: String,
        /// Bytes staged (objects and files).
        size: u64,
    },
    /// A tag pruned by a retention rule.
    Tag {
        /// Its repository.
        repo: RepoName,
        /// The tag.
        tag: String,
        /// What it pointed at.
        digest: Digest,
    },
}

impl GcItem {
    /// Bytes this item frees.
    pub fn size(&self) -> u64 {
        match self {
            GcItem::Blob { size, .. }
            | GcItem::Session { size, .. }
            | GcItem::Staged { size, .. } => *size,
            GcItem::Tag { .. } => 0,
        }
    }
}

/// What a run found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// True when nothing was removed on purpose.
    pub dry_run: bool,
    /// Repositories marked.
    pub repositories: u64,
    /// Manifests read.
    pub manifests: u64,
    /// Distinct live digests.
    pub live_digests: u64,
    /// Blobs in the store.
    pub blobs_seen: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub kept_recent: u64,
    /// Unreferenced blobs kept because a repository linked them while the run went on.
    pub kept_relinked: u64,
    /// Removed (or, in a dry run, removable) things.
    pub removed: Vec<GcItem>,
    /// Garbage-collection records forgotten (their bytes were deleted by an earlier run).
    pub records_forgotten: u64,
}

impl GcReport {
    /// Total bytes of [`GcReport::removed`].
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(GcItem::size).sum()
    }

    /// How many removed items are blobs.
    pub fn blobs(&self) -> usize {
        self.removed
            .iter()
            .filter(|i| matches!(i, GcItem::Blob { .. }))
            .count()
    }
}

/// A run's phases, as reported to a [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading repositories (total: repositories).
    Mark,
    /// Upload sessions and staging (total: sessions + staged uploads).
    Uploads,
    /// Blobs (total unknown: the store is listed page by page).
    Sweep,
}

/// Receives progress, e.g. to draw a progress bar.
pub trait Progress: Send + Sync {
    /// A phase starts, with its number of steps if known.
    fn start(&self, _phase: Phase, _total: Option<u64>) {}
    /// `n` more steps of the current phase are done.
    fn advance(&self, _n: u64) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}

/// Why a run stopped. Nothing is left half-done: each removal is its own atomic step.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Runs garbage collection over the state's stores: what the scheduled function and
/// `wharf gc` call. Retention follows the state's policy unless `options` names one.
pub async fn run(state: &AppState, options: &GcOptions) -> Result<GcReport, GcError> {
    let mut options = options.clone();
    if options.policy.is_none()
        && let Some(auth) = &state.auth
    {
        // A warm gc function may hold a policy older than its source's bound: retention and
        // immutability follow the policy in force now.
        auth.live_policy().refresh().await;
        options.policy = Some(auth.policy());
    }
    run_with_progress(state.blobs.as_ref(), state.meta.as_ref(), &options, &Quiet).await
}

/// [`run`] over explicit stores, reporting progress.
pub async fn run_with_progress(
    blobs: &dyn BlobStore,
    meta: &dyn MetaStore,
    options: &GcOptions,
    progress: &dyn Progress,
) -> Result<GcReport, GcError> {
    let epoch = meta.begin_gc().await?;
    let start = now_ms();
    let grace = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX);
    let cutoff = start.saturating_sub(grace);
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };

    let repos = mark::repositories(meta).await?;
    progress.start(Phase::Mark, Some(repos.len() as u64));
    let mut live = HashSet::new();
    for repo in &repos {
        if let Some(policy) = &options.policy {
            let pruned = retention::apply(meta, policy, repo, options.dry_run).await?;
            report.removed.extend(pruned);
        }
        report.manifests += mark::mark_repository(meta, repo, &mut live).await?;
        progress.advance(1);
    }
    report.repositories = repos.len() as u64;
    report.live_digests = live.len() as u64;

    collect_uploads(blobs, meta, options, cutoff, progress, &mut report).await?;
    let cut = Cut { cutoff, epoch };
    sweep(blobs, meta, options, cut, &live, progress, &mut report).await?;
    if !options.dry_run {
        report.records_forgotten = forget_deleted(blobs, meta).await?;
    }
    tracing::info!(
        dry_run = options.dry_run,
        removed = report.removed.len(),
        bytes = report.bytes(),
        kept_recent = report.kept_recent,
        kept_relinked = report.kept_relinked,
        "garbage collection done"
    );
    Ok(report)
}

/// Expired sessions with their staging, then staging no session owns.
async fn collect_uploads(
    blobs: &dyn BlobStore,
    meta: &dyn MetaStore,
    options: &GcOptions,
    cutoff: u64,
    progress: &dyn Progress,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let mut sessions = Vec::new();
    loop {
        let page = Page {
            last: sessions
                .last()
                .map(|s: &crate::storage::UploadListing| s.session.id.clone()),
            n: PAGE,
        };
        let got = meta.list_uploads(&page).await?;
        let done = got.len() < PAGE;
        sessions.extend(got);
        if done {
            break;
        }
    }
    let staged = blobs.list_staged().await?;
    progress.start(Phase::Uploads, Some((sessions.len() + staged.len()) as u64));
    let known: HashSet<&str> = sessions.iter().map(|s| s.session.id.as_str()).collect();
    for listing in &sessions {
        progress.advance(1);
        if listing.touched_ms >= cutoff {
            continue;
        }
        let s = &listing.session;
        if !options.dry_run {
            // Conditional: a session written since it was listed is in use again.
            if !meta.delete_upload_if(&s.id, s.version).await? {
                continue;
            }
            if let Err(e) = blobs.abort_upload(&s.id, s.staging.clone()).await {
                tracing::warn!(upload = %s.id, error = %e, "could not drop an expired upload's staging");
                blobs.remove_staged(&s.id).await?;
            }
        }
        report.removed.push(GcItem::Session {
            id: s.id.clone(),
            repo: s.repo.clone(),
            size: s.offset,
        });
    }
    for st in &staged {
        progress.advance(1);
        if known.contains(st.id.as_str()) || st.modified_ms >= cutoff {
            continue;
        }
        // A session created after the listing owns its staging: look again.
        if meta.upload(&st.id).await?.is_some() {
            continue;
        }
        if !options.dry_run {
            blobs.remove_staged(&st.id).await?;
        }
        report.removed.push(GcItem::Staged {
            id: st.id.clone(),
            size: st.size,
        });
    }
    Ok(())
}

/// What a blob must be older than to go: a time and the run's epoch.
#[derive(Debug, Clone, Copy)]
struct Cut {
    cutoff: u64,
    epoch: u64,
}

/// Deletes unreferenced blobs older than the cutoff, each under a hold.
async fn sweep(
    blobs: &dyn BlobStore,
    meta: &dyn MetaStore,
    options: &GcOptions,
    cut: Cut,
    live: &HashSet<Digest>,
    progress: &dyn Progress,
    report: &mut GcReport,
) -> Result<(), GcError> {
    progress.start(Phase::Sweep, None);
    let mut after: Option<Digest> = None;
    loop {
        let page = blobs.list_blobs(after.as_ref(), PAGE).await?;
        let done = page.len() < PAGE;
        after = page.last().map(|b| b.digest.clone());
        progress.advance(page.len() as u64);
        report.blobs_seen += page.len() as u64;
        for blob in page {
            if live.contains(&blob.digest) {
                continue;
            }
            if blob.modified_ms >= cut.cutoff {
                report.kept_recent += 1;
                continue;
            }
            let activity = meta.blob_activity(&blob.digest).await?;
            if activity.is_some_and(|a| a.linked_ms >= cut.cutoff) {
                report.kept_recent += 1;
                continue;
            }
            if !options.dry_run && !delete_held(blobs, meta, &blob.digest, cut).await? {
                report.kept_relinked += 1;
                continue;
            }
            report.removed.push(GcItem::Blob {
                digest: blob.digest,
                size: blob.size,
            });
        }
        if done {
            return Ok(());
        }
    }
}

/// Takes the hold, then deletes the bytes; false when the digest was linked meanwhile (or the
/// hold came too late to be safe).
async fn delete_held(
    blobs: &dyn BlobStore,
    meta: &dyn MetaStore,
    digest: &Digest,
    cut: Cut,
) -> Result<bool, GcError> {
    let hold = now_ms();
    if !meta.hold_blob(digest, cut.cutoff, cut.epoch, hold).await? {
        return Ok(false);
    }
    // The hold blocks links for GC_HOLD_MS; a deletion must happen well inside it.
    if now_ms().saturating_sub(hold) > GC_HOLD_MS / 2 {
        tracing::warn!(%digest, "hold taken too slowly; blob left for the next run");
        return Ok(false);
    }
    blobs.delete(digest).await?;
    Ok(true)
}

/// Forgets records whose hold expired and whose bytes are gone.
async fn forget_deleted(blobs: &dyn BlobStore, meta: &dyn MetaStore) -> Result<u64, GcError> {
    let now = now_ms();
    let mut forgotten = 0;
    let mut last = None;
    loop {
        let page = meta.list_blob_activity(&Page { last, n: PAGE }).await?;
        let done = page.len() < PAGE;
        last = page.last().map(|(d, _)| d.to_string());
        for (digest, activity) in page {
            let Some(hold) = activity.gc_hold_ms else {
                continue;
            };
            if hold_is_live(Some(hold), now) || blobs.stat(&digest).await?.is_some() {
                continue;
            }
            if meta.forget_blob(&digest, hold).await? {
                forgotten += 1;
            }
        }
        if done {
            return Ok(forgotten);
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sha512;
