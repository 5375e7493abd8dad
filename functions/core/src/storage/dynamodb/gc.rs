//! What garbage collection needs from the table: per-digest records (`BLOBS`/`<digest>`) with
//! their holds, written conditionally so a link and a hold can never both win; the sharded
//! garbage-collection epoch; listings of links, manifests and upload sessions; and conditional
//! deletes.
//!
//! **The epoch is sharded, so no item is touched by every push.** It lives in
//! [`EPOCH_SHARDS`] items (`GC#<shard>`/`EPOCH`), and a digest's shard is chosen by its first
//! byte; a run counter (`GC`/`EPOCH`) is written by garbage collection only. A run takes the
//! next number `E` from the counter, then raises every shard to at least `E` (each a
//! conditional `UpdateItem` that never lowers a shard) before it reads anything. A link of
//! digest `d` reads the epoch of `d`'s shard, then is one `TransactWriteItems`: the link, the
//! record (stamped with the link's time and that epoch, a `Put` conditional on no live hold), a
//! `ConditionCheck` that the shard still holds that epoch, and the repository index entry when
//! it is not there yet. A hold is an `UpdateItem` conditional on no link since the cutoff nor in
//! the run's epoch or later, and no live hold.
//!
//! Why that is safe: DynamoDB serializes the transactions and writes that share an item, and
//! the link shares its shard with the run's raise of that shard. A link committed before the
//! raise committed before the run read anything, so the mark phase (strongly consistent reads)
//! sees it; a link committed after the raise found the shard at `E` or more (its check makes sure
//! the epoch it stamped is the shard's at commit), so the record says so and the run's hold is
//! refused. A hold committed first makes the link's record `Put` fail instead. Runs never lower a
//! shard, so concurrent runs each see the same two cases. Only the shard of `d` matters for `d`:
//! the argument needs no item shared by all pushes. (Links written by a version that checked
//! the counter itself stay safe too: the counter moves at the start of every run. The converse
//! does not hold: a run of such a version, which moves only the counter, does not protect links
//! of this one, so garbage collection is deployed with the rest, as the stack does.)
//!
//! Every write here retries contention ([`super::retry`]).

use aws_sdk_dynamodb::types::{ConditionCheck, Put, ReturnValue, TransactWriteItem};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::item::{Item, get_n, get_s, item, key_map, n, opt_n, s};
use super::query::{SortRange, prefix_range};
use super::retry::{self, TransactError};
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
/// Attribute of the epoch items (the run counter and the shards).
const EPOCH: &str = "epoch";

/// Items the epoch is spread over. Two links contend on a shard only if both are in flight at
/// once and their digests fall in the same one of 64; a run raises all 64 once (64 small
/// writes per run, which runs daily), so more shards would buy little and cost every run.
pub const EPOCH_SHARDS: u8 = 64;

/// Shards raised at once when a run begins: all of them. Each is a partition of its own, so
/// together they cost one round trip, and the run (which pushes wait on only through their
/// shard) starts reading sooner.
const RAISE_CONCURRENCY: usize = EPOCH_SHARDS as usize;

/// Attempts at a write whose epoch changed under it (a run began meanwhile): runs are rare,
/// so a second attempt practically always finds the shard settled.
pub(super) const EPOCH_ATTEMPTS: usize = 5;

/// The epoch shard of `digest`: its first byte (digests are uniformly distributed hex).
pub fn epoch_shard(digest: &Digest) -> u8 {
    let first = digest.hex().get(..2).unwrap_or("00");
    u8::from_str_radix(first, 16).unwrap_or(0) % EPOCH_SHARDS
}

/// The epoch of `digest`'s shard (0 before any run reached it).
pub(super) async fn current_epoch(store: &DynamoMetaStore, digest: &Digest) -> Result<u64> {
    match store.get(Key::GcEpochShard(epoch_shard(digest))).await? {
        Some(i) => get_n(&i, EPOCH),
        None => Ok(0),
    }
}

/// Takes the next run number from the counter, then raises every shard to it; returns it.
pub(super) async fn begin(store: &DynamoMetaStore) -> Result<u64> {
    let out = retry::write(|| {
        store
            .client
            .update_item()
            .table_name(&store.table)
            .set_key(Some(key_map(Key::GcEpoch)))
            .update_expression("ADD #e :one")
            .expression_attribute_names("#e", EPOCH)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
    })
    .await
    .map_err(|e| storage_error("UpdateItem (gc run counter)", e))?;
    let run = get_n(&out.attributes.unwrap_or_default(), EPOCH)?;
    stream::iter(0..EPOCH_SHARDS)
        .map(|shard| raise(store, shard, run))
        .buffer_unordered(RAISE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(run)
}

/// Raises `shard` to `run`, leaving it alone if a concurrent run raised it further.
async fn raise(store: &DynamoMetaStore, shard: u8, run: u64) -> Result<()> {
    let sent = retry::write(|| {
        store
            .client
            .update_item()
            .table_name(&store.table)
            .set_key(Some(key_map(Key::GcEpochShard(shard))))
            .update_expression("SET #e = :run")
            .condition_expression("attribute_not_exists(#e) OR #e < :run")
            .expression_attribute_names("#e", EPOCH)
            .expression_attribute_values(":run", n(run))
            .send()
    })
    .await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(()),
        Err(e) => Err(storage_error("UpdateItem (gc epoch shard)", e)),
    }
}

