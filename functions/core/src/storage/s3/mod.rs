//! Blobs in an S3-compatible object store: Cloudflare R2, AWS S3, or any server speaking the
//! S3 API (path-style addressing and a custom endpoint).
//!
//! Blobs live at `blobs/<alg>/<hex>` ([`ObjectKey`]); pulls are answered with presigned GET
//! URLs so no blob byte passes through Wharf. Uploads are staged under `uploads/<id>/` as a
//! multipart upload whose parts all have one size (R2's rule), cut by [`parts::PartCutter`];
//! bytes short of a part wait in a small tail object between requests ([`staging`]).
//!
//! Layer rule: SDK types stay inside this module; callers see [`BlobStore`] and
//! [`StorageError`] only.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;

use super::key::ObjectKey;
use super::{
    BlobInfo, BlobRead, BlobStore, ByteRange, ByteStream, DirectUpload, Result, StagedUpload,
    StagingState,
};
use crate::oci::Digest;

pub mod admin;
pub mod config;
mod direct;
mod listing;
mod objects;
pub mod parts;
mod staging;

pub use config::S3Config;

/// The S3 [`BlobStore`].
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    config: Arc<S3Config>,
    /// What direct-upload URLs are signed with (the SDK client does not hand its own out).
    signer: direct::Signer,
}

impl S3BlobStore {
    /// A store over `config.bucket` (which must exist; see [`admin::create_bucket`]).
    pub async fn connect(config: S3Config) -> Self {
        let sdk = super::aws::sdk_config(&config.endpoint).await;
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(config.path_style)
            .build();
        S3BlobStore {
            client: Client::from_conf(s3),
            config: Arc::new(config),
            signer: direct::Signer::from_sdk(&sdk),
        }
    }

    /// The settings this store runs with.
    pub fn config(&self) -> &S3Config {
        &self.config
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.head(&ObjectKey::Blob(digest).to_string()).await
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Option<BlobRead>> {
        self.read(&ObjectKey::Blob(digest).to_string(), range).await
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        if !self.config.presign {
            return Ok(None);
        }
        self.presign_get(
            &ObjectKey::Blob(digest).to_string(),
            self.config.presign_expiry,
        )
        .await
        .map(Some)
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        self.remove(&ObjectKey::Blob(digest).to_string()).await
    }

    async fn start_upload(&self, id: &str) -> Result<StagingState> {
        staging::start(self, id)
    }

    async fn append_upload(
        &self,
        id: &str,
        state: StagingState,
        offset: u64,
        body: ByteStream,
    ) -> Result<(StagingState, u64)> {
        staging::append(self, id, state, offset, body).await
    }

    async fn finish_upload(&self, id: &str, state: StagingState, digest: &Digest) -> Result<()> {
        staging::finish(self, id, state, digest).await
    }

    async fn abort_upload(&self, id: &str, state: StagingState) -> Result<()> {
        staging::abort(self, id, state).await
    }

    fn chunk_min_length(&self) -> Option<u64> {
        Some(self.config.part_size)
    }

    async fn direct_upload(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<Option<DirectUpload>> {
        if !self.config.presign {
            return Ok(None);
        }
        direct::presign_put(self, id, digest, size).await
    }

    async fn finish_direct_upload(&self, id: &str, digest: &Digest) -> Result<Option<u64>> {
        direct::finish(self, id, digest).await
    }

    async fn list_blobs(&self, after: Option<&Digest>, n: usize) -> Result<Vec<BlobInfo>> {
        self.list_blob_objects(after, n).await
    }

    async fn list_staged(&self) -> Result<Vec<StagedUpload>> {
        self.list_staged_uploads().await
    }

    async fn remove_staged(&self, id: &str) -> Result<()> {
        self.remove_staged_upload(id).await
    }
}
