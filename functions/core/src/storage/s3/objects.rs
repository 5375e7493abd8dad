//! Object operations of the S3 store, each mapping its SDK errors to [`StorageError`].

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use bytes::Bytes;

use super::S3BlobStore;
use super::checksum::{HASHED, UPLOAD_META};
use crate::storage::aws::{ErrorClass, classify, storage_error};
use crate::storage::{BlobRead, ByteRange, ByteStream, Result, StorageError};

/// A completed part: its number is its position (1-based) in the list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct PartRecord {
    /// The ETag the store returned for it.
    pub etag: String,
    /// Its size.
    pub size: u64,
}

/// Size of each part of a multipart copy (`UploadPartCopy`): equal parts, as R2 requires, large
/// enough to keep a copy of a very large blob within the part limit.
const COPY_PART_SIZE: u64 = 1024 * 1024 * 1024;

/// `Content-Range: bytes <start>-<end>/<total>` → total.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

/// Part numbers are 1-based `i32`s in the SDK.
fn part_number(index: usize) -> Result<i32> {
    i32::try_from(index + 1).map_err(|_| StorageError::backend("too many parts"))
}

impl S3BlobStore {
    fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// Size of an object, or `None`.
    pub(super) async fn head(&self, key: &str) -> Result<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.content_length().unwrap_or(0).try_into().unwrap_or(0),
            )),
            Err(e) if classify(&e) == ErrorClass::NotFound => Ok(None),
            Err(e) => Err(storage_error("HeadObject", e)),
        }
    }

    /// Streams an object, or a range of it.
    pub(super) async fn read(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobRead>> {
        let mut req = self.client.get_object().bucket(self.bucket()).key(key);
        if let Some(r) = range {
            req = req.range(format!("bytes={}-{}", r.start, r.end));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if classify(&e) == ErrorClass::NotFound => return Ok(None),
            Err(e) => return Err(storage_error("GetObject", e)),
        };
        let len = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
        let size = match range {
            Some(_) => out
                .content_range()
                .and_then(total_of)
                .ok_or_else(|| StorageError::backend("ranged GetObject without Content-Range"))?,
            None => len,
        };
        let body: ByteStream = Box::pin(futures_util::stream::unfold(out.body, |mut b| async {
            b.next()
                .await
                .map(|chunk| (chunk.map_err(std::io::Error::other), b))
        }));
        Ok(Some(BlobRead { body, size }))
    }

    /// A whole (small) object in memory, or `None`.
    pub(super) async fn read_all(&self, key: &str) -> Result<Option<Bytes>> {
        let out = match self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if classify(&e) == ErrorClass::NotFound => return Ok(None),
            Err(e) => return Err(storage_error("GetObject", e)),
        };
        let data = out.body.collect().await.map_err(StorageError::backend)?;
        Ok(Some(data.into_bytes()))
    }

    /// Writes a (small) object.
    pub(super) async fn write(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.put_small(key, bytes, None).await
    }

    /// Writes a (small) blob the registry hashed itself, marked [`HASHED`].
    pub(super) async fn write_blob(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.put_small(key, bytes, Some(HASHED)).await
    }

    /// One `PutObject` of `bytes`, with the [`UPLOAD_META`] mark when given.
    async fn put_small(&self, key: &str, bytes: Bytes, mark: Option<&str>) -> Result<()> {
        let mut put = self
            .client
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_length(i64::try_from(bytes.len()).map_err(StorageError::backend)?);
        if let Some(mark) = mark {
            put = put.metadata(UPLOAD_META, mark);
        }
        put.body(SdkBody::from(bytes))
            .send()
            .await
            .map_err(|e| storage_error("PutObject", e))?;
        Ok(())
    }

    /// Writes an empty object carrying `metadata`; with `create_only`, only if nothing is at
    /// `key` (`If-None-Match: *`). False when that condition failed.
    pub(super) async fn put_empty(
        &self,
        key: &str,
        metadata: &[(&str, String)],
        create_only: bool,
    ) -> Result<bool> {
        let mut put = self
            .client
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_length(0);
        for (name, value) in metadata {
            put = put.metadata(*name, value);
        }
        if create_only {
            put = put.if_none_match("*");
        }
        match put.body(SdkBody::from(Bytes::new())).send().await {
            Ok(_) => Ok(true),
            Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(false),
            Err(e) => Err(storage_error("PutObject", e)),
        }
    }

    /// Keys under `prefix` (one listing page: at most 1,000, which is all a located blob's
    /// prefix ever holds).
    pub(super) async fn keys_under(&self, prefix: &str) -> Result<Vec<String>> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .send()
            .await
            .map_err(|e| storage_error("ListObjectsV2", e))?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect())
    }

    /// Deletes an object; a missing one is fine.
    pub(super) async fn remove(&self, key: &str) -> Result<()> {
        match self
            .client
            .delete_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if classify(&e) == ErrorClass::NotFound => Ok(()),
            Err(e) => Err(storage_error("DeleteObject", e)),
        }
    }

    /// Deletes every object under `prefix`.
    pub(super) async fn remove_prefix(&self, prefix: &str) -> Result<()> {
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(self.bucket())
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| storage_error("ListObjectsV2", e))?;
            for object in out.contents() {
                if let Some(key) = object.key() {
                    self.remove(key).await?;
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    /// A presigned GET URL for `key`.
    pub(super) async fn presign_get(&self, key: &str, expiry: Duration) -> Result<String> {
        let presigning = PresigningConfig::expires_in(expiry).map_err(StorageError::backend)?;
        let req = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| storage_error("presign GetObject", e))?;
        Ok(req.uri().to_owned())
    }

    /// Copies `src` (of `size` bytes, whose digest the registry verified) to the blob key
    /// `dst` inside the bucket, marked [`HASHED`].
    pub(super) async fn copy_to_blob(&self, src: &str, dst: &str, size: u64) -> Result<()> {
        let source = format!("{}/{src}", self.bucket());
        if size <= self.config.single_copy_limit {
            self.client
                .copy_object()
                .bucket(self.bucket())
                .key(dst)
                .copy_source(source)
                .metadata_directive(MetadataDirective::Replace)
                .metadata(UPLOAD_META, HASHED)
                .send()
                .await
                .map_err(|e| storage_error("CopyObject", e))?;
            return Ok(());
        }
        let part = COPY_PART_SIZE.min(self.config.single_copy_limit.max(1));
        let upload_id = self.create_multipart(dst, Some(HASHED)).await?;
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0;
            while start < size {
                let end = (start + part).min(size) - 1;
                let out = self
                    .client
                    .upload_part_copy()
                    .bucket(self.bucket())
                    .key(dst)
                    .upload_id(&upload_id)
                    .part_number(part_number(parts.len())?)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .send()
                    .await
                    .map_err(|e| storage_error("UploadPartCopy", e))?;
                let etag = out
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .ok_or_else(|| StorageError::backend("UploadPartCopy returned no ETag"))?;
                parts.push(PartRecord {
                    etag: etag.to_owned(),
                    size: end - start + 1,
                });
                start = end + 1;
            }
            self.complete_multipart(dst, &upload_id, &parts).await
        }
        .await;
        if result.is_err() {
            let _ = self.abort_multipart(dst, &upload_id).await;
        }
        result
    }

    /// Starts a multipart upload into `key`, with `marker` as its [`UPLOAD_META`]; returns its
    /// id.
    pub(super) async fn create_multipart(&self, key: &str, marker: Option<&str>) -> Result<String> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(key);
        if let Some(marker) = marker {
            req = req.metadata(UPLOAD_META, marker);
        }
        let out = req
            .send()
            .await
            .map_err(|e| storage_error("CreateMultipartUpload", e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StorageError::backend("CreateMultipartUpload returned no upload id"))
    }

    /// Uploads part number `index + 1`; returns its record.
    pub(super) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        index: usize,
        bytes: Bytes,
    ) -> Result<PartRecord> {
        let size = bytes.len() as u64;
        let out = self
            .client
            .upload_part()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number(index)?)
            .content_length(i64::try_from(size).map_err(StorageError::backend)?)
            .body(SdkBody::from(bytes))
            .send()
            .await
            .map_err(|e| storage_error("UploadPart", e))?;
        let etag = out
            .e_tag()
            .ok_or_else(|| StorageError::backend("UploadPart returned no ETag"))?;
        Ok(PartRecord {
            etag: etag.to_owned(),
            size,
        })
    }

    /// Completes a multipart upload from its parts, in order.
    pub(super) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartRecord],
    ) -> Result<()> {
        let completed = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(CompletedPart::builder()
                    .part_number(part_number(i)?)
                    .e_tag(&p.etag)
                    .build())
            })
            .collect::<Result<Vec<_>>>()?;
        let sent = self
            .client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                // The response may be lost (or, on some servers, unparsable) after the store
                // did complete the upload: the object is then there with every byte.
                let size: u64 = parts.iter().map(|p| p.size).sum();
                if self.head(key).await? == Some(size) {
                    tracing::debug!(key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "upload completed despite the error");
                    Ok(())
                } else {
                    Err(storage_error("CompleteMultipartUpload", e))
                }
            }
        }
    }

    /// Aborts a multipart upload; one already gone is fine.
    pub(super) async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if classify(&e) == ErrorClass::NotFound => Ok(()),
            Err(e) => Err(storage_error("AbortMultipartUpload", e)),
        }
    }
}