/// A `ConditionCheck` that `digest`'s shard still holds `epoch`.
pub(super) fn epoch_check_op(
    table: &str,
    digest: &Digest,
    epoch: u64,
) -> Result<TransactWriteItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key_map(Key::GcEpochShard(epoch_shard(digest)))))
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

/// Positions in a link's transaction.
const LINK_TOUCH: usize = 1;
const LINK_EPOCH: usize = 2;

/// Links `digest` into `repo`, registering the repository and stamping the digest's record.
pub(super) async fn link(
    store: &DynamoMetaStore,
    repo: &RepoName,
    digest: &Digest,
    link: BlobLink,
) -> Result<()> {
    for _ in 0..EPOCH_ATTEMPTS {
        let epoch = current_epoch(store, digest).await?;
        let mut items = vec![
            super::manifest::put_op(
                &store.table,
                item(Key::Blob(repo, digest), [("size", n(link.size))]),
            )?,
            touch_op(&store.table, digest, now_ms(), epoch)?,
            epoch_check_op(&store.table, digest, epoch)?,
        ];
        let index = store.repo_index_op(repo).await?;
        let indexing = index.is_some();
        items.extend(index);
        match retry::transact(store, "TransactWriteItems (link)", items).await {
            Ok(()) => {
                if indexing {
                    store.remember_indexed(repo);
                }
                return Ok(());
            }
            // Only the epoch moved (a run began): read it again.
            Err(TransactError::Condition(failed)) if failed == [LINK_EPOCH] => continue,
            // A live hold: garbage collection is deleting the bytes; the client may retry.
            Err(TransactError::Condition(failed)) if failed.contains(&LINK_TOUCH) => {
                return Err(StorageError::Conflict);
            }
            Err(TransactError::Condition(failed)) => {
                return Err(StorageError::backend(format!(
                    "link transaction: unexpected failed conditions {failed:?}"
                )));
            }
            Err(TransactError::Storage(e)) => return Err(e),
        }
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
    /// Stamps the hold, giving a never-linked digest a record.
    const SET: &str = "SET #h = :now, #l = if_not_exists(#l, :zero), #e = if_not_exists(#e, :zero)";
    /// No link since the cutoff nor in the run's epoch or later, and no live hold.
    const UNLINKED_AND_FREE: &str = "(attribute_not_exists(#l) OR (#l < :cutoff AND \
         (attribute_not_exists(#e) OR #e < :epoch))) AND (attribute_not_exists(#h) OR #h < :stale)";
    let sent = retry::write(|| {
        store
            .client
            .update_item()
            .table_name(&store.table)
            .set_key(Some(key_map(Key::BlobActivity(digest))))
            .update_expression(SET)
            .condition_expression(UNLINKED_AND_FREE)
            .expression_attribute_names("#h", GC_HOLD)
            .expression_attribute_names("#l", LINKED_MS)
            .expression_attribute_names("#e", LINKED_EPOCH)
            .expression_attribute_values(":epoch", n(run_epoch))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":cutoff", n(cutoff_ms))
            .expression_attribute_values(":stale", n(now.saturating_sub(GC_HOLD_MS)))
            .send()
    })
    .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(false),
        Err(e) => Err(storage_error("UpdateItem (gc hold)", e)),
    }
}

pub(super) async fn forget(store: &DynamoMetaStore, digest: &Digest, hold_ms: u64) -> Result<bool> {
    let sent = retry::write(|| {
        store
            .client
            .delete_item()
            .table_name(&store.table)
            .set_key(Some(key_map(Key::BlobActivity(digest))))
            .condition_expression("#h = :h")
            .expression_attribute_names("#h", GC_HOLD)
            .expression_attribute_values(":h", n(hold_ms))
            .send()
    })
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
    let sent = retry::write(|| {
        store
            .client
            .delete_item()
            .table_name(&store.table)
            .set_key(Some(key_map(Key::Upload(id))))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(version))
            .send()
    })
    .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(false),
        Err(e) => Err(storage_error("DeleteItem (upload)", e)),
    }
}
