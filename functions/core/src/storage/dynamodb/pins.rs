//! Pins on DynamoDB ([`crate::storage::pins`]): one item per pinned digest in the repository's
//! partition (`PIN#<digest>`), holding a string set of holders (`<tag>@<digest>`) and the time
//! one was last added.
//!
//! A release can reach far more digests than one `TransactWriteItems` holds
//! ([`super::manifest::MAX_TRANSACTION_ITEMS`]), so a push of an immutable tag writes its pins
//! first, each an `UpdateItem` that `ADD`s its holder (so releases sharing a layer keep each
//! other's holders), then checks that every blob link and manifest reached only through a child
//! still exists, then runs the manifest's own transaction, which checks its direct references.
//! A delete is a transaction carrying a `ConditionCheck` that the pin item does not exist, so a
//! delete and a pin never both commit: either the delete committed first and the push's checks
//! find the content missing, or the pin did and the delete is refused.
//!
//! A pin without its tag (a push that failed after pinning) only over-protects, until the delete
//! that meets it finds it stale ([`judge`]) and removes it, conditional on no holder having been
//! added since it was read.

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::DynamoMetaStore;
use super::item::{get_n, key_map, n};
use super::retry;
use crate::oci::{Digest, RepoName, Tag};
use crate::storage::aws::{ErrorClass, classify, storage_error};
use crate::storage::key::Key;
use crate::storage::pins::{DeleteError, PinHolder, PinVerdict, Release, judge};
use crate::storage::{ManifestWrite, MetaStore, PutManifestError, Result, StorageError, now_ms};

/// The pin item's set of holders.
const HOLDERS: &str = "holders";
/// When a holder was last added (Unix milliseconds).
const TOUCHED_MS: &str = "touched_ms";

/// Pin writes and existence reads of one push in flight at once: a release of a few hundred
/// digests takes a few round trips, not hundreds, without bursting past a table's throughput.
const IN_FLIGHT: usize = 16;

/// Rounds of delete-then-settle a delete tries before answering `Conflict`: each round that
/// fails on the pin has just removed a stale one (or found a push re-adding it).
pub(super) const PIN_ATTEMPTS: usize = 4;

