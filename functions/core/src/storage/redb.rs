//! The embedded metadata store, on redb: one file, ACID write transactions with fsync on commit,
//! pure Rust. Keys are those of [`super::key`], so the layout matches the DynamoDB table.
//!
//! redb is synchronous; every call runs on the blocking pool. Writes are serialized by redb's
//! single writer, which is what makes each `MetaStore` method one atomic step.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::key::{self, Key};
use super::{
    BlobActivity, BlobLink, DeleteError, Deleted, ManifestRecord, ManifestWrite, MetaStore, Page,
    PutManifestError, ReferrerEntry, Result, StorageError, TagGuard, TagRecord, UploadListing,
    UploadSession,
};

mod audit;
mod gc;
mod pins;

use crate::oci::{Digest, RepoName, Tag};
pub use audit::AUDIT_FILE;

/// The one table: (pk, sk) → value.
const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");

/// Header stored before a manifest's bytes.
#[derive(Serialize, Deserialize)]
struct ManifestHeader {
    media_type: String,
    subject: Option<Digest>,
}

/// A tag's value. Items written before push times were recorded hold the bare digest (a JSON
/// string); they stay readable, with no push time.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum TagValue {
    /// `{"digest": …, "pushed_ms": …}`.
    Stamped { digest: Digest, pushed_ms: u64 },
    /// The original form: the digest alone.
    Bare(Digest),
}

impl TagValue {
    fn into_parts(self) -> (Digest, Option<u64>) {
        match self {
            TagValue::Stamped { digest, pushed_ms } => (digest, Some(pushed_ms)),
            TagValue::Bare(digest) => (digest, None),
        }
    }
}

fn decode_tag(raw: &[u8]) -> Result<(Digest, Option<u64>)> {
    from_json::<TagValue>(raw).map(TagValue::into_parts)
}

/// The embedded [`MetaStore`].
#[derive(Debug, Clone)]
pub struct RedbMetaStore {
    db: Arc<Database>,
    /// The audit trail's JSON lines file, beside the database.
    audit_path: Arc<std::path::PathBuf>,
}

fn be(e: impl Into<redb::Error>) -> StorageError {
    StorageError::backend(e.into())
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(StorageError::backend)
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(StorageError::backend)
}

fn encode_manifest(m: &ManifestRecord, subject: Option<&Digest>) -> Result<Vec<u8>> {
    let header = ManifestHeader {
        media_type: m.media_type.clone(),
        subject: subject.cloned(),
    };
    let mut out = json(&header)?;
    out.push(b'\n');
    out.extend_from_slice(&m.bytes);
    Ok(out)
}

fn decode_manifest(digest: &Digest, raw: &[u8]) -> Result<(ManifestRecord, Option<Digest>)> {
    let split = raw
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| StorageError::backend("corrupt manifest item"))?;
    let header: ManifestHeader = from_json(&raw[..split])?;
    let record = ManifestRecord {
        digest: digest.clone(),
        media_type: header.media_type,
        bytes: Bytes::copy_from_slice(&raw[split + 1..]),
    };
    Ok((record, header.subject))
}

/// Upper bound (exclusive) for keys starting with `prefix`: prefixes here end in `#`, and `$`
/// is the next byte.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_owned();
    end.pop();
    end.push('$');
    end
}

type Table<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;

fn get_raw(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: Key<'_>,
) -> Result<Option<Vec<u8>>> {
    let (pk, sk) = (key.pk(), key.sk());
    Ok(table
        .get((pk.as_str(), sk.as_str()))
        .map_err(be)?
        .map(|v| v.value().to_vec()))
}

fn put_raw(table: &mut Table<'_>, key: Key<'_>, value: &[u8]) -> Result<()> {
    let (pk, sk) = (key.pk(), key.sk());
    table
        .insert((pk.as_str(), sk.as_str()), value)
        .map_err(be)?;
    Ok(())
}

fn remove_raw(table: &mut Table<'_>, key: Key<'_>) -> Result<bool> {
    let (pk, sk) = (key.pk(), key.sk());
    Ok(table
        .remove((pk.as_str(), sk.as_str()))
        .map_err(be)?
        .is_some())
}

