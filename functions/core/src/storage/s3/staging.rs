//! Staged uploads on S3: the [`Staging`] record kept (as opaque JSON) in the upload session,
//! and the append / finish / abort steps over it.
//!
//! Bytes are re-cut into parts of the upload's fixed part size ([`PartCutter`]) and uploaded to
//! one multipart upload into `objects/<id>/data`, created when the first part is full; bytes
//! short of a part wait in a tail object `uploads/<id>/tail-<offset>-<nonce>` between requests.
//! Finishing completes the multipart upload where it is and publishes it with a pointer at the
//! blob's key ([`super::located`]): no copy, whatever the size. Only an upload too small for a
//! part (its tail alone, under `part_size`) is copied to the blob's key.
//!
//! Retrying at the same committed offset is safe: part numbers come from the committed record
//! (a retry overwrites what a failed attempt uploaded, and only recorded ETags are completed, so
//! a part overwritten by a racing writer makes completion fail rather than store its bytes),
//! and every append writes its tail under a new key with a random nonce, so the committed tail
//! is never overwritten, not even by a racing writer in another process. A replaced tail is
//! deleted by the next append, once the record that replaced it is known to be committed;
//! anything else under `uploads/<id>/` goes at finish or abort.

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::S3BlobStore;
use super::located;
use super::objects::PartRecord;
use super::parts::{MIN_PART_SIZE, PartCutter, check_part_sizes};
use crate::oci::Digest;
use crate::storage::key::ObjectKey;
use crate::storage::{ByteStream, Result, StagingState, StorageError};

/// The bytes short of a part, staged by the append that ended at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Tail {
    end: u64,
    nonce: u64,
    len: u64,
}

impl Tail {
    fn key(&self, id: &str) -> String {
        ObjectKey::UploadTail(id, self.end, self.nonce).to_string()
    }
}

/// What an S3 upload has staged so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Staging {
    /// Fixed when the upload starts, so a configuration change cannot mix part sizes.
    part_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<PartRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<Tail>,
    /// A tail this record replaced, deleted by the next append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale_tail: Option<Tail>,
    /// The multipart upload goes to `objects/<id>/data` and is published in place. False only
    /// for sessions started before located blobs: theirs goes to `uploads/<id>/object` and is
    /// copied at finish, as it was then.
    #[serde(default)]
    located: bool,
}

impl Staging {
    fn load(state: StagingState) -> Result<Self> {
        let s: Staging = serde_json::from_value(state)
            .map_err(|e| StorageError::backend(format!("corrupt S3 staging state: {e}")))?;
        let tail_ok = s.tail.is_none_or(|t| t.len > 0 && t.len < s.part_size);
        if s.part_size < MIN_PART_SIZE || !tail_ok {
            return Err(StorageError::backend("inconsistent S3 staging state"));
        }
        Ok(s)
    }

    fn save(&self) -> Result<StagingState> {
        serde_json::to_value(self).map_err(StorageError::backend)
    }

    /// Bytes staged: parts plus tail.
    fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum::<u64>() + self.tail.map_or(0, |t| t.len)
    }

    fn part_sizes(&self) -> Vec<u64> {
        self.parts.iter().map(|p| p.size).collect()
    }

    /// The key the multipart upload completes into.
    fn object_key(&self, id: &str) -> String {
        if self.located {
            ObjectKey::Located(id).to_string()
        } else {
            ObjectKey::UploadObject(id).to_string()
        }
    }
}

pub(super) fn start(store: &S3BlobStore, _id: &str) -> Result<StagingState> {
    Staging {
        part_size: store.config.part_size,
        located: true,
        ..Staging::default()
    }
    .save()
}

fn part_size(s: &Staging) -> Result<usize> {
    usize::try_from(s.part_size).map_err(StorageError::backend)
}

pub(super) async fn append(
    store: &S3BlobStore,
    id: &str,
    state: StagingState,
    offset: u64,
    body: ByteStream,
) -> Result<(StagingState, u64)> {
    let mut s = Staging::load(state)?;
    if s.len() != offset {
        return Err(StorageError::backend(format!(
            "S3 staging holds {} bytes, the session says {offset}",
            s.len()
        )));
    }
    if let Some(stale) = s.stale_tail.take() {
        // Replaced by the committed record we were handed: nobody can need it any more.
        store.remove(&stale.key(id)).await?;
    }
    let tail = match s.tail {
        Some(t) => store
            .read_all(&t.key(id))
            .await?
            .ok_or_else(|| StorageError::backend("the staged tail object is missing"))?,
        None => Bytes::new(),
    };
    if u64::try_from(tail.len()).ok() != s.tail.map(|t| t.len).or(Some(0)) {
        return Err(StorageError::backend(
            "the staged tail object has the wrong size",
        ));
    }
    let created = s.upload_id.is_none();
    let result = cut_and_upload(store, id, &mut s, &tail, body).await;
    if result.is_err()
        && created
        && let Some(upload_id) = &s.upload_id
    {
        // Created by this failed attempt and recorded nowhere: don't leave it behind.
        let _ = store.abort_multipart(&s.object_key(id), upload_id).await;
    }
    let (rest, written) = result?;
    if written == 0 {
        return Ok((s.save()?, 0));
    }
    let end = offset + written;
    let old = s.tail.take();
    if !rest.is_empty() {
        let tail = Tail {
            end,
            nonce: rand::random(),
            len: rest.len() as u64,
        };
        store.write(&tail.key(id), rest).await?;
        s.tail = Some(tail);
    }
    s.stale_tail = old;
    Ok((s.save()?, written))
}

