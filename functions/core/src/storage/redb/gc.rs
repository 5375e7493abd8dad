//! What garbage collection needs from the embedded store: listings across partitions, the
//! per-digest records with their holds, and conditional deletes. Each function runs inside one
//! read or write transaction handed in by [`super::RedbMetaStore`], so every check-and-write
//! below is atomic (redb has a single writer).

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::{Table, decode_manifest, from_json, get_raw, json, put_raw, remove_raw, scan};
use crate::oci::{Digest, RepoName};
use crate::storage::key::{self, Key};
use crate::storage::{
    BlobActivity, ManifestRecord, Page, Result, StorageError, UploadListing, UploadSession,
    hold_is_live, now_ms,
};

/// Read-side table type.
pub(super) trait Readable:
    redb::ReadableTable<(&'static str, &'static str), &'static [u8]>
{
}
impl<T: redb::ReadableTable<(&'static str, &'static str), &'static [u8]>> Readable for T {}

/// The stored form of a [`BlobActivity`].
#[derive(Serialize, Deserialize)]
struct ActivityValue {
    linked_ms: u64,
    #[serde(default)]
    linked_epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gc_hold_ms: Option<u64>,
}

fn activity(raw: &[u8]) -> Result<BlobActivity> {
    let v: ActivityValue = from_json(raw)?;
    Ok(BlobActivity {
        linked_ms: v.linked_ms,
        linked_epoch: v.linked_epoch,
        gc_hold_ms: v.gc_hold_ms,
    })
}

/// The current garbage-collection epoch (0 before any run).
fn epoch(t: &impl Readable) -> Result<u64> {
    get_raw(t, Key::GcEpoch)?.map_or(Ok(0), |raw| from_json(&raw))
}

/// Bumps the epoch; returns the new one.
pub(super) fn begin(t: &mut Table<'_>) -> Result<u64> {
    let next = epoch(t)? + 1;
    put_raw(t, Key::GcEpoch, &json(&next)?)?;
    Ok(next)
}

/// Reads the record of `digest`.
pub(super) fn read_activity(t: &impl Readable, digest: &Digest) -> Result<Option<BlobActivity>> {
    get_raw(t, Key::BlobActivity(digest))?
        .map(|raw| activity(&raw))
        .transpose()
}

/// Records a link of `digest` now, in the current epoch (read in the same write transaction,
/// which redb serializes with the bump), refusing (`Conflict`) while garbage collection holds it.
pub(super) fn touch(t: &mut Table<'_>, digest: &Digest) -> Result<()> {
    let now = now_ms();
    if let Some(a) = read_activity(t, digest)?
        && hold_is_live(a.gc_hold_ms, now)
    {
        return Err(StorageError::Conflict);
    }
    let value = ActivityValue {
        linked_ms: now,
        linked_epoch: epoch(t)?,
        gc_hold_ms: None,
    };
    put_raw(t, Key::BlobActivity(digest), &json(&value)?)
}

/// Takes the hold (see [`crate::storage::MetaStore::hold_blob`]).
pub(super) fn hold(
    t: &mut Table<'_>,
    digest: &Digest,
    cutoff_ms: u64,
    run_epoch: u64,
    now: u64,
) -> Result<bool> {
    let (linked_ms, linked_epoch) = match read_activity(t, digest)? {
        Some(a)
            if a.linked_ms >= cutoff_ms
                || a.linked_epoch >= run_epoch
                || hold_is_live(a.gc_hold_ms, now) =>
        {
            return Ok(false);
        }
        Some(a) => (a.linked_ms, a.linked_epoch),
        None => (0, 0),
    };
    let value = ActivityValue {
        linked_ms,
        linked_epoch,
        gc_hold_ms: Some(now),
    };
    put_raw(t, Key::BlobActivity(digest), &json(&value)?)?;
    Ok(true)
}