/// Sort keys (with `prefix` stripped) and values in partition `pk`, after `last`, at most `n`.
fn scan(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    pk: &str,
    prefix: &str,
    last: Option<&str>,
    n: usize,
) -> Result<Vec<(String, Vec<u8>)>> {
    let start = match last {
        Some(last) => Bound::Excluded(format!("{prefix}{last}")),
        None => Bound::Included(prefix.to_owned()),
    };
    let end = if prefix.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(prefix_end(prefix))
    };
    let lower = match &start {
        Bound::Included(s) => Bound::Included((pk, s.as_str())),
        Bound::Excluded(s) => Bound::Excluded((pk, s.as_str())),
        Bound::Unbounded => Bound::Unbounded,
    };
    let pk_end = format!("{pk}\u{1}");
    let upper = match &end {
        Bound::Excluded(s) => Bound::Excluded((pk, s.as_str())),
        _ => Bound::Excluded((pk_end.as_str(), "")),
    };
    let mut out = Vec::new();
    for item in table.range((lower, upper)).map_err(be)? {
        if out.len() >= n {
            break;
        }
        let (k, v) = item.map_err(be)?;
        let (_, sk) = k.value();
        out.push((sk[prefix.len()..].to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

impl RedbMetaStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StorageError::Locked {
                path: path.to_owned(),
                source: e.into(),
            },
            e => be(e),
        })?;
        // Create the table only when missing: a write commit fsyncs, which would cost every
        // start a few milliseconds (start-up time is measured in BENCHMARKS.md).
        let exists = db.begin_read().map_err(be)?.open_table(ITEMS).is_ok();
        if !exists {
            let txn = db.begin_write().map_err(be)?;
            txn.open_table(ITEMS).map_err(be)?;
            txn.commit().map_err(be)?;
        }
        Ok(RedbMetaStore {
            db: Arc::new(db),
            audit_path: Arc::new(audit::path_for(path)),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>) -> Result<T>
        + Send
        + 'static,
    ) -> Result<T> {
        // Inline, not on the blocking pool: a read transaction takes no lock and touches a few
        // pages that are in the page cache, so it costs microseconds, while the two thread
        // hand-offs of `spawn_blocking` cost more than that and halved manifest GET throughput
        // (BENCHMARKS.md). Writes, which fsync, stay on the blocking pool.
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(ITEMS).map_err(be)?;
        f(&table)
    }

    /// Runs `f` in one write transaction, committed only when `f` returns `Ok(Ok(_))`.
    async fn write<T: Send + 'static, E: Send + 'static + From<StorageError>>(
        &self,
        f: impl FnOnce(&mut Table<'_>) -> std::result::Result<T, E> + Send + 'static,
    ) -> std::result::Result<T, E> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(be)?;
            let value = {
                let mut table = txn.open_table(ITEMS).map_err(be)?;
                f(&mut table)?
            };
            txn.commit().map_err(be)?;
            Ok(value)
        })
        .await
        .map_err(StorageError::backend)?
    }
}

