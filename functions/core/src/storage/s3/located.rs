//! Located blobs: finishing a chunked upload without copying its bytes.
//!
//! S3 has no rename, and a chunked upload learns its digest only at the final PUT, so its
//! multipart upload cannot complete at `blobs/<alg>/<hex>`. It completes at a key that does not
//! depend on the digest, `objects/<id>/data` ([`ObjectKey::Located`]), and stays there; the
//! blob's key then holds a *pointer*: an empty object whose metadata says "located"
//! ([`LOCATED`] as `x-amz-meta-wharf-upload`), in which upload (`wharf-location`) and how big
//! the blob is (`wharf-size`). After the store's `CompleteMultipartUpload` (which no multipart
//! object avoids; the store assembles the parts itself) finishing is two small requests
//! whatever the blob's size: a marker `objects/<id>/of-<alg>-<hex>`, then the pointer with
//! `If-None-Match: *` (first writer wins; a loser drops its own bytes).
//!
//! The location belongs to the blob store, not the metadata store: every reader of a blob (the
//! API, spilled manifests, the catalog, garbage collection) asks [`crate::storage::BlobStore`]
//! by digest and none of them learns where the bytes are; `stat`, `get`, `redirect_url` and
//! `delete` resolve the pointer (one `HeadObject`).
//!
//! Trust: only the registry writes a pointer. A presigned PUT signs its own
//! `x-amz-meta-wharf-upload` (its session id, never "located") and `If-None-Match: *`, so it can
//! neither forge nor replace one; `objects/` is never presigned.
//!
//! Order, so no crash leaves a pointer without its bytes: the marker before the pointer; a
//! blob's delete removes the pointer first, then `objects/<id>/`. What a crash can leave is an
//! orphan under `objects/<id>/` that no pointer names; garbage collection finds it among the
//! staged uploads ([`crate::storage::BlobStore::list_staged`]) and removes it under the rules it
//! keeps for staging (no session, older than the grace period), after checking the pointer
//! once more ([`remove_if_orphan`]). Finishing writes the pointer before the API deletes the
//! session, so an upload whose finish is in flight still has its session and is never swept.

use std::collections::HashMap;

use super::S3BlobStore;
use super::checksum::UPLOAD_META;
use crate::oci::Digest;
use crate::storage::key::ObjectKey;
use crate::storage::{Result, StorageError};

/// [`UPLOAD_META`] of a pointer: the blob's bytes are in an upload's located object. Like
/// `hashed`, no upload id looks like it and no presigned URL can write it.
pub(super) const LOCATED: &str = "located";

/// Pointer metadata: the upload whose located object holds the bytes.
const LOCATION_META: &str = "wharf-location";

/// Pointer metadata: the blob's size in bytes.
const SIZE_META: &str = "wharf-size";

/// What a pointer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pointer {
    /// The upload whose located object holds the bytes.
    pub id: String,
    /// The blob's size.
    pub size: u64,
}

/// True for what the registry uses as upload ids (lowercase hex, bounded), so a pointer can
/// only ever name a key under `objects/<hex>/`.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The pointer an object's metadata describes, if it is one (marked [`LOCATED`], naming a valid
/// id and a size). A malformed pointer is no pointer: it is not trusted and the next push that
/// hashed the bytes replaces it.
pub(super) fn pointer_of(
    upload: Option<&str>,
    metadata: &HashMap<String, String>,
) -> Option<Pointer> {
    if upload != Some(LOCATED) {
        return None;
    }
    let id = metadata.get(LOCATION_META).filter(|id| valid_id(id))?;
    let size = metadata.get(SIZE_META)?.parse().ok()?;
    Some(Pointer {
        id: id.clone(),
        size,
    })
}

/// Where the bytes of blob `digest` are: its located object when a pointer is at its key, else
/// the key itself (which may hold nothing).
pub(super) async fn resolve(store: &S3BlobStore, digest: &Digest) -> Result<String> {
    let blob = ObjectKey::Blob(digest).to_string();
    Ok(match store.head_checked(&blob).await? {
        Some(head) => match head.located {
            Some(id) => ObjectKey::Located(&id).to_string(),
            None => blob,
        },
        None => blob,
    })
}

