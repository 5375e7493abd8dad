//! Listings for garbage collection: stored blobs with their times, everything staged under
//! `uploads/` (tail objects, completed upload objects, open multipart uploads) and every
//! located object under `objects/` that no pointer names (orphans, or uploads in progress),
//! and removal of one upload's staging without its session state.
//!
//! Some S3-compatible servers do not implement `ListMultipartUploads` (s3s-fs among them): there
//! only objects are listed, and open multipart uploads are left to the bucket's lifecycle rule
//! (`admin::STAGING_EXPIRY_DAYS`).

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::DateTime;
use futures_util::StreamExt;

use super::S3BlobStore;
use crate::oci::Digest;
use crate::storage::aws::storage_error;
use crate::storage::key::ObjectKey;
use crate::storage::{BlobInfo, Result, StagedUpload};

/// Prefix of every complete blob.
const BLOBS_PREFIX: &str = "blobs/";

/// Prefix of every staged upload.
const UPLOADS_PREFIX: &str = "uploads/";

/// Prefix of every located object ([`super::located`]).
const OBJECTS_PREFIX: &str = "objects/";

/// How many pointers garbage collection reads at once when it sorts located objects from
/// orphans.
const POINTER_READS: usize = 16;

fn ms(t: Option<&DateTime>) -> u64 {
    t.and_then(|t| u64::try_from(t.to_millis().ok()?).ok())
        .unwrap_or(0)
}

/// `blobs/<alg>/<hex>` → the digest.
fn digest_of(key: &str) -> Option<Digest> {
    let rest = key.strip_prefix(BLOBS_PREFIX)?;
    let (alg, hex) = rest.split_once('/')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// `uploads/<id>/…` → the id.
fn upload_id_of(key: &str) -> Option<&str> {
    id_under(UPLOADS_PREFIX, key)
}

/// `<prefix><id>/…` → the id.
fn id_under<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix(prefix)?;
    let (id, _) = rest.split_once('/')?;
    super::located::valid_id(id).then_some(id)
}

/// A listing shows a pointer as the empty object it is. Only an empty object can be a pointer,
/// and only the empty blob is empty, so any other blob costs no request to size.
fn may_be_pointer(info: &BlobInfo) -> bool {
    info.size == 0 && info.digest != info.digest.algorithm().digest(b"")
}

/// Every object under `prefix`: key, size, last modification.
type Listed = Vec<(String, u64, u64)>;