#[async_trait]
impl MetaStore for RedbMetaStore {
    async fn blob_link(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobLink>> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.read(move |t| {
            get_raw(t, Key::Blob(&repo, &digest))?
                .map(|v| from_json(&v))
                .transpose()
        })
        .await
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest, link: BlobLink) -> Result<()> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.write(move |t| {
            gc::touch(t, &digest)?;
            put_raw(t, Key::Blob(&repo, &digest), &json(&link)?)?;
            put_raw(t, Key::Repo(&repo), b"")
        })
        .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, DeleteError> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.write(move |t| {
            pins::check_unpinned(t, &repo, &digest)?;
            Ok(remove_raw(t, Key::Blob(&repo, &digest))?)
        })
        .await
    }

    async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.read(move |t| {
            get_raw(t, Key::Manifest(&repo, &digest))?
                .map(|raw| decode_manifest(&digest, &raw).map(|(m, _)| m))
                .transpose()
        })
        .await
    }

    async fn tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let (repo, tag) = (repo.clone(), tag.clone());
        self.read(move |t| {
            get_raw(t, Key::Tag(&repo, &tag))?
                .map(|v| decode_tag(&v).map(|(d, _)| d))
                .transpose()
        })
        .await
    }

    async fn put_manifest(&self, w: ManifestWrite) -> Result<(), PutManifestError> {
        self.put_manifest_guarded(w, TagGuard::Mutable, None).await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Deleted, DeleteError> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.write(move |t| {
            let Some(raw) = get_raw(t, Key::Manifest(&repo, &digest))? else {
                return Ok(Deleted::NotFound);
            };
            pins::check_unpinned(t, &repo, &digest)?;
            let (_, subject) = decode_manifest(&digest, &raw)?;
            if let Some(subject) = subject {
                remove_raw(t, Key::Referrer(&repo, &subject, &digest))?;
            }
            let pk = key::repo_pk(&repo);
            let tags = scan(t, &pk, key::TAG_PREFIX, None, usize::MAX)?;
            for (tag, value) in tags {
                if decode_tag(&value)?.0 == digest {
                    let tag = Tag::parse(&tag).map_err(StorageError::backend)?;
                    remove_raw(t, Key::Tag(&repo, &tag))?;
                }
            }
            remove_raw(t, Key::Manifest(&repo, &digest))?;
            Ok(Deleted::Yes)
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Deleted> {
        let (repo, tag) = (repo.clone(), tag.clone());
        self.write(move |t| {
            Ok(if remove_raw(t, Key::Tag(&repo, &tag))? {
                Deleted::Yes
            } else {
                Deleted::NotFound
            })
        })
        .await
    }

    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>> {
        let (pk, page) = (key::repo_pk(repo), page.clone());
        self.read(move |t| {
            scan(t, &pk, key::TAG_PREFIX, page.last.as_deref(), page.n)?
                .into_iter()
                .map(|(tag, _)| Tag::parse(&tag).map_err(StorageError::backend))
                .collect()
        })
        .await
    }

    async fn list_tag_records(&self, repo: &RepoName, page: &Page) -> Result<Vec<TagRecord>> {
        let (pk, page) = (key::repo_pk(repo), page.clone());
        self.read(move |t| {
            scan(t, &pk, key::TAG_PREFIX, page.last.as_deref(), page.n)?
                .into_iter()
                .map(|(tag, value)| {
                    let (digest, pushed_ms) = decode_tag(&value)?;
                    Ok(TagRecord {
                        tag: Tag::parse(&tag).map_err(StorageError::backend)?,
                        digest,
                        pushed_ms,
                    })
                })
                .collect()
        })
        .await
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let repo = repo.clone();
        self.read(move |t| Ok(get_raw(t, Key::Repo(&repo))?.is_some()))
            .await
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>> {
        let page = page.clone();
        self.read(move |t| {
            scan(t, key::REPOS_PK, "", page.last.as_deref(), page.n)?
                .into_iter()
                .map(|(name, _)| RepoName::parse(&name).map_err(StorageError::backend))
                .collect()
        })
        .await
    }

    async fn list_repositories_under(&self, prefix: &str, page: &Page) -> Result<Vec<RepoName>> {
        let Some((start, end)) = key::repo_name_range(prefix, page.last.as_deref()) else {
            return Ok(Vec::new());
        };
        let n = page.n;
        self.read(move |t| {
            let pk = key::REPOS_PK;
            let lower = match &start {
                key::NameStart::At(s) => Bound::Included((pk, s.as_str())),
                key::NameStart::After(s) => Bound::Excluded((pk, s.as_str())),
            };
            let upper = Bound::Excluded((pk, end.as_str()));
            let mut out = Vec::new();
            for item in t.range((lower, upper)).map_err(be)?.take(n) {
                let (k, _) = item.map_err(be)?;
                out.push(RepoName::parse(k.value().1).map_err(StorageError::backend)?);
            }
            Ok(out)
        })
        .await
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ReferrerEntry>> {
        let (pk, prefix) = (key::repo_pk(repo), key::referrer_prefix(subject));
        self.read(move |t| {
            scan(t, &pk, &prefix, None, usize::MAX)?
                .iter()
                .map(|(_, v)| from_json(v))
                .collect()
        })
        .await
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        let session = session.clone();
        self.write(move |t| {
            if get_raw(t, Key::Upload(&session.id))?.is_some() {
                return Err(StorageError::Conflict);
            }
            put_raw(t, Key::Upload(&session.id), &gc::encode_session(&session)?)
        })
        .await
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadSession>> {
        let id = id.to_owned();
        self.read(move |t| {
            get_raw(t, Key::Upload(&id))?
                .map(|v| from_json(&v))
                .transpose()
        })
        .await
    }

    async fn update_upload(&self, session: &UploadSession) -> Result<()> {
        let session = session.clone();
        self.write(move |t| {
            let Some(raw) = get_raw(t, Key::Upload(&session.id))? else {
                return Err(StorageError::Conflict);
            };
            let stored: UploadSession = from_json(&raw)?;
            if stored.version + 1 != session.version {
                return Err(StorageError::Conflict);
            }
            put_raw(t, Key::Upload(&session.id), &gc::encode_session(&session)?)
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |t| remove_raw(t, Key::Upload(&id)).map(|_| ()))
            .await
    }

    async fn policy_document(&self) -> Result<Option<String>> {
        self.read(|t| {
            get_raw(t, Key::Policy)?
                .map(|v| String::from_utf8(v).map_err(StorageError::backend))
                .transpose()
        })
        .await
    }

    async fn put_policy_document(&self, text: &str) -> Result<()> {
        let text = text.to_owned();
        self.write(move |t| put_raw(t, Key::Policy, text.as_bytes()))
            .await
    }

    async fn list_blob_links(&self, repo: &RepoName, page: &Page) -> Result<Vec<Digest>> {
        let (repo, page) = (repo.clone(), page.clone());
        self.read(move |t| gc::list_links(t, &repo, &page)).await
    }

    async fn list_manifests(&self, repo: &RepoName, page: &Page) -> Result<Vec<ManifestRecord>> {
        let (repo, page) = (repo.clone(), page.clone());
        self.read(move |t| gc::list_manifests(t, &repo, &page))
            .await
    }

    async fn list_uploads(&self, page: &Page) -> Result<Vec<UploadListing>> {
        let page = page.clone();
        self.read(move |t| gc::list_uploads(t, &page)).await
    }

    async fn delete_upload_if(&self, id: &str, version: u64) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |t| gc::delete_upload_if(t, &id, version))
            .await
    }

    async fn blob_activity(&self, digest: &Digest) -> Result<Option<BlobActivity>> {
        let digest = digest.clone();
        self.read(move |t| gc::read_activity(t, &digest)).await
    }

    async fn begin_gc(&self) -> Result<u64> {
        self.write(gc::begin).await
    }

    async fn hold_blob(
        &self,
        digest: &Digest,
        cutoff_ms: u64,
        epoch: u64,
        now_ms: u64,
    ) -> Result<bool> {
        let digest = digest.clone();
        self.write(move |t| gc::hold(t, &digest, cutoff_ms, epoch, now_ms))
            .await
    }

    async fn list_blob_activity(&self, page: &Page) -> Result<Vec<(Digest, BlobActivity)>> {
        let page = page.clone();
        self.read(move |t| gc::list_activity(t, &page)).await
    }

    async fn forget_blob(&self, digest: &Digest, hold_ms: u64) -> Result<bool> {
        let digest = digest.clone();
        self.write(move |t| gc::forget(t, &digest, hold_ms)).await
    }

    async fn put_manifest_guarded(
        &self,
        w: ManifestWrite,
        guard: TagGuard,
        event: Option<&super::audit::AuditEvent>,
    ) -> Result<(), PutManifestError> {
        self.write(move |t| {
            for blob in &w.blobs {
                if get_raw(t, Key::Blob(&w.repo, blob))?.is_none() {
                    return Err(PutManifestError::MissingBlob(blob.clone()));
                }
            }
            for child in &w.manifests {
                if get_raw(t, Key::Manifest(&w.repo, child))?.is_none() {
                    return Err(PutManifestError::MissingManifest(child.clone()));
                }
            }
            let digest = &w.manifest.digest;
            if guard == TagGuard::Immutable
                && let Some(tag) = &w.tag
                && let Some(raw) = get_raw(t, Key::Tag(&w.repo, tag))?
            {
                let (current, _) = decode_tag(&raw)?;
                if current != *digest {
                    return Err(PutManifestError::TagImmutable(current));
                }
            }
            if guard == TagGuard::Immutable
                && let Some(tag) = &w.tag
            {
                pins::pin_release(t, &w, tag)?;
            }
            let subject = w.referrer.as_ref().map(|(s, _)| s);
            put_raw(
                t,
                Key::Manifest(&w.repo, digest),
                &encode_manifest(&w.manifest, subject)?,
            )?;
            if let Some((subject, entry)) = &w.referrer {
                put_raw(t, Key::Referrer(&w.repo, subject, digest), &json(entry)?)?;
            }
            if let Some(tag) = &w.tag {
                let value = TagValue::Stamped {
                    digest: digest.clone(),
                    pushed_ms: w.pushed_ms,
                };
                put_raw(t, Key::Tag(&w.repo, tag), &json(&value)?)?;
            }
            put_raw(t, Key::Repo(&w.repo), b"")?;
            Ok(())
        })
        .await?;
        if let Some(event) = event {
            // After the commit: the trail is a file, outside the database's transaction.
            audit::append(self.audit_path.clone(), event).await?;
        }
        Ok(())
    }

    async fn record_audit(&self, event: &super::audit::AuditEvent) -> Result<()> {
        audit::append(self.audit_path.clone(), event).await
    }

    async fn list_audit(
        &self,
        query: &super::audit::AuditQuery,
    ) -> Result<Vec<super::audit::AuditEvent>> {
        audit::read(self.audit_path.clone(), query.clone()).await
    }
}

#[cfg(test)]
mod tests;
