//! Manifest writes and deletes.
//!
//! A PUT is one `TransactWriteItems`: a `ConditionCheck` (`attribute_exists`) for every
//! referenced blob link and child manifest, then the manifest, its referrer entry, the tag and
//! the repository index entry. A failed check is reported through the cancellation reasons,
//! whose index names the missing reference. Two limits shape it: a transaction holds at most
//! [`MAX_TRANSACTION_ITEMS`], so references beyond that are checked with consistent reads
//! just before it (a reference deleted in that instant is the one gap, and only for manifests
//! with ~100 references); and an item holds at most 400 KB, so manifests above
//! [`SPILL_THRESHOLD`] keep their bytes in the blob store, written (idempotently: it is
//! content-addressed) before the transaction, and the item only points at them.
//!
//! Under an immutable tag, the release's pins are written before the transaction
//! ([`super::pins`]); a delete is one transaction that also checks the pin.
//!
//! The transaction retries contention ([`super::retry`]): two pushes of one tag, or a push and
//! a link of the same layer, meet on an item and DynamoDB cancels one of them.

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use super::item::{Item, get_b, get_s, item, key_map, n, opt_s, s};
use super::retry::{self, TransactError};
use super::{DynamoMetaStore, json_attr, parse};
use crate::oci::{Digest, RepoName, Tag};
use crate::storage::aws::storage_error;
use crate::storage::key::{self, Key};
use crate::storage::{
    DeleteError, Deleted, ManifestRecord, ManifestWrite, PutManifestError, Result, StorageError,
    TagGuard,
};

/// Most operations one `TransactWriteItems` may hold (a DynamoDB limit).
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Manifests larger than this keep their bytes in the blob store: an item holds at most
/// 400 KB including attribute names and the other attributes, so this leaves ample margin.
pub const SPILL_THRESHOLD: usize = 350 * 1024;

/// What each operation of the transaction is, by index.
#[derive(Debug, Clone)]
enum Op {
    Blob(Digest),
    Manifest(Digest),
    Write,
    /// The check that the epoch shard of spilled bytes is unchanged (a run began if it fails).
    Epoch,
    /// The put of an immutable tag, conditional on it being absent or already at the digest.
    ImmutableTag,
}

/// The manifest item; large manifests' bytes go to the blob store first.
async fn manifest_item(store: &DynamoMetaStore, w: &ManifestWrite) -> Result<Item> {
    let m = &w.manifest;
    let mut attrs = vec![
        ("media_type", s(m.media_type.clone())),
        ("size", n(m.bytes.len() as u64)),
    ];
    if let Some((subject, _)) = &w.referrer {
        attrs.push(("subject", s(subject.to_string())));
    }
    if m.bytes.len() > SPILL_THRESHOLD {
        spill(store, &m.digest, m.bytes.clone()).await?;
        attrs.push(("spilled", AttributeValue::Bool(true)));
    } else {
        attrs.push((
            "bytes",
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(m.bytes.to_vec())),
        ));
    }
    Ok(item(Key::Manifest(&w.repo, &m.digest), attrs))
}

