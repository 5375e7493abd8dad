//! What garbage collection needs from the table: per-digest records (`BLOBS`/`<digest>`) with
//! their holds, written conditionally so a link and a hold can never both win; listings of
//! links, manifests and upload sessions; and conditional deletes.
//!
//! A link reads the epoch (`GC`/`EPOCH`), then is one `TransactWriteItems` (repository index,
//! link, record, and a `ConditionCheck` that the epoch is unchanged) whose record `Put` is
//! conditional on no live hold; a hold is an `UpdateItem` conditional on no link since the
//! cutoff nor in the run's epoch, and no live hold. DynamoDB serializes transactions on the
//! items they share, so a link committed before a run bumped the epoch is seen by its mark
//! phase, and one committed after carries the new epoch.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, ReturnValue, TransactWriteItem};

use super::item::{Item, get_n, get_s, item, key_map, n, opt_n, s};
use super::query::{SortRange, prefix_range};
use super::uploads::UPLOAD_TTL;
use super::{DynamoMetaStore, parse, sk_suffix};
use crate::oci::{Digest, RepoName};
use crate::storage::aws::{ErrorClass, classify, storage_error};
use crate::storage::key::{self, Key};
use crate::storage::{
    BlobActivity, BlobLink, GC_HOLD_MS, ManifestRecord, Page, Result, StorageError, UploadListing,
    UploadSession, now_ms,
};

/// Attribute: last link of a digest (Unix milliseconds).
const LINKED_MS: &str = "linked_ms";
/// Attribute: garbage-collection epoch of the last link.
const LINKED_EPOCH: &str = "linked_epoch";
/// Attribute: when garbage collection took its hold (Unix milliseconds).
const GC_HOLD: &str = "gc_hold_ms";
/// Attribute of the epoch item.
const EPOCH: &str = "epoch";

/// Attempts at a link whose epoch changed under it (a run started meanwhile).
const LINK_ATTEMPTS: usize = 5;

/// The current epoch (0 before any run).
pub(super) async fn current_epoch(store: &DynamoMetaStore) -> Result<u64> {
    match store.get(Key::GcEpoch).await? {
        Some(i) => get_n(&i, EPOCH),
        None => Ok(0),
    }
}

/// Bumps the epoch; returns the new one.
pub(super) async fn begin(store: &DynamoMetaStore) -> Result<u64> {
    let out = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key_map(Key::GcEpoch)))
        .update_expression("ADD #e :one")
        .expression_attribute_names("#e", EPOCH)
        .expression_attribute_values(":one", n(1))
        .return_values(ReturnValue::UpdatedNew)
        .send()
        .await
        .map_err(|e| storage_error("UpdateItem (gc epoch)", e))?;
    let attrs = out.attributes.unwrap_or_default();
    get_n(&attrs, EPOCH)
}

/// A `ConditionCheck` that the epoch is still `epoch`.
pub(super) fn epoch_check_op(table: &str, epoch: u64) -> Result<TransactWriteItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key_map(Key::GcEpoch)))
        .expression_attribute_names("#e", EPOCH);
    let check = if epoch == 0 {
        check.condition_expression("attribute_not_exists(#e)")
    } else {
        check
            .condition_expression("#e = :e")
            .expression_attribute_values(":e", n(epoch))
    };
    Ok(TransactWriteItem::builder()
        .condition_check(check.build().map_err(StorageError::backend)?)
        .build())
}

/// The conditional `Put` of a digest's record stamping a link at `now` in `epoch`: refused
/// while a hold taken less than [`GC_HOLD_MS`] ago lives.
pub(super) fn touch_op(
    table: &str,
    digest: &Digest,
    now: u64,
    epoch: u64,
) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item(
            Key::BlobActivity(digest),
            [(LINKED_MS, n(now)), (LINKED_EPOCH, n(epoch))],
        )))
        .condition_expression("attribute_not_exists(#h) OR #h < :stale")
        .expression_attribute_names("#h", GC_HOLD)
        .expression_attribute_values(":stale", n(now.saturating_sub(GC_HOLD_MS)))
        .build()
        .map_err(StorageError::backend)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Links `digest` into `repo`, registering the repository and stamping the digest's record.
pub(super) async fn link(
    store: &DynamoMetaStore,
    repo: &RepoName,
    digest: &Digest,
    link: BlobLink,
) -> Result<()> {
    for _ in 0..LINK_ATTEMPTS {
        let epoch = current_epoch(store).await?;
        let items = vec![
            super::manifest::put_op(&store.table, key_map(Key::Repo(repo)))?,
            super::manifest::put_op(
                &store.table,
                item(Key::Blob(repo, digest), [("size", n(link.size))]),
            )?,
            touch_op(&store.table, digest, now_ms(), epoch)?,
            epoch_check_op(&store.table, epoch)?,
        ];
        let sent = store
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let e = match sent {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let epoch_moved = match e.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(ex)) => ex
                .cancellation_reasons()
                .get(3)
                .is_some_and(|r| r.code() == Some("ConditionalCheckFailed")),
            _ => false,
        };
        if epoch_moved {
            continue;
        }
        // Cancelled otherwise: a live hold, or a concurrent transaction on the same items won;
        // either way the caller may retry.
        if e.code() == Some("TransactionCanceledException") {
            return Err(StorageError::Conflict);
        }
        return Err(storage_error("TransactWriteItems (link)", e));
    }
    Err(StorageError::Conflict)
}

