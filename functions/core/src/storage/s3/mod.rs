//! Blobs in an S3-compatible object store: Cloudflare R2, AWS S3, or any server speaking the
//! S3 API (path-style addressing and a custom endpoint).
//!
//! Blobs live at `blobs/<alg>/<hex>` ([`ObjectKey`]); pulls are answered with presigned GET
//! URLs so no blob byte passes through Wharf. Uploads are staged as a multipart upload into
//! `objects/<id>/data` whose parts all have one size (R2's rule), cut by [`parts::PartCutter`];
//! bytes short of a part wait in a small tail object under `uploads/<id>/` between requests
//! ([`staging`]). A finished multipart upload stays where it is and the blob's key points at
//! it ([`located`]), so finishing copies nothing.
//!
//! Layer rule: SDK types stay inside this module; callers see [`BlobStore`] and
//! [`StorageError`] only.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use tokio::sync::OnceCell;

use super::key::ObjectKey;
use super::{
    BlobInfo, BlobRead, BlobStore, ByteRange, ByteStream, DirectFinish, DirectUpload, Result,
    StagedUpload, StagingState,
};
use crate::oci::Digest;

pub mod admin;
mod checksum;
pub mod config;
mod direct;
mod listing;
mod located;
mod objects;
pub mod parts;
mod staging;

pub use config::{DirectMode, S3Config};

/// The S3 [`BlobStore`].
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    config: Arc<S3Config>,
    /// What direct-upload URLs are signed with (the SDK client does not hand its own out).
    signer: direct::Signer,
    /// The checksum probe's answer, once asked ([`checksum::probe`]).
    verifies_checksums: Arc<OnceCell<bool>>,
}

impl S3BlobStore {
    /// A store over `config.bucket` (which must exist; see [`admin::create_bucket`]).
    pub async fn connect(config: S3Config) -> Self {
        let sdk = super::aws::sdk_config(&config.endpoint).await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(config.path_style);
        if config.endpoint.url.is_some() {
            // Newer SDKs add a CRC32 to every upload by default, as an `aws-chunked` body with a
            // trailer for streams; S3-compatible stores have refused both. Checksums are sent
            // only where the operation requires one, or where Wharf sets one itself.
            s3 = s3
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        S3BlobStore {
            client: Client::from_conf(s3.build()),
            config: Arc::new(config),
            signer: direct::Signer::from_sdk(&sdk),
            verifies_checksums: Arc::new(OnceCell::new()),
        }
    }

    /// True when direct uploads may be offered: the configuration allows them and (unless it
    /// vouches for the store) the checksum probe passed. The probe runs once per process; a
    /// probe that fails to reach the store answers false and is tried again next time.
    async fn verifies_checksums(&self) -> bool {
        match self.config.direct {
            DirectMode::Off => false,
            DirectMode::On => true,
            DirectMode::Auto => {
                let probed = self
                    .verifies_checksums
                    .get_or_try_init(|| checksum::probe(self))
                    .await;
                match probed {
                    Ok(yes) => *yes,
                    Err(e) => {
                        tracing::warn!(error = %e, "the checksum probe failed: no direct upload this time");
                        false
                    }
                }
            }
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
        // Only what is trusted as the blob counts: a direct upload not yet proven is not one.
        let head = self
            .head_checked(&ObjectKey::Blob(digest).to_string())
            .await?;
        Ok(head.filter(|h| h.trusted_as(digest)).map(|h| h.size))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Option<BlobRead>> {
        let key = located::resolve(self, digest).await?;
        self.read(&key, range).await
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        if !self.config.presign {
            return Ok(None);
        }
        let key = located::resolve(self, digest).await?;
        self.presign_get(&key, self.config.presign_expiry)
            .await
            .map(Some)
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        located::delete(self, digest).await
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

    async fn finish_direct_upload(&self, id: &str, digest: &Digest) -> Result<DirectFinish> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::aws::{Endpoint, StaticCredentials};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers one HTTP request with an empty 200 and hands back its head (request line and
    /// headers, lowercased).
    async fn capture_one(listener: tokio::net::TcpListener) -> String {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before the headers ended");
            head.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\netag: \"e\"\r\n\r\n")
            .await
            .expect("answer");
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    }

    #[tokio::test]
    async fn uploads_to_a_custom_endpoint_carry_no_checksum_the_operation_does_not_require() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let endpoint = Endpoint {
            url: Some(url),
            region: Some("auto".to_owned()),
            credentials: Some(StaticCredentials {
                access_key_id: "a".to_owned(),
                secret_access_key: "s".to_owned(),
            }),
        };
        let store = S3BlobStore::connect(S3Config::new("b", endpoint)).await;
        let server = tokio::spawn(capture_one(listener));
        store
            .write("uploads/x/tail", bytes::Bytes::from_static(b"some bytes"))
            .await
            .expect("PutObject");
        let head = server.await.expect("server");
        assert!(head.starts_with("put /b/uploads/x/tail"), "{head}");
        // What SDKs since early 2025 add by default (a CRC32, or an aws-chunked body with a
        // trailer), and S3-compatible stores have refused.
        for added in [
            "x-amz-checksum-",
            "x-amz-sdk-checksum-algorithm",
            "x-amz-trailer",
            "aws-chunked",
        ] {
            assert!(!head.contains(added), "{added} sent:\n{head}");
        }
    }
}
