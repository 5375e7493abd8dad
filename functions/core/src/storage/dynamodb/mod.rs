//! Metadata in one DynamoDB table: the single-table design spelled by [`super::key`] (the
//! embedded store uses the very same keys).
//!
//! Every `MetaStore` step is one atomic DynamoDB call or transaction: a manifest PUT is a
//! `TransactWriteItems` whose `ConditionCheck`s make sure every referenced blob link and child
//! manifest exists, so a tag never points at missing content ([`manifest`]); upload sessions
//! are versioned with conditional puts and carry a TTL attribute ([`uploads`]); listings are
//! paginated `Query`s in sort-key order ([`query`]). Manifests too large for an item keep their
//! bytes in the blob store. An immutable tag pins its release, and deletes check the pins in
//! their own transaction ([`pins`]).
//!
//! Concurrency: DynamoDB cancels a write that meets another transaction on an item, so every
//! write retries contention with jittered backoff ([`retry`]), and no item is written or
//! checked by every push: the garbage-collection epoch is sharded by digest ([`gc`]), and the
//! repository index entry, written once per repository, is left out of later writes once it is
//! known to exist (entries are never deleted).
//!
//! Layer rule: SDK types stay inside this module; callers see [`MetaStore`] and
//! [`StorageError`] only.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem};

use super::key::{self, Key};
use super::{
    BlobActivity, BlobLink, BlobStore, DeleteError, Deleted, ManifestRecord, ManifestWrite,
    MetaStore, Page, PutManifestError, ReferrerEntry, Result, StorageError, TagGuard, TagRecord,
    UploadListing, UploadSession,
};
use crate::oci::{Digest, RepoName, Tag};
use item::{Item, get_n, get_s, item, key_map, opt_n, s};
use query::{SortRange, prefix_range};

pub mod admin;
pub(crate) mod audit;
pub mod config;
mod gc;
mod item;
mod manifest;
mod pins;
mod query;
mod retry;
mod uploads;

pub use config::DynamoConfig;

/// The DynamoDB [`MetaStore`].
#[derive(Debug, Clone)]
pub struct DynamoMetaStore {
    client: Client,
    table: String,
    /// Where manifests too large for an item keep their bytes.
    blobs: Arc<dyn BlobStore>,
    /// Repositories known to be in the repository index (entries are never deleted).
    indexed: Arc<Mutex<HashSet<RepoName>>>,
}

/// Most repository names remembered as indexed. Past it the memory starts over: forgetting
/// costs one `GetItem` per repository, never correctness.
const INDEXED_CACHE: usize = 4096;

impl DynamoMetaStore {
    /// A store over `config.table` (which must exist; see [`admin::create_table`]), spilling
    /// large manifests into `blobs`.
    pub async fn connect(config: DynamoConfig, blobs: Arc<dyn BlobStore>) -> Self {
        let sdk = super::aws::sdk_config(&config.endpoint).await;
        DynamoMetaStore {
            client: Client::new(&sdk),
            table: config.table,
            blobs,
            indexed: Arc::default(),
        }
    }

    /// The repository index `Put` a write into `repo` must carry: `None` once the entry is
    /// known to exist (then every push into the repository would otherwise write that one item,
    /// and parallel layer links of one push would contend on it).
    async fn repo_index_op(&self, repo: &RepoName) -> Result<Option<TransactWriteItem>> {
        if self.is_indexed(repo) {
            return Ok(None);
        }
        if self.get(Key::Repo(repo)).await?.is_some() {
            self.remember_indexed(repo);
            return Ok(None);
        }
        manifest::put_op(&self.table, item::key_map(Key::Repo(repo))).map(Some)
    }

    fn is_indexed(&self, repo: &RepoName) -> bool {
        self.indexed.lock().is_ok_and(|set| set.contains(repo))
    }

    /// Notes that `repo` is in the index (a write carrying its entry committed).
    fn remember_indexed(&self, repo: &RepoName) {
        if let Ok(mut set) = self.indexed.lock() {
            if set.len() >= INDEXED_CACHE {
                set.clear();
            }
            set.insert(repo.clone());
        }
    }