/// Stores manifest bytes as a content-addressed blob.
async fn spill(store: &DynamoMetaStore, digest: &Digest, bytes: Bytes) -> Result<()> {
    if store.blobs.stat(digest).await?.is_some() {
        return Ok(());
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let state = store.blobs.start_upload(&id).await?;
    let body = Box::pin(stream::iter([Ok(bytes)]));
    let result = async {
        let (state, _) = store
            .blobs
            .append_upload(&id, state.clone(), 0, body)
            .await?;
        store.blobs.finish_upload(&id, state, digest).await
    }
    .await;
    if result.is_err() {
        let _ = store.blobs.abort_upload(&id, state).await;
    }
    result
}

/// An unconditional put of `item`, as one item of a transaction.
pub(super) fn put_op(table: &str, item: Item) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(StorageError::backend)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

pub(super) async fn put(
    store: &DynamoMetaStore,
    w: ManifestWrite,
    guard: TagGuard,
    audit: Option<&crate::storage::audit::AuditEvent>,
) -> Result<(), PutManifestError> {
    let mut refs: Vec<Op> = Vec::new();
    for b in &w.blobs {
        if !refs.iter().any(|r| matches!(r, Op::Blob(d) if d == b)) {
            refs.push(Op::Blob(b.clone()));
        }
    }
    for m in &w.manifests {
        if !refs.iter().any(|r| matches!(r, Op::Manifest(d) if d == m)) {
            refs.push(Op::Manifest(m.clone()));
        }
    }
    let digest = &w.manifest.digest;
    if guard == TagGuard::Immutable
        && let Some(tag) = &w.tag
    {
        super::pins::pin_release(store, &w, tag).await?;
    }
    let mut writes = vec![manifest_item(store, &w).await?];
    let index = store.repo_index_op(&w.repo).await?;
    let indexing = index.is_some();
    if indexing {
        writes.push(key_map(Key::Repo(&w.repo)));
    }
    if let Some(event) = audit {
        // The audit record commits with the change, or not at all.
        writes.push(super::audit::event_item(event)?);
    }
    if let Some((subject, entry)) = &w.referrer {
        writes.push(item(
            Key::Referrer(&w.repo, subject, digest),
            [("entry", json_attr(entry)?)],
        ));
    }
    let tag_item = w.tag.as_ref().map(|tag| {
        item(
            Key::Tag(&w.repo, tag),
            [
                ("digest", s(digest.to_string())),
                (super::item::PUSHED_MS, n(w.pushed_ms)),
            ],
        )
    });
    let immutable = guard == TagGuard::Immutable;
    if let Some(t) = &tag_item
        && !immutable
    {
        writes.push(t.clone());
    }
    // Three more: the immutable tag's conditional put, the spilled bytes' record and the epoch.
    let budget = MAX_TRANSACTION_ITEMS - writes.len() - 3;
    let overflow = refs.split_off(refs.len().min(budget));
    for r in &overflow {
        if !exists(store, &w.repo, r).await? {
            return Err(missing(r));
        }
    }
    let mut ops = refs;
    let mut items = Vec::new();
    for r in &ops {
        items.push(check_op(store, &w.repo, r)?);
    }
    for wr in writes {
        items.push(put_op(&store.table, wr)?);
        ops.push(Op::Write);
    }
    if immutable && let Some(t) = tag_item {
        let put = Put::builder()
            .table_name(&store.table)
            .set_item(Some(t))
            .condition_expression("attribute_not_exists(pk) OR #d = :d")
            .expression_attribute_names("#d", "digest")
            .expression_attribute_values(":d", s(digest.to_string()))
            .build()
            .map_err(StorageError::backend)?;
        items.push(TransactWriteItem::builder().put(put).build());
        ops.push(Op::ImmutableTag);
    }
    let spilled = w.manifest.bytes.len() > SPILL_THRESHOLD;
    for _ in 0..super::gc::EPOCH_ATTEMPTS {
        let (mut items, mut ops) = (items.clone(), ops.clone());
        if spilled {
            // The spilled bytes are a blob nothing links: stamp the digest's record in the same
            // transaction, like a link, so garbage collection cannot take them away from under
            // the manifest (a hold meanwhile fails the write, retryably).
            let epoch = super::gc::current_epoch(store, digest).await?;
            let now = crate::storage::now_ms();
            items.push(super::gc::touch_op(&store.table, digest, now, epoch)?);
            items.push(super::gc::epoch_check_op(&store.table, digest, epoch)?);
            ops.extend([Op::Write, Op::Epoch]);
        }
        let failed = match retry::transact(store, "TransactWriteItems (manifest)", items).await {
            Ok(()) => {
                if indexing {
                    store.remember_indexed(&w.repo);
                }
                return Ok(());
            }
            Err(TransactError::Condition(failed)) => failed,
            Err(TransactError::Storage(e)) => return Err(e.into()),
        };
        // The first failed reference decides; a moved epoch alone is retried.
        let Some(op) = failed
            .iter()
            .filter_map(|i| ops.get(*i))
            .find(|op| !matches!(op, Op::Epoch))
        else {
            continue;
        };
        return Err(match missing(op) {
            PutManifestError::TagImmutable(_) => {
                let current = match &w.tag {
                    Some(tag) => super::MetaStore::tag(store, &w.repo, tag).await?,
                    None => None,
                };
                PutManifestError::TagImmutable(current.unwrap_or_else(|| digest.clone()))
            }
            err => err,
        });
    }
    Err(StorageError::Conflict.into())
}

fn missing(r: &Op) -> PutManifestError {
    match r {
        Op::Blob(d) => PutManifestError::MissingBlob(d.clone()),
        Op::Manifest(d) => PutManifestError::MissingManifest(d.clone()),
        // A live hold on spilled bytes, or a moved epoch that kept moving.
        Op::Write | Op::Epoch => PutManifestError::Storage(StorageError::Conflict),
        // Stands in until the caller reads the digest the tag holds.
        Op::ImmutableTag => {
            PutManifestError::TagImmutable(crate::oci::Algorithm::Sha256.digest(b""))
        }
    }
}

fn ref_key<'a>(repo: &'a RepoName, r: &'a Op) -> Option<Key<'a>> {
    match r {
        Op::Blob(d) => Some(Key::Blob(repo, d)),
        Op::Manifest(d) => Some(Key::Manifest(repo, d)),
        Op::Write | Op::Epoch | Op::ImmutableTag => None,
    }
}

async fn exists(store: &DynamoMetaStore, repo: &RepoName, r: &Op) -> Result<bool> {
    match ref_key(repo, r) {
        Some(k) => Ok(store.get(k).await?.is_some()),
        None => Ok(true),
    }
}

fn check_op(store: &DynamoMetaStore, repo: &RepoName, r: &Op) -> Result<TransactWriteItem> {
    let key = ref_key(repo, r).ok_or_else(|| StorageError::backend("not a reference"))?;
    let check = ConditionCheck::builder()
        .table_name(&store.table)
        .set_key(Some(key_map(key)))
        .condition_expression("attribute_exists(pk)")
        .build()
        .map_err(StorageError::backend)?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

impl DynamoMetaStore {
    /// A manifest item back into a record, fetching spilled bytes from the blob store.
    pub(super) async fn decode_manifest(
        &self,
        digest: &Digest,
        i: &Item,
    ) -> Result<ManifestRecord> {
        let media_type = get_s(i, "media_type")?.to_owned();
        let bytes = if matches!(i.get("spilled"), Some(AttributeValue::Bool(true))) {
            let read = self.blobs.get(digest, None).await?.ok_or_else(|| {
                StorageError::backend(format!("the bytes of manifest {digest} are missing"))
            })?;
            let mut out = Vec::with_capacity(usize::try_from(read.size).unwrap_or(0));
            let mut body = read.body;
            while let Some(chunk) = body.next().await {
                out.extend_from_slice(&chunk.map_err(StorageError::backend)?);
            }
            Bytes::from(out)
        } else {
            Bytes::copy_from_slice(get_b(i, "bytes")?)
        };
        if !digest.verifies(&bytes) {
            return Err(StorageError::backend(format!(
                "manifest {digest} is corrupt"
            )));
        }
        Ok(ManifestRecord {
            digest: digest.clone(),
            media_type,
            bytes,
        })
    }
}

/// Deletes the manifest, its referrer entry and the tags on it (each only if it still points
/// here) in one transaction, with the check that no pin holds the digest, so a refused delete
/// deletes nothing. Tags beyond what the transaction holds are deleted just before it, once the
/// pin has been checked, so no tag is ever left pointing at a deleted manifest. Spilled bytes
/// stay in the blob store, which is content-addressed and shared.
pub(super) async fn delete(
    store: &DynamoMetaStore,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Deleted, DeleteError> {
    /// Indices of the transaction's first items.
    const MANIFEST: usize = 0;
    const PIN: usize = 1;
    for _ in 0..super::pins::PIN_ATTEMPTS {
        let Some(found) = store.get(Key::Manifest(repo, digest)).await? else {
            return Ok(Deleted::NotFound);
        };
        let subject = opt_s(&found, "subject")
            .map(|s| parse(Digest::parse(s)))
            .transpose()?;
        let mut items = vec![
            delete_op(
                store,
                Key::Manifest(repo, digest),
                Some("attribute_exists(pk)"),
            )?,
            super::pins::unpinned_op(store, repo, digest)?,
        ];
        if let Some(subject) = &subject {
            items.push(delete_op(
                store,
                Key::Referrer(repo, subject, digest),
                None,
            )?);
        }
        let mut tags = tags_on(store, repo, digest).await?;
        let overflow = tags.split_off(tags.len().min(MAX_TRANSACTION_ITEMS - items.len()));
        if !overflow.is_empty() {
            super::pins::settle(store, repo, digest).await?;
            delete_tags(store, repo, digest, &overflow).await?;
        }
        for tag in &tags {
            let delete = Delete::builder()
                .table_name(&store.table)
                .set_key(Some(key_map(Key::Tag(repo, tag))))
                .condition_expression("#d = :d")
                .expression_attribute_names("#d", "digest")
                .expression_attribute_values(":d", s(digest.to_string()))
                .build()
                .map_err(StorageError::backend)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        match retry::transact(store, "TransactWriteItems (delete)", items).await {
            Ok(()) => return Ok(Deleted::Yes),
            // The manifest was deleted concurrently.
            Err(TransactError::Condition(failed)) if failed.contains(&MANIFEST) => {
                return Ok(Deleted::NotFound);
            }
            // Refused if the pin holds, else it was stale and is gone: try again.
            Err(TransactError::Condition(failed)) if failed.contains(&PIN) => {
                super::pins::settle(store, repo, digest).await?;
            }
            // A tag moved or went meanwhile: read them again.
            Err(TransactError::Condition(_)) => {}
            Err(TransactError::Storage(e)) => return Err(e.into()),
        }
    }
    Err(StorageError::Conflict.into())
}

/// An item of a transaction deleting `key`, under `condition` if any.
fn delete_op(
    store: &DynamoMetaStore,
    key: Key<'_>,
    condition: Option<&str>,
) -> Result<TransactWriteItem> {
    let delete = Delete::builder()
        .table_name(&store.table)
        .set_key(Some(key_map(key)))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(StorageError::backend)?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// The tags of `repo` pointing at `digest`.
async fn tags_on(store: &DynamoMetaStore, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
    let wanted = digest.to_string();
    store
        .query(
            &key::repo_pk(repo),
            super::query::prefix_range(key::TAG_PREFIX, None),
            usize::MAX,
        )
        .await?
        .iter()
        .filter(|t| opt_s(t, "digest") == Some(wanted.as_str()))
        .map(|t| {
            let sk = super::item::get_s(t, super::item::SK)?;
            parse(Tag::parse(sk.strip_prefix(key::TAG_PREFIX).unwrap_or(sk)))
        })
        .collect()
}

/// Deletes each of `tags` only if it still points at `digest`.
async fn delete_tags(
    store: &DynamoMetaStore,
    repo: &RepoName,
    digest: &Digest,
    tags: &[Tag],
) -> Result<()> {
    let wanted = digest.to_string();
    for tag in tags {
        let sent = retry::write(|| {
            store
                .client
                .delete_item()
                .table_name(&store.table)
                .set_key(Some(key_map(Key::Tag(repo, tag))))
                .condition_expression("#d = :d")
                .expression_attribute_names("#d", "digest")
                .expression_attribute_values(":d", s(wanted.clone()))
                .send()
        })
        .await;
        match sent.map_err(|e| storage_error("DeleteItem (tag)", e)) {
            Ok(_) | Err(StorageError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