impl S3BlobStore {
    pub(super) async fn list_blob_objects(
        &self,
        after: Option<&Digest>,
        n: usize,
    ) -> Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        let mut start_after = after.map(|d| ObjectKey::Blob(d).to_string());
        let mut token = None;
        while out.len() < n {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(BLOBS_PREFIX)
                .set_start_after(start_after.take())
                .set_continuation_token(token.take())
                .max_keys(i32::try_from(n - out.len()).unwrap_or(1000).min(1000))
                .send()
                .await
                .map_err(|e| storage_error("ListObjectsV2", e))?;
            for object in page.contents() {
                if let Some(digest) = object.key().and_then(digest_of) {
                    out.push(BlobInfo {
                        digest,
                        size: object
                            .size()
                            .and_then(|s| u64::try_from(s).ok())
                            .unwrap_or(0),
                        modified_ms: ms(object.last_modified()),
                    });
                }
            }
            let pointers: Vec<(usize, Digest)> = out
                .iter()
                .enumerate()
                .filter(|(_, info)| may_be_pointer(info))
                .map(|(i, info)| (i, info.digest.clone()))
                .collect();
            let sizes: Vec<Result<(usize, Option<u64>)>> = futures_util::stream::iter(pointers)
                .map(|(i, digest)| async move { Ok((i, self.size_pointed_at(&digest).await?)) })
                .buffer_unordered(POINTER_READS)
                .collect()
                .await;
            for sized in sizes {
                if let (i, Some(size)) = sized? {
                    out[i].size = size;
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// The size of the blob a pointer at `digest`'s key points at, if a pointer is there.
    async fn size_pointed_at(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = ObjectKey::Blob(digest).to_string();
        Ok(self
            .head_checked(&key)
            .await?
            .filter(|h| h.located.is_some())
            .map(|h| h.size))
    }

    pub(super) async fn list_staged_uploads(&self) -> Result<Vec<StagedUpload>> {
        let mut by_id: BTreeMap<String, StagedUpload> = BTreeMap::new();
        let mut note = |id: &str, size: u64, modified_ms: u64| {
            let entry = by_id.entry(id.to_owned()).or_insert_with(|| StagedUpload {
                id: id.to_owned(),
                size: 0,
                modified_ms: 0,
            });
            entry.size += size;
            entry.modified_ms = entry.modified_ms.max(modified_ms);
        };
        for (key, size, modified) in self.list_all(UPLOADS_PREFIX).await? {
            if let Some(id) = upload_id_of(&key) {
                note(id, size, modified);
            }
        }
        for (id, size, modified) in self.unnamed_located().await? {
            note(&id, size, modified);
        }
        for prefix in [UPLOADS_PREFIX, OBJECTS_PREFIX] {
            for (key, _, initiated) in self.multipart_uploads(prefix).await? {
                if let Some(id) = id_under(prefix, &key) {
                    note(id, 0, initiated);
                }
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// Every object under `prefix`.
    async fn list_all(&self, prefix: &str) -> Result<Listed> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| storage_error("ListObjectsV2", e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    let size = object.size().and_then(|s| u64::try_from(s).ok());
                    out.push((
                        key.to_owned(),
                        size.unwrap_or(0),
                        ms(object.last_modified()),
                    ));
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Located objects no pointer names, by upload id, with their size and latest write: one
    /// `HeadObject` of the pointer per located object ([`super::located::is_named`]).
    async fn unnamed_located(&self) -> Result<Vec<(String, u64, u64)>> {
        let mut by_id: BTreeMap<String, (Vec<String>, u64, u64)> = BTreeMap::new();
        for (key, size, modified) in self.list_all(OBJECTS_PREFIX).await? {
            if let Some(id) = id_under(OBJECTS_PREFIX, &key) {
                let entry = by_id.entry(id.to_owned()).or_default();
                entry.1 += size;
                entry.2 = entry.2.max(modified);
                entry.0.push(key);
            }
        }
        let checked: Vec<Result<Option<(String, u64, u64)>>> =
            futures_util::stream::iter(by_id.into_iter().map(
                |(id, (keys, size, modified))| async move {
                    let named = super::located::is_named(self, &id, &keys).await?;
                    Ok((!named).then_some((id, size, modified)))
                },
            ))
            .buffer_unordered(POINTER_READS)
            .collect()
            .await;
        checked.into_iter().filter_map(Result::transpose).collect()
    }

    /// Open multipart uploads under `prefix`: key, upload id, initiation time. Empty when the
    /// server does not implement the listing.
    async fn multipart_uploads(&self, prefix: &str) -> Result<Vec<(String, String, u64)>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let sent = self
                .client
                .list_multipart_uploads()
                .bucket(&self.config.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await;
            let page = match sent {
                Ok(page) => page,
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    if matches!(status, Some(400 | 404 | 405 | 501)) {
                        tracing::debug!(?status, "ListMultipartUploads unsupported; skipped");
                        return Ok(out);
                    }
                    return Err(storage_error("ListMultipartUploads", e));
                }
            };
            for u in page.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    out.push((key.to_owned(), id.to_owned(), ms(u.initiated())));
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(out);
            }
        }
    }

    pub(super) async fn remove_staged_upload(&self, id: &str) -> Result<()> {
        let staged = ObjectKey::UploadPrefix(id).to_string();
        let located = ObjectKey::LocatedPrefix(id).to_string();
        for prefix in [&staged, &located] {
            for (key, upload_id, _) in self.multipart_uploads(prefix).await? {
                self.abort_multipart(&key, &upload_id).await?;
            }
        }
        self.remove_prefix(&staged).await?;
        super::located::remove_if_orphan(self, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_back_to_digests_and_upload_ids() {
        let d = crate::oci::Algorithm::Sha256.digest(b"x");
        assert_eq!(digest_of(&ObjectKey::Blob(&d).to_string()), Some(d));
        assert_eq!(digest_of("blobs/sha256/nothex"), None);
        assert_eq!(upload_id_of("uploads/ab12/object"), Some("ab12"));
        assert_eq!(upload_id_of("uploads/ab12"), None);
        assert_eq!(upload_id_of("uploads/../x"), None);
        assert_eq!(id_under(OBJECTS_PREFIX, "objects/ab12/data"), Some("ab12"));
        assert_eq!(id_under(OBJECTS_PREFIX, "objects/ab12"), None);
    }
}