    /// Reads one item (strongly consistent).
    async fn get(&self, key: Key<'_>) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| super::aws::storage_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Writes one item unconditionally.
    async fn put(&self, item: Item) -> Result<()> {
        retry::write(|| {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .send()
        })
        .await
        .map_err(|e| super::aws::storage_error("PutItem", e))?;
        Ok(())
    }

    /// Deletes one item; true when it existed.
    async fn remove(&self, key: Key<'_>) -> Result<bool> {
        let out = retry::write(|| {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key_map(key)))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await
        .map_err(|e| super::aws::storage_error("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

fn parse<T, E: Into<super::BoxError>>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(StorageError::backend)
}

/// Sort key → the part after `prefix`.
fn sk_suffix<'a>(item: &'a Item, prefix: &str) -> Result<&'a str> {
    let sk = get_s(item, item::SK)?;
    sk.strip_prefix(prefix)
        .ok_or_else(|| StorageError::backend("sort key outside its prefix"))
}

#[async_trait]
impl MetaStore for DynamoMetaStore {
    async fn blob_link(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobLink>> {
        self.get(Key::Blob(repo, digest))
            .await?
            .map(|i| {
                Ok(BlobLink {
                    size: get_n(&i, "size")?,
                })
            })
            .transpose()
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest, link: BlobLink) -> Result<()> {
        gc::link(self, repo, digest, link).await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, DeleteError> {
        pins::unlink(self, repo, digest).await
    }

    async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>> {
        match self.get(Key::Manifest(repo, digest)).await? {
            Some(i) => Ok(Some(self.decode_manifest(digest, &i).await?)),
            None => Ok(None),
        }
    }

    async fn tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        self.get(Key::Tag(repo, tag))
            .await?
            .map(|i| parse(Digest::parse(get_s(&i, "digest")?)))
            .transpose()
    }

    async fn put_manifest(&self, write: ManifestWrite) -> Result<(), PutManifestError> {
        manifest::put(self, write, TagGuard::Mutable, None).await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Deleted, DeleteError> {
        manifest::delete(self, repo, digest).await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Deleted> {
        Ok(if self.remove(Key::Tag(repo, tag)).await? {
            Deleted::Yes
        } else {
            Deleted::NotFound
        })
    }

    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>> {
        let range = prefix_range(key::TAG_PREFIX, page.last.as_deref());
        self.query(&key::repo_pk(repo), range, page.n)
            .await?
            .iter()
            .map(|i| parse(Tag::parse(sk_suffix(i, key::TAG_PREFIX)?)))
            .collect()
    }

    async fn list_tag_records(&self, repo: &RepoName, page: &Page) -> Result<Vec<TagRecord>> {
        let range = prefix_range(key::TAG_PREFIX, page.last.as_deref());
        self.query(&key::repo_pk(repo), range, page.n)
            .await?
            .iter()
            .map(|i| {
                Ok(TagRecord {
                    tag: parse(Tag::parse(sk_suffix(i, key::TAG_PREFIX)?))?,
                    digest: parse(Digest::parse(get_s(i, "digest")?))?,
                    // Tags written before push times were recorded have no `pushed_ms`.
                    pushed_ms: opt_n(i, item::PUSHED_MS)?,
                })
            })
            .collect()
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        Ok(self.get(Key::Repo(repo)).await?.is_some())
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>> {
        let range = match &page.last {
            Some(last) => SortRange::After(last.clone()),
            None => SortRange::All,
        };
        self.query(key::REPOS_PK, range, page.n)
            .await?
            .iter()
            .map(|i| parse(RepoName::parse(get_s(i, item::SK)?)))
            .collect()
    }

    async fn list_repositories_under(&self, prefix: &str, page: &Page) -> Result<Vec<RepoName>> {
        // A key condition may not compare with an empty string ("The AttributeValue for a key
        // attribute cannot contain an empty string value"): the whole index is the plain listing.
        if prefix.is_empty() {
            return self.list_repositories(page).await;
        }
        let Some((start, end)) = key::repo_name_range(prefix, page.last.as_deref()) else {
            return Ok(Vec::new());
        };
        // BETWEEN is inclusive: `<name>\u{1}` is the first key after a name (every name byte
        // sorts above it), and no name equals the range's end (`~` is no name character).
        let lo = match start {
            key::NameStart::At(s) => s,
            key::NameStart::After(s) => format!("{s}\u{1}"),
        };
        self.query(key::REPOS_PK, SortRange::Between(lo, end), page.n)
            .await?
            .iter()
            .map(|i| parse(RepoName::parse(get_s(i, item::SK)?)))
            .collect()
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ReferrerEntry>> {
        let range = prefix_range(&key::referrer_prefix(subject), None);
        self.query(&key::repo_pk(repo), range, usize::MAX)
            .await?
            .iter()
            .map(|i| parse(serde_json::from_str(get_s(i, "entry")?)))
            .collect()
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        uploads::create(self, session).await
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadSession>> {
        uploads::read(self, id).await
    }

    async fn update_upload(&self, session: &UploadSession) -> Result<()> {
        uploads::update(self, session).await
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        self.remove(Key::Upload(id)).await.map(|_| ())
    }

    async fn policy_document(&self) -> Result<Option<String>> {
        self.get(Key::Policy)
            .await?
            .map(|i| get_s(&i, POLICY_DOCUMENT).map(str::to_owned))
            .transpose()
    }

    async fn put_policy_document(&self, text: &str) -> Result<()> {
        self.put(item(Key::Policy, [(POLICY_DOCUMENT, s(text))]))
            .await
    }

    async fn list_blob_links(&self, repo: &RepoName, page: &Page) -> Result<Vec<Digest>> {
        gc::list_links(self, repo, page).await
    }

    async fn list_manifests(&self, repo: &RepoName, page: &Page) -> Result<Vec<ManifestRecord>> {
        gc::list_manifests(self, repo, page).await
    }

    async fn list_uploads(&self, page: &Page) -> Result<Vec<UploadListing>> {
        gc::list_uploads(self, page).await
    }

    async fn delete_upload_if(&self, id: &str, version: u64) -> Result<bool> {
        gc::delete_upload_if(self, id, version).await
    }

    async fn blob_activity(&self, digest: &Digest) -> Result<Option<BlobActivity>> {
        gc::read_activity(self, digest).await
    }

    async fn begin_gc(&self) -> Result<u64> {
        gc::begin(self).await
    }

    async fn hold_blob(
        &self,
        digest: &Digest,
        cutoff_ms: u64,
        epoch: u64,
        now_ms: u64,
    ) -> Result<bool> {
        gc::hold(self, digest, cutoff_ms, epoch, now_ms).await
    }

    async fn list_blob_activity(&self, page: &Page) -> Result<Vec<(Digest, BlobActivity)>> {
        gc::list_activity(self, page).await
    }

    async fn forget_blob(&self, digest: &Digest, hold_ms: u64) -> Result<bool> {
        gc::forget(self, digest, hold_ms).await
    }

    async fn put_manifest_guarded(
        &self,
        write: ManifestWrite,
        guard: TagGuard,
        audit: Option<&super::audit::AuditEvent>,
    ) -> Result<(), PutManifestError> {
        manifest::put(self, write, guard, audit).await
    }

    async fn record_audit(&self, event: &super::audit::AuditEvent) -> Result<()> {
        audit::record(self, event).await
    }

    async fn list_audit(
        &self,
        query: &super::audit::AuditQuery,
    ) -> Result<Vec<super::audit::AuditEvent>> {
        audit::list(self, query).await
    }
}

/// Attribute of the policy item holding the TOML text (a policy must stay under DynamoDB's
/// 400 KB item limit, far more than any policy needs).
const POLICY_DOCUMENT: &str = "document";

/// A string attribute holding JSON.
fn json_attr<T: serde::Serialize>(v: &T) -> Result<AttributeValue> {
    Ok(s(serde_json::to_string(v).map_err(StorageError::backend)?))
}
