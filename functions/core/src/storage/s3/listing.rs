//! Listings for garbage collection: stored blobs with their times, everything staged under
//! `uploads/` (tail objects, completed upload objects, open multipart uploads), and removal of
//! one upload's staging without its session state.
//!
//! Some S3-compatible servers do not implement `ListMultipartUploads` (s3s-fs among them): there
//! only objects are listed, and open multipart uploads are left to the bucket's lifecycle rule
//! (`admin::STAGING_EXPIRY_DAYS`).

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::DateTime;

use super::S3BlobStore;
use crate::oci::Digest;
use crate::storage::aws::storage_error;
use crate::storage::key::ObjectKey;
use crate::storage::{BlobInfo, Result, StagedUpload};

/// Prefix of every complete blob.
const BLOBS_PREFIX: &str = "blobs/";

/// Prefix of every staged upload.
const UPLOADS_PREFIX: &str = "uploads/";

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
    let rest = key.strip_prefix(UPLOADS_PREFIX)?;
    let (id, _) = rest.split_once('/')?;
    let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(id)
}

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
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        out.truncate(n);
        Ok(out)
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
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(UPLOADS_PREFIX)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| storage_error("ListObjectsV2", e))?;
            for object in page.contents() {
                if let Some(id) = object.key().and_then(upload_id_of) {
                    let size = object.size().and_then(|s| u64::try_from(s).ok());
                    note(id, size.unwrap_or(0), ms(object.last_modified()));
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        for (key, _, initiated) in self.multipart_uploads(UPLOADS_PREFIX).await? {
            if let Some(id) = upload_id_of(&key) {
                note(id, 0, initiated);
            }
        }
        Ok(by_id.into_values().collect())
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
        let prefix = ObjectKey::UploadPrefix(id).to_string();
        for (key, upload_id, _) in self.multipart_uploads(&prefix).await? {
            self.abort_multipart(&key, &upload_id).await?;
        }
        self.remove_prefix(&prefix).await
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
    }
}
