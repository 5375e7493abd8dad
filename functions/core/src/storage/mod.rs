//! Storage: the [`BlobStore`] (bytes, content-addressed) and [`MetaStore`] (tags, manifests,
//! links, referrers, upload sessions) traits, and their backends.
//!
//! Layer rule: storage knows the OCI model (`Digest`, `RepoName`, …) but never HTTP. Backends are
//! held as `Arc<dyn …>` and chosen from configuration; no backend-specific type crosses a trait.
//! Every backend must pass the contract suite in `contract` (run by each backend's tests).

use std::fmt::Debug;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::oci::{Digest, RepoName, Tag};

pub mod audit;
pub mod aws;
pub mod backend_url;
pub mod dynamodb;
pub mod fs;
pub mod key;
pub mod pins;
pub mod redb;
pub mod s3;

pub use pins::DeleteError;

#[cfg(any(test, feature = "contract"))]
pub mod contract;

/// A stream of body bytes, as handed between the API and a blob store.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A backend's own error, kept whole so a caller can walk or downcast it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure. Backends map their own errors into these variants.
///
/// Invariant: a variant that wraps a backend error keeps it as its [`source`] *and* prints its
/// message in its own `Display`. The log's `cause` and the CLI's message are the `Display` (one
/// line, as operators read it today), so it must carry the backend's details (an AWS error's
/// code and request id); the source is there for code that asks what the failure was. The cost:
/// a formatter that walks the chain (anyhow's `{:#}`) repeats the backend's message.
///
/// [`source`]: std::error::Error::source
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A conditional write lost a race (another writer changed the item first).
    #[error("conflicting concurrent update")]
    Conflict,
    /// The client's body stream failed (disconnect, timeout) while being stored.
    #[error("request body failed: {0}")]
    Body(#[source] std::io::Error),
    /// The backend kept refusing requests as too many, after retrying with backoff.
    #[error("the storage backend is throttling requests")]
    Throttled,
    /// The embedded database file is held by another open handle (a running `wharf serve`):
    /// the commands that open the stores tell the operator so instead of a bare failure.
    #[error("storage backend: {source} ({})", path.display())]
    Locked {
        /// The database file.
        path: std::path::PathBuf,
        /// The database's own error.
        #[source]
        source: BoxError,
    },
    /// Any other backend failure.
    #[error("storage backend: {0}")]
    Backend(#[source] BoxError),
}

impl StorageError {
    /// Wraps a backend error (kept as the source) or a message of what went wrong.
    pub fn backend(e: impl Into<BoxError>) -> Self {
        StorageError::Backend(e.into())
    }
}

/// Shorthand for storage results.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// An inclusive byte range within a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never true: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// An open blob read.
pub struct BlobRead {
    /// The bytes (the whole blob, or the requested range).
    pub body: ByteStream,
    /// Size of the whole blob.
    pub size: u64,
}

impl Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Backend-specific state of a staged upload (e.g. an object-store multipart upload id and its
/// parts), kept inside the upload session so any process can take the next chunk.
pub type StagingState = serde_json::Value;

/// Content-addressed blob bytes. A blob is visible under its digest only once complete and
/// verified; staging areas hold uploads in progress.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Size of a stored blob, or `None`: also for bytes at the blob's place the backend cannot
    /// vouch for (an object-store direct upload not yet proven).
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Reads a blob, or the inclusive `range` of it (already checked against its size).
    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Option<BlobRead>>;

    /// A URL the client may fetch the blob from directly (e.g. a presigned object-store URL).
    /// Backends that serve bytes themselves return `None`.
    async fn redirect_url(&self, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }

    /// Removes a blob's bytes. Removing a missing blob is not an error.
    async fn delete(&self, digest: &Digest) -> Result<()>;

    /// Opens a staging area for upload `id` (a validated opaque id).
    async fn start_upload(&self, id: &str) -> Result<StagingState>;

    /// Appends `body` to the staged upload at `offset` (the session's committed length; anything
    /// staged past it by a failed earlier attempt is discarded). Returns the new state and the
    /// number of bytes written.
    async fn append_upload(
        &self,
        id: &str,
        state: StagingState,
        offset: u64,
        body: ByteStream,
    ) -> Result<(StagingState, u64)>;

    /// Makes the staged bytes visible as blob `digest`. The caller has verified the digest
    /// against the session's hash; if the blob already exists the staged copy is dropped.
    /// Costs no time that grows with the blob: no backend copies a staged upload of more than
    /// one part (the local one renames it; the S3 one leaves it where it was completed and
    /// points the blob's key at it). Finishing again after a success is harmless.
    async fn finish_upload(&self, id: &str, state: StagingState, digest: &Digest) -> Result<()>;

    /// Drops a staged upload and everything it holds.
    async fn abort_upload(&self, id: &str, state: StagingState) -> Result<()>;

    /// The part size this store re-cuts uploads into (advertised as `OCI-Chunk-Min-Length`);
    /// `None` when every chunk size is as good as another.
    fn chunk_min_length(&self) -> Option<u64> {
        None
    }

    /// A presigned request that puts blob `digest` (`size` bytes) straight into the store for
    /// upload `id`, bound to the digest as a checksum the store verifies and records. `None`
    /// when the store cannot presign, or cannot report the SHA-256 it verified (clients then
    /// push through the API, which hashes every byte itself).
    async fn direct_upload(
        &self,
        _id: &str,
        _digest: &Digest,
        _size: u64,
    ) -> Result<Option<DirectUpload>> {
        Ok(None)
    }

    /// Makes what a [`BlobStore::direct_upload`] request put for upload `id` visible as blob
    /// `digest`, once the store reports that the bytes it holds for this upload have that
    /// SHA-256. Bytes that do not are deleted, never published.
    async fn finish_direct_upload(&self, _id: &str, _digest: &Digest) -> Result<DirectFinish> {
        Ok(DirectFinish::Missing)
    }

    /// Stored blobs in digest order (`sha256` before `sha512`, then hex), strictly after
    /// `after`, at most `n`, each with its size and last modification time: what garbage
    /// collection sweeps.
    async fn list_blobs(&self, after: Option<&Digest>, n: usize) -> Result<Vec<BlobInfo>>;

    /// Every staged upload, by id, whatever its state: files, tail objects and object-store
    /// multipart uploads under the staging prefix (including those no session records), and
    /// bytes an upload completed that no blob uses (on S3, located objects no pointer names).
    async fn list_staged(&self) -> Result<Vec<StagedUpload>>;

    /// Drops everything staged under upload `id` without its session's state: garbage
    /// collection's way to remove staging whose session is gone. Never the bytes of a blob
    /// (an upload finished under `id` keeps its blob).
    async fn remove_staged(&self, id: &str) -> Result<()>;
}

/// A presigned upload request: the client sends the blob's bytes to `url` with `method` and
/// exactly these headers (they are signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectUpload {
    /// HTTP method (`PUT`).
    pub method: String,
    /// The presigned URL (a secret while it lives: never logged).
    pub url: String,
    /// Headers to send, names lowercase.
    pub headers: Vec<(String, String)>,
}