fn activity(i: &Item) -> Result<BlobActivity> {
    Ok(BlobActivity {
        linked_ms: opt_n(i, LINKED_MS)?.unwrap_or(0),
        linked_epoch: opt_n(i, LINKED_EPOCH)?.unwrap_or(0),
        gc_hold_ms: opt_n(i, GC_HOLD)?,
    })
}

pub(super) async fn read_activity(
    store: &DynamoMetaStore,
    digest: &Digest,
) -> Result<Option<BlobActivity>> {
    store
        .get(Key::BlobActivity(digest))
        .await?
        .map(|i| activity(&i))
        .transpose()
}

pub(super) async fn hold(
    store: &DynamoMetaStore,
    digest: &Digest,
    cutoff_ms: u64,
    run_epoch: u64,
    now: u64,
) -> Result<bool> {
    let sent = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key_map(Key::BlobActivity(digest))))
        .update_expression("SET #h = :now, #l = if_not_exists(#l, :zero), #e = if_not_exists(#e, :zero)")
        .condition_expression(
            "(attribute_not_exists(#l) OR (#l < :cutoff AND (attribute_not_exists(#e) OR #e < :epoch))) \
             AND (attribute_not_exists(#h) OR #h < :stale)",
        )
        .expression_attribute_names("#h", GC_HOLD)
        .expression_attribute_names("#l", LINKED_MS)
        .expression_attribute_names("#e", LINKED_EPOCH)
        .expression_attribute_values(":epoch", n(run_epoch))
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":cutoff", n(cutoff_ms))
        .expression_attribute_values(":stale", n(now.saturating_sub(GC_HOLD_MS)))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(false),
        Err(e) => Err(storage_error("UpdateItem (gc hold)", e)),
    }
}

pub(super) async fn forget(store: &DynamoMetaStore, digest: &Digest, hold_ms: u64) -> Result<bool> {
    let sent = store
        .client
        .delete_item()
        .table_name(&store.table)
        .set_key(Some(key_map(Key::BlobActivity(digest))))
        .condition_expression("#h = :h")
        .expression_attribute_names("#h", GC_HOLD)
        .expression_attribute_values(":h", n(hold_ms))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(false),
        Err(e) => Err(storage_error("DeleteItem (gc record)", e)),
    }
}

pub(super) async fn list_activity(
    store: &DynamoMetaStore,
    page: &Page,
) -> Result<Vec<(Digest, BlobActivity)>> {
    let range = match &page.last {
        Some(last) => SortRange::After(last.clone()),
        None => SortRange::All,
    };
    store
        .query(key::BLOBS_PK, range, page.n)
        .await?
        .iter()
        .map(|i| {
            Ok((
                parse(Digest::parse(get_s(i, super::item::SK)?))?,
                activity(i)?,
            ))
        })
        .collect()
}

pub(super) async fn list_links(
    store: &DynamoMetaStore,
    repo: &RepoName,
    page: &Page,
) -> Result<Vec<Digest>> {
    let range = prefix_range(key::BLOB_PREFIX, page.last.as_deref());
    store
        .query(&key::repo_pk(repo), range, page.n)
        .await?
        .iter()
        .map(|i| parse(Digest::parse(sk_suffix(i, key::BLOB_PREFIX)?)))
        .collect()
}

pub(super) async fn list_manifests(
    store: &DynamoMetaStore,
    repo: &RepoName,
    page: &Page,
) -> Result<Vec<ManifestRecord>> {
    let range = prefix_range(key::MANIFEST_PREFIX, page.last.as_deref());
    let items = store.query(&key::repo_pk(repo), range, page.n).await?;
    let mut out = Vec::with_capacity(items.len());
    for i in &items {
        let digest = parse(Digest::parse(sk_suffix(i, key::MANIFEST_PREFIX)?))?;
        out.push(store.decode_manifest(&digest, i).await?);
    }
    Ok(out)
}

/// Every upload session, expired ones included. Sessions live in partitions of their own, so
/// this is a `Scan` filtered on their sort key: garbage collection runs it once per run.
pub(super) async fn list_uploads(
    store: &DynamoMetaStore,
    page: &Page,
) -> Result<Vec<UploadListing>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let resp = store
            .client
            .scan()
            .table_name(&store.table)
            .consistent_read(true)
            .filter_expression("#sk = :u")
            .expression_attribute_names("#sk", super::item::SK)
            .expression_attribute_values(":u", s(key::UPLOAD_SK))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| storage_error("Scan (uploads)", e))?;
        for i in resp.items() {
            let session: UploadSession = parse(serde_json::from_str(get_s(i, "session")?))?;
            if page.last.as_ref().is_some_and(|last| session.id <= *last) {
                continue;
            }
            let expires_ms = get_n(i, super::item::EXPIRES)?.saturating_mul(1000);
            out.push(UploadListing {
                touched_ms: expires_ms
                    .saturating_sub(u64::try_from(UPLOAD_TTL.as_millis()).unwrap_or(u64::MAX)),
                session,
            });
        }
        match resp.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    out.sort_by(|a, b| a.session.id.cmp(&b.session.id));
    out.truncate(page.n);
    Ok(out)
}

pub(super) async fn delete_upload_if(
    store: &DynamoMetaStore,
    id: &str,
    version: u64,
) -> Result<bool> {
    let sent = store
        .client
        .delete_item()
        .table_name(&store.table)
        .set_key(Some(key_map(Key::Upload(id))))
        .condition_expression("#v = :v")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":v", n(version))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(false),
        Err(e) => Err(storage_error("DeleteItem (upload)", e)),
    }
}