/// Streams `body` after `tail`, uploading every full part; returns the new remainder and the
/// number of body bytes.
async fn cut_and_upload(
    store: &S3BlobStore,
    id: &str,
    s: &mut Staging,
    tail: &[u8],
    mut body: ByteStream,
) -> Result<(Bytes, u64)> {
    let key = s.object_key(id);
    let mut cutter = PartCutter::new(part_size(s)?, tail);
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StorageError::Body)?;
        written += chunk.len() as u64;
        for part in cutter.push(&chunk) {
            let upload_id = match &s.upload_id {
                Some(u) => u.clone(),
                None => {
                    let u = store.create_multipart(&key, None).await?;
                    s.upload_id = Some(u.clone());
                    u
                }
            };
            let record = store
                .upload_part(&key, &upload_id, s.parts.len(), part)
                .await?;
            s.parts.push(record);
        }
    }
    Ok((cutter.into_tail(), written))
}

pub(super) async fn finish(
    store: &S3BlobStore,
    id: &str,
    state: StagingState,
    digest: &Digest,
) -> Result<()> {
    let s = Staging::load(state)?;
    let target = ObjectKey::Blob(digest).to_string();
    let size = s.len();
    // An object at the blob's key is taken as the blob only if the registry wrote it or the
    // store vouches for its SHA-256: a direct upload not (yet) proven is overwritten. That
    // includes a pointer an earlier attempt of this finish wrote: cleanup keeps what it names.
    if store
        .head_checked(&target)
        .await?
        .is_some_and(|h| h.size == size && h.trusted_as(digest))
    {
        return cleanup(store, id, &s, true).await;
    }
    match &s.upload_id {
        None => match s.tail {
            Some(t) => {
                store.copy_to_blob(&t.key(id), &target, t.len).await?;
            }
            None => store.write_blob(&target, Bytes::new()).await?,
        },
        Some(upload_id) => {
            let object = s.object_key(id);
            // An earlier attempt may have completed the upload and failed after.
            if store.head(&object).await? != Some(size) {
                complete(store, id, &s, upload_id).await?;
            }
            if s.located {
                located::publish(store, id, digest, size).await?;
            } else {
                store.copy_to_blob(&object, &target, size).await?;
            }
        }
    }
    cleanup(store, id, &s, false).await
}

/// Uploads the tail as the last part and completes the multipart upload.
async fn complete(store: &S3BlobStore, id: &str, s: &Staging, upload_id: &str) -> Result<()> {
    let object = s.object_key(id);
    let mut parts = s.parts.clone();
    if let Some(t) = s.tail {
        let bytes = store
            .read_all(&t.key(id))
            .await?
            .ok_or_else(|| StorageError::backend("the staged tail object is missing"))?;
        parts.push(
            store
                .upload_part(&object, upload_id, parts.len(), bytes)
                .await?,
        );
    }
    let sizes: Vec<u64> = parts.iter().map(|p| p.size).collect();
    check_part_sizes(&sizes, s.part_size).map_err(StorageError::backend)?;
    debug_assert_eq!(&sizes[..s.parts.len()], s.part_sizes().as_slice());
    store.complete_multipart(&object, upload_id, &parts).await
}

pub(super) async fn abort(store: &S3BlobStore, id: &str, state: StagingState) -> Result<()> {
    let s = Staging::load(state)?;
    cleanup(store, id, &s, true).await
}

/// Drops every staged object and, if `open`, the multipart upload, and its located object if
/// an earlier attempt completed it but no pointer names it. Failing to abort the multipart
/// upload is logged, not returned: it may have been completed by an earlier attempt (some
/// servers then refuse the abort), and one left open is dropped by the bucket's lifecycle rule
/// (`admin::STAGING_EXPIRY_DAYS`).
async fn cleanup(store: &S3BlobStore, id: &str, s: &Staging, open: bool) -> Result<()> {
    if open && let Some(upload_id) = &s.upload_id {
        if let Err(e) = store.abort_multipart(&s.object_key(id), upload_id).await {
            tracing::warn!(upload = id, error = %e, "could not abort a multipart upload");
        }
        if s.located {
            located::remove_if_orphan(store, id).await?;
        }
    }
    store
        .remove_prefix(&ObjectKey::UploadPrefix(id).to_string())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_state_round_trips_and_is_checked() {
        let s = Staging {
            part_size: MIN_PART_SIZE,
            upload_id: Some("u".into()),
            parts: vec![PartRecord {
                etag: "\"e\"".into(),
                size: MIN_PART_SIZE,
            }],
            tail: Some(Tail {
                end: MIN_PART_SIZE + 3,
                nonce: 9,
                len: 3,
            }),
            stale_tail: None,
            located: true,
        };
        let v = s.save().expect("save");
        assert_eq!(Staging::load(v).expect("load"), s);
        assert_eq!(s.len(), MIN_PART_SIZE + 3);
        let bad = serde_json::json!({"part_size": MIN_PART_SIZE, "tail": {"end": 1, "nonce": 1, "len": MIN_PART_SIZE}});
        assert!(
            Staging::load(bad).is_err(),
            "a tail of a whole part is refused"
        );
        assert!(Staging::load(serde_json::json!({"part_size": 1})).is_err());
        // A session from before located blobs finishes the old way, at the old key.
        let legacy = Staging::load(serde_json::json!({"part_size": MIN_PART_SIZE})).expect("load");
        assert!(!legacy.located);
        assert_eq!(legacy.object_key("ab"), "uploads/ab/object");
        assert_eq!(s.object_key("ab"), "objects/ab/data");
        assert!(Staging::load(serde_json::Value::Null).is_err());
    }
}