/// What [`BlobStore::finish_direct_upload`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectFinish {
    /// The bytes hash to the digest and are the blob now; its size.
    Stored(u64),
    /// Nothing was uploaded for this digest in this upload.
    Missing,
    /// Bytes were uploaded but the store does not report the digest's SHA-256 for them (what
    /// it reported instead, for the log); they were deleted.
    Refused(String),
}

/// A stored blob, as [`BlobStore::list_blobs`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// When its bytes were last written (Unix milliseconds).
    pub modified_ms: u64,
}

/// A staged upload, as [`BlobStore::list_staged`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedUpload {
    /// The upload id.
    pub id: String,
    /// Bytes staged (objects and files; parts of an object-store multipart upload are not
    /// counted, as listing them costs a request per upload).
    pub size: u64,
    /// The latest write or creation time of anything staged (Unix milliseconds).
    pub modified_ms: u64,
}

/// The garbage-collection record of a digest in the metadata store (`BLOBS`/`<digest>`):
/// when a repository last linked it (or a manifest spilled into it), in which garbage-collection
/// epoch, and whether garbage collection holds it for deletion.
///
/// Two conditional writes meet on it. A link reads the current epoch and commits only if the
/// epoch is unchanged and no hold lives; a hold commits only if the last link is older than
/// the cutoff *and* from an earlier epoch than the run's. A run bumps the epoch before reading
/// any repository, so a link either committed before the bump (and the run sees it) or carries
/// the run's epoch (and the hold is refused): a blob linked while garbage collection runs is
/// never deleted, whatever the clocks say (see [`crate::gc`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobActivity {
    /// Last link (Unix milliseconds).
    pub linked_ms: u64,
    /// Garbage-collection epoch the last link was made in (0 before any run).
    pub linked_epoch: u64,
    /// When garbage collection took its hold, if it holds one (Unix milliseconds).
    pub gc_hold_ms: Option<u64>,
}

/// How long a garbage-collection hold on a digest blocks new links to it. It must outlast the
/// gap between a request seeing a blob's bytes (writing them, or finding them already stored)
/// and linking them — two storage calls, seconds — so that a link never lands on bytes deleted
/// under the hold. The cost: re-pushing a blob within this time after garbage collection
/// deleted it fails once with a retryable conflict.
pub const GC_HOLD_MS: u64 = 10 * 60 * 1000;