/// Deletes the record if it is still the hold taken at `hold_ms`.
pub(super) fn forget(t: &mut Table<'_>, digest: &Digest, hold_ms: u64) -> Result<bool> {
    match read_activity(t, digest)? {
        Some(a) if a.gc_hold_ms == Some(hold_ms) => remove_raw(t, Key::BlobActivity(digest)),
        _ => Ok(false),
    }
}

/// Records in digest order.
pub(super) fn list_activity(t: &impl Readable, page: &Page) -> Result<Vec<(Digest, BlobActivity)>> {
    scan(t, key::BLOBS_PK, "", page.last.as_deref(), page.n)?
        .into_iter()
        .map(|(d, raw)| {
            Ok((
                Digest::parse(&d).map_err(StorageError::backend)?,
                activity(&raw)?,
            ))
        })
        .collect()
}

/// Digests linked in `repo`.
pub(super) fn list_links(t: &impl Readable, repo: &RepoName, page: &Page) -> Result<Vec<Digest>> {
    scan(
        t,
        &key::repo_pk(repo),
        key::BLOB_PREFIX,
        page.last.as_deref(),
        page.n,
    )?
    .into_iter()
    .map(|(d, _)| Digest::parse(&d).map_err(StorageError::backend))
    .collect()
}

/// Manifests of `repo`.
pub(super) fn list_manifests(
    t: &impl Readable,
    repo: &RepoName,
    page: &Page,
) -> Result<Vec<ManifestRecord>> {
    scan(
        t,
        &key::repo_pk(repo),
        key::MANIFEST_PREFIX,
        page.last.as_deref(),
        page.n,
    )?
    .into_iter()
    .map(|(d, raw)| {
        let digest = Digest::parse(&d).map_err(StorageError::backend)?;
        decode_manifest(&digest, &raw).map(|(m, _)| m)
    })
    .collect()
}

/// An upload session as stored: the session's own fields plus `touched_ms`, the time of the
/// write (older items lack it; their creation time stands in).
pub(super) fn encode_session(session: &UploadSession) -> Result<Vec<u8>> {
    let mut value = serde_json::to_value(session).map_err(StorageError::backend)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("touched_ms".into(), now_ms().into());
    }
    json(&value)
}

fn decode_listing(raw: &[u8]) -> Result<UploadListing> {
    let value: serde_json::Value = from_json(raw)?;
    let touched = value.get("touched_ms").and_then(serde_json::Value::as_u64);
    let session: UploadSession = serde_json::from_value(value).map_err(StorageError::backend)?;
    Ok(UploadListing {
        touched_ms: touched.unwrap_or(session.created.saturating_mul(1000)),
        session,
    })
}

/// Upload sessions in id order: every partition `UPLOAD#<id>`.
pub(super) fn list_uploads(t: &impl Readable, page: &Page) -> Result<Vec<UploadListing>> {
    let first = match &page.last {
        Some(last) => format!("{}{last}", key::UPLOAD_PK_PREFIX),
        None => key::UPLOAD_PK_PREFIX.to_owned(),
    };
    let lower = match &page.last {
        // Past every sort key of the last session's partition.
        Some(_) => Bound::Excluded((first.as_str(), "\u{10FFFF}")),
        None => Bound::Included((first.as_str(), "")),
    };
    let end_pk = "UPLOAD$";
    let mut out = Vec::new();
    for item in t
        .range((lower, Bound::Excluded((end_pk, ""))))
        .map_err(super::be)?
    {
        if out.len() >= page.n {
            break;
        }
        let (k, v) = item.map_err(super::be)?;
        if k.value().1 == key::UPLOAD_SK {
            out.push(decode_listing(v.value())?);
        }
    }
    Ok(out)
}

/// Deletes session `id` if it still has `version`.
pub(super) fn delete_upload_if(t: &mut Table<'_>, id: &str, version: u64) -> Result<bool> {
    let Some(raw) = get_raw(t, Key::Upload(id))? else {
        return Ok(false);
    };
    let stored: UploadSession = from_json(&raw)?;
    if stored.version != version {
        return Ok(false);
    }
    remove_raw(t, Key::Upload(id))
}