/// Publishes upload `id`'s completed located object (`size` bytes, verified by the caller as
/// `digest`) as the blob: the marker, then the pointer. When a trusted blob is already at the
/// digest's key this upload's located object is dropped instead; an untrusted object there
/// (an unproven direct upload) is replaced.
pub(super) async fn publish(
    store: &S3BlobStore,
    id: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let blob = ObjectKey::Blob(digest).to_string();
    store
        .write(
            &ObjectKey::LocatedFor(id, digest).to_string(),
            bytes::Bytes::new(),
        )
        .await?;
    let metadata = [
        (UPLOAD_META, LOCATED.to_owned()),
        (LOCATION_META, id.to_owned()),
        (SIZE_META, size.to_string()),
    ];
    if store.put_empty(&blob, &metadata, true).await? {
        return Ok(());
    }
    match store.head_checked(&blob).await? {
        Some(head) if head.located.as_deref() == Some(id) => Ok(()),
        Some(head) if head.size == size && head.trusted_as(digest) => {
            // Another upload published this digest first: keep one copy of the bytes.
            store
                .remove_prefix(&ObjectKey::LocatedPrefix(id).to_string())
                .await
        }
        _ => {
            // Not a blob the registry vouches for (or gone since): this upload's verified
            // bytes take the key, as a copy would have.
            store.put_empty(&blob, &metadata, false).await?;
            Ok(())
        }
    }
}

/// Deletes blob `digest`: the pointer first, then the located object it named (or just the
/// object at the key, for a blob stored there).
pub(super) async fn delete(store: &S3BlobStore, digest: &Digest) -> Result<()> {
    let blob = ObjectKey::Blob(digest).to_string();
    let located = store.head_checked(&blob).await?.and_then(|h| h.located);
    store.remove(&blob).await?;
    if let Some(id) = located {
        store
            .remove_prefix(&ObjectKey::LocatedPrefix(&id).to_string())
            .await?;
    }
    Ok(())
}

/// The digest the marker under `objects/<id>/` names, among `keys` (that prefix's keys).
fn marked_digest(id: &str, keys: &[String]) -> Option<Digest> {
    let prefix = format!("{}of-", ObjectKey::LocatedPrefix(id));
    keys.iter()
        .find_map(|k| crate::storage::key::parse_marker(k.strip_prefix(&prefix)?))
}

/// True when a pointer names upload `id`'s located object, given the keys under
/// `objects/<id>/`: the marker names the digest, and the pointer at its key names `id`. No
/// marker means no pointer was ever written for it (the marker goes first).
pub(super) async fn is_named(store: &S3BlobStore, id: &str, keys: &[String]) -> Result<bool> {
    let Some(digest) = marked_digest(id, keys) else {
        return Ok(false);
    };
    let head = store
        .head_checked(&ObjectKey::Blob(&digest).to_string())
        .await?;
    Ok(head.and_then(|h| h.located).as_deref() == Some(id))
}

/// Removes everything under `objects/<id>/` unless a pointer names it. For garbage collection
/// and aborts, which must never take a published blob's bytes.
pub(super) async fn remove_if_orphan(store: &S3BlobStore, id: &str) -> Result<()> {
    if !valid_id(id) {
        return Err(StorageError::backend("invalid upload id"));
    }
    let prefix = ObjectKey::LocatedPrefix(id).to_string();
    let keys = store.keys_under(&prefix).await?;
    if keys.is_empty() || is_named(store, id, &keys).await? {
        return Ok(());
    }
    store.remove_prefix(&prefix).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    #[test]
    fn only_a_well_formed_located_mark_is_a_pointer() {
        let meta = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let good = meta(&[(LOCATION_META, "ab12"), (SIZE_META, "42")]);
        assert_eq!(
            pointer_of(Some(LOCATED), &good),
            Some(Pointer {
                id: "ab12".to_owned(),
                size: 42
            })
        );
        assert_eq!(pointer_of(Some("hashed"), &good), None);
        assert_eq!(pointer_of(Some("ab12"), &good), None, "a session's mark");
        assert_eq!(pointer_of(None, &good), None);
        let escapes = meta(&[(LOCATION_META, "../blobs"), (SIZE_META, "42")]);
        assert_eq!(pointer_of(Some(LOCATED), &escapes), None);
        let no_size = meta(&[(LOCATION_META, "ab12"), (SIZE_META, "x")]);
        assert_eq!(pointer_of(Some(LOCATED), &no_size), None);
    }

    #[test]
    fn the_marker_names_the_digest_of_its_own_upload_only() {
        let d = Algorithm::Sha256.digest(b"x");
        let keys = vec![
            ObjectKey::Located("ab").to_string(),
            ObjectKey::LocatedFor("ab", &d).to_string(),
        ];
        assert_eq!(marked_digest("ab", &keys), Some(d.clone()));
        assert_eq!(marked_digest("cd", &keys), None);
        assert_eq!(marked_digest("ab", &keys[..1]), None);
        let d512 = Algorithm::Sha512.digest(b"x");
        let keys = vec![ObjectKey::LocatedFor("ab", &d512).to_string()];
        assert_eq!(marked_digest("ab", &keys), Some(d512));
    }
}