/// True when a hold taken at `hold_ms` still blocks links at `now_ms`.
pub fn hold_is_live(hold_ms: Option<u64>, now_ms: u64) -> bool {
    hold_ms.is_some_and(|h| now_ms < h.saturating_add(GC_HOLD_MS))
}

/// An upload session with the time of its last write, as [`MetaStore::list_uploads`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadListing {
    /// The session.
    pub session: UploadSession,
    /// Its last write (Unix milliseconds).
    pub touched_ms: u64,
}

/// A repository's link to a blob: the repository may serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLink {
    /// Blob size in bytes.
    pub size: u64,
}

/// A stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// Digest over `bytes`.
    pub digest: Digest,
    /// Media type it was pushed with.
    pub media_type: String,
    /// The exact pushed bytes.
    pub bytes: Bytes,
}

/// A referrer entry: the descriptor returned by the referrers API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerEntry {
    /// Media type of the referring manifest.
    pub media_type: String,
    /// Digest of the referring manifest.
    pub digest: Digest,
    /// Size of the referring manifest.
    pub size: u64,
    /// Its artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Everything a manifest PUT writes, in one transaction.
#[derive(Debug, Clone)]
pub struct ManifestWrite {
    /// Repository.
    pub repo: RepoName,
    /// The manifest itself.
    pub manifest: ManifestRecord,
    /// Tag to point at it, if pushed by tag.
    pub tag: Option<Tag>,
    /// Blobs that must be linked in the repository.
    pub blobs: Vec<Digest>,
    /// Manifests that must exist in the repository.
    pub manifests: Vec<Digest>,
    /// Referrer entry to record under its subject.
    pub referrer: Option<(Digest, ReferrerEntry)>,
    /// When it was pushed (Unix milliseconds), kept with the tag for "last push" and feeds.
    pub pushed_ms: u64,
}

/// A tag with what it points at and when it was last pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// The tag.
    pub tag: Tag,
    /// The manifest it points at.
    pub digest: Digest,
    /// When the tag was last pushed (Unix milliseconds); `None` for tags stored before push
    /// times were recorded.
    pub pushed_ms: Option<u64>,
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Why a manifest write was refused.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    /// A referenced blob is not linked in the repository.
    #[error("blob {0} is not in the repository")]
    MissingBlob(Digest),
    /// A referenced manifest is not in the repository.
    #[error("manifest {0} is not in the repository")]
    MissingManifest(Digest),
    /// The tag is immutable and points at another manifest (this one).
    #[error("the tag is immutable and points at {0}")]
    TagImmutable(Digest),
    /// The release an immutable tag would hold reaches more digests than it may pin
    /// ([`pins::MAX_RELEASE_DIGESTS`]).
    #[error("an immutable release may hold at most {0} manifests and blobs")]
    ReleaseTooLarge(usize),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Result of deleting a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// It existed and is gone.
    Yes,
    /// It did not exist.
    NotFound,
}

/// A persisted upload session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadSession {
    /// Opaque random id (lowercase hex).
    pub id: String,
    /// Repository the upload belongs to.
    pub repo: RepoName,
    /// Bytes received and committed so far.
    pub offset: u64,
    /// Hash midstates of those bytes (see [`crate::oci::DigestStream::save`]).
    pub hash_state: String,
    /// Backend staging state.
    pub staging: StagingState,
    /// Unix seconds when the session was created (for expiry).
    pub created: u64,
    /// Bumped at every update; writes are conditional on it.
    pub version: u64,
}

/// A page request for listings: entries strictly after `last`, at most `n`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Exclusive lower bound.
    pub last: Option<String>,
    /// Maximum number of entries.
    pub n: usize,
}