/// Pins everything `w` reaches under immutable tag `tag` (see the module doc). Refuses early,
/// before writing a pin, when the tag already points elsewhere.
pub(super) async fn pin_release(
    store: &DynamoMetaStore,
    w: &ManifestWrite,
    tag: &Tag,
) -> Result<(), PutManifestError> {
    if let Some(current) = store.tag(&w.repo, tag).await?
        && current != w.manifest.digest
    {
        return Err(PutManifestError::TagImmutable(current));
    }
    let mut release = Release::new(w, tag)?;
    while let Some(child) = release.next_child() {
        let record = store
            .manifest(&w.repo, &child)
            .await?
            .ok_or(PutManifestError::MissingManifest(child))?;
        release.visit(&record)?;
    }
    let holder = release.holder().encode();
    stream::iter(release.digests())
        .map(|d| add_holder(store, &w.repo, d, holder.clone()))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    // Pinned now: a delete of any of these either committed before (and is seen here) or is
    // refused from now on.
    let reached: Vec<(bool, Digest)> = release
        .indirect_blobs()
        .map(|d| (true, d.clone()))
        .chain(release.indirect_manifests().map(|d| (false, d.clone())))
        .collect();
    let missing: Vec<Option<PutManifestError>> = stream::iter(reached)
        .map(|(blob, d)| missing(store, &w.repo, blob, d))
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await?;
    match missing.into_iter().flatten().next() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The refusal for a blob link (`blob`) or manifest `digest` of `repo` that does not exist.
async fn missing(
    store: &DynamoMetaStore,
    repo: &RepoName,
    blob: bool,
    digest: Digest,
) -> Result<Option<PutManifestError>> {
    let key = if blob {
        Key::Blob(repo, &digest)
    } else {
        Key::Manifest(repo, &digest)
    };
    if store.get(key).await?.is_some() {
        return Ok(None);
    }
    Ok(Some(if blob {
        PutManifestError::MissingBlob(digest)
    } else {
        PutManifestError::MissingManifest(digest)
    }))
}

/// Adds `holder` to the pin on `digest`, creating it if needed.
async fn add_holder(
    store: &DynamoMetaStore,
    repo: &RepoName,
    digest: Digest,
    holder: String,
) -> Result<()> {
    retry::write(|| {
        store
            .client
            .update_item()
            .table_name(&store.table)
            .set_key(Some(key_map(Key::Pin(repo, &digest))))
            .update_expression("ADD #h :h SET #t = :now")
            .expression_attribute_names("#h", HOLDERS)
            .expression_attribute_names("#t", TOUCHED_MS)
            .expression_attribute_values(":h", AttributeValue::Ss(vec![holder.clone()]))
            .expression_attribute_values(":now", n(now_ms()))
            .send()
    })
    .await
    .map_err(|e| storage_error("UpdateItem (pin)", e))?;
    Ok(())
}

/// The transaction item that fails while a pin on `digest` exists.
pub(super) fn unpinned_op(
    store: &DynamoMetaStore,
    repo: &RepoName,
    digest: &Digest,
) -> Result<TransactWriteItem> {
    // A condition on an item that does not exist is evaluated against no attributes, so
    // `attribute_not_exists` holds ("Condition expressions", DynamoDB developer guide).
    let check = ConditionCheck::builder()
        .table_name(&store.table)
        .set_key(Some(key_map(Key::Pin(repo, digest))))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(StorageError::backend)?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

/// Refuses a delete of `digest` while its pin holds it; removes a stale pin (only if no holder
/// was added since it was read). `Ok` means the caller may try its delete again.
pub(super) async fn settle(
    store: &DynamoMetaStore,
    repo: &RepoName,
    digest: &Digest,
) -> Result<(), DeleteError> {
    let Some(pin) = store.get(Key::Pin(repo, digest)).await? else {
        return Ok(());
    };
    let touched = get_n(&pin, TOUCHED_MS)?;
    let raw = match pin.get(HOLDERS) {
        Some(AttributeValue::Ss(v)) => v.as_slice(),
        _ => &[],
    };
    let mut holders = Vec::with_capacity(raw.len());
    for h in raw {
        let holder = PinHolder::decode(h)?;
        let current = store.tag(repo, &holder.tag).await?;
        holders.push((holder, current));
    }
    if let PinVerdict::Held(h) = judge(touched, now_ms(), &holders) {
        return Err(DeleteError::Pinned {
            digest: digest.clone(),
            tag: h.tag,
        });
    }
    let sent = retry::write(|| {
        store
            .client
            .delete_item()
            .table_name(&store.table)
            .set_key(Some(key_map(Key::Pin(repo, digest))))
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", TOUCHED_MS)
            .expression_attribute_values(":t", n(touched))
            .send()
    })
    .await;
    match sent {
        // Stale and gone, or written again meanwhile (the next round reads it afresh).
        Ok(_) => Ok(()),
        Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(()),
        Err(e) => Err(storage_error("DeleteItem (stale pin)", e).into()),
    }
}

/// Removes a repository's link to a blob, in one transaction with the check that no pin holds
/// it; false when there was no link.
pub(super) async fn unlink(
    store: &DynamoMetaStore,
    repo: &RepoName,
    digest: &Digest,
) -> Result<bool, DeleteError> {
    /// Indices of the transaction's items.
    const LINK: usize = 0;
    for _ in 0..PIN_ATTEMPTS {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&store.table)
            .set_key(Some(key_map(Key::Blob(repo, digest))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(StorageError::backend)?;
        let items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            unpinned_op(store, repo, digest)?,
        ];
        match retry::transact(store, "TransactWriteItems (unlink)", items).await {
            Ok(()) => return Ok(true),
            Err(retry::TransactError::Condition(failed)) if failed.contains(&LINK) => {
                return Ok(false);
            }
            // The pin: refused if it holds, else it was stale and is gone now.
            Err(retry::TransactError::Condition(_)) => settle(store, repo, digest).await?,
            Err(retry::TransactError::Storage(e)) => return Err(e.into()),
        }
    }
    Err(StorageError::Conflict.into())
}