/// Tags, manifests, blob links, referrers and upload sessions. Every method is one atomic step.
#[async_trait]
pub trait MetaStore: Send + Sync + Debug {
    /// The repository's link to `digest`, if any.
    async fn blob_link(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobLink>>;

    /// Links a blob into a repository (and registers the repository). Idempotent.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, link: BlobLink) -> Result<()>;

    /// Removes a repository's link to a blob; false when there was none. Refused with
    /// [`DeleteError::Pinned`], in the same transaction, while an immutable tag holds the digest
    /// (see [`pins`]).
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, DeleteError>;

    /// A manifest by digest.
    async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>>;

    /// The digest a tag points at.
    async fn tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>>;

    /// Checks references and writes manifest, tag and referrer entry atomically.
    async fn put_manifest(&self, write: ManifestWrite) -> Result<(), PutManifestError>;

    /// Deletes a manifest, every tag pointing at it and its referrer entry. Refused with
    /// [`DeleteError::Pinned`], in the same transaction and with nothing deleted, while an
    /// immutable tag holds the digest (see [`pins`]).
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Deleted, DeleteError>;

    /// Deletes a tag (the manifest stays).
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Deleted>;

    /// Tags in lexical order.
    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>>;

    /// Tags in lexical order, like [`MetaStore::list_tags`], each with its digest and push time.
    async fn list_tag_records(&self, repo: &RepoName, page: &Page) -> Result<Vec<TagRecord>>;

    /// True once anything was pushed to the repository.
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool>;

    /// Repository names in lexical order.
    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>>;

    /// Repository names that start with `prefix`, in lexical order, strictly after `page.last`
    /// (which need not start with `prefix`), at most `page.n`: one range read of the index.
    async fn list_repositories_under(&self, prefix: &str, page: &Page) -> Result<Vec<RepoName>>;

    /// Referrer entries of `subject`.
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ReferrerEntry>>;

    /// Creates an upload session (its `version` must be 0).
    async fn create_upload(&self, session: &UploadSession) -> Result<()>;

    /// Reads an upload session.
    async fn upload(&self, id: &str) -> Result<Option<UploadSession>>;

    /// Stores `session` if the stored one still has `session.version - 1`; else `Conflict`.
    async fn update_upload(&self, session: &UploadSession) -> Result<()>;

    /// Deletes an upload session.
    async fn delete_upload(&self, id: &str) -> Result<()>;

    /// The identity policy document (TOML) stored with the metadata, if any.
    async fn policy_document(&self) -> Result<Option<String>>;

    /// Replaces the stored identity policy document (the caller has validated it).
    async fn put_policy_document(&self, text: &str) -> Result<()>;

    /// Digests the repository links, in order, after `page.last`, at most `page.n`.
    async fn list_blob_links(&self, repo: &RepoName, page: &Page) -> Result<Vec<Digest>>;

    /// The repository's manifests in digest order, after `page.last`, at most `page.n`.
    async fn list_manifests(&self, repo: &RepoName, page: &Page) -> Result<Vec<ManifestRecord>>;

    /// Upload sessions (expired ones included) with their last write, in id order, after
    /// `page.last`, at most `page.n`.
    async fn list_uploads(&self, page: &Page) -> Result<Vec<UploadListing>>;

    /// Deletes an upload session only if it still has `version` (nobody wrote to it since it
    /// was read); true when deleted.
    async fn delete_upload_if(&self, id: &str, version: u64) -> Result<bool>;

    /// The garbage-collection record of `digest`, if any.
    async fn blob_activity(&self, digest: &Digest) -> Result<Option<BlobActivity>>;

    /// Starts a garbage-collection run: bumps the epoch and returns the new one. Links made
    /// from now on carry it (see [`BlobActivity`]).
    async fn begin_gc(&self) -> Result<u64>;

    /// Takes garbage collection's hold on `digest` at `now_ms`, only if no repository linked it
    /// at or after `cutoff_ms` nor in epoch `epoch` or later, and no live hold exists; true when
    /// taken. While the hold lives ([`GC_HOLD_MS`]), [`MetaStore::link_blob`] of the digest
    /// fails with `Conflict`.
    async fn hold_blob(
        &self,
        digest: &Digest,
        cutoff_ms: u64,
        epoch: u64,
        now_ms: u64,
    ) -> Result<bool>;

    /// Garbage-collection records in digest order, after `page.last`, at most `page.n`.
    async fn list_blob_activity(&self, page: &Page) -> Result<Vec<(Digest, BlobActivity)>>;

    /// Deletes the record of `digest` only if it is still the hold taken at `hold_ms` (no link
    /// since); true when deleted.
    async fn forget_blob(&self, digest: &Digest, hold_ms: u64) -> Result<bool>;

    /// [`MetaStore::put_manifest`], where the tag (if any) is written under `guard`, checked
    /// in the same transaction as the write: an immutable tag that exists and points at another
    /// digest is refused with [`PutManifestError::TagImmutable`], and nothing is written. An
    /// immutable tag also pins everything its release reaches ([`pins`]), and every manifest and
    /// blob link of that release must exist (children's too). The
    /// `audit` event is recorded with the write: in its transaction where the backend can
    /// (DynamoDB), else right after it committed.
    async fn put_manifest_guarded(
        &self,
        write: ManifestWrite,
        guard: TagGuard,
        audit: Option<&audit::AuditEvent>,
    ) -> Result<(), PutManifestError>;

    /// Appends an event to the audit trail.
    async fn record_audit(&self, event: &audit::AuditEvent) -> Result<()>;

    /// Reads the audit trail, oldest first.
    async fn list_audit(&self, query: &audit::AuditQuery) -> Result<Vec<audit::AuditEvent>>;
}

/// How a manifest write may treat an existing tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagGuard {
    /// The tag may move to the new digest.
    Mutable,
    /// The tag may be created, or re-pushed at the digest it has; never moved.
    Immutable,
}
