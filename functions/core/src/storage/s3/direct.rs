//! Direct uploads: the client puts a blob's bytes straight into the bucket through a presigned
//! PUT bound to the blob's SHA-256, so no byte passes through Wharf and the store itself refuses
//! bytes that do not hash to the digest.
//!
//! The binding: the URL is signed (SigV4, query parameters) over the headers
//! `x-amz-content-sha256: <hex of the digest>` and `content-length: <size>`. A signed header
//! cannot be changed without breaking the signature, and an S3-compatible store verifies the
//! body against `x-amz-content-sha256` when it is present. The SDK's presigner cannot express
//! this (it drops `checksum_sha256`, awslabs/aws-sdk-rust#1103), so the URL is signed here with
//! `aws-sigv4` directly.
//!
//! The bytes land in the upload's own staging area (`uploads/<id>/direct-<alg>-<hex>`), never
//! at the blob's key: a client proves it holds the bytes by uploading them in this session, and
//! only then does [`finish`] copy them (server-side) to `blobs/…`. Linking an existing blob by
//! naming its digest would otherwise let anyone who knows a digest read it into their
//! repository.
//!
//! Layer rule: SDK and signer types stay in this file.

use std::time::SystemTime;

use aws_sdk_s3::config::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;

use super::S3BlobStore;
use crate::oci::{Algorithm, Digest};
use crate::storage::key::ObjectKey;
use crate::storage::{DirectUpload, Result, StorageError};

/// The credentials and region direct-upload URLs are signed with.
#[derive(Debug, Clone)]
pub(super) struct Signer {
    credentials: Option<SharedCredentialsProvider>,
    region: String,
}

impl Signer {
    /// What the store's SDK configuration signs with.
    pub(super) fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        Signer {
            credentials: sdk.credentials_provider(),
            region: sdk
                .region()
                .map(|r| r.as_ref().to_owned())
                .unwrap_or_else(|| "us-east-1".to_owned()),
        }
    }
}

/// Largest object one PUT may create (an S3 limit). Larger blobs go through chunked uploads.
pub const MAX_DIRECT_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// The staging key a direct upload of `digest` in upload `id` goes to. The digest is part of
/// the key, so the object found there at [`finish`] is the one the store verified against it.
fn staged_key(id: &str, digest: &Digest) -> String {
    format!(
        "{}direct-{}-{}",
        ObjectKey::UploadPrefix(id),
        digest.algorithm().as_str(),
        digest.hex()
    )
}

/// A presigned PUT of `size` bytes hashing to `digest`, or `None` when the blob cannot be put
/// in one request (not SHA-256, or over [`MAX_DIRECT_PUT`]).
pub(super) async fn presign_put(
    store: &S3BlobStore,
    id: &str,
    digest: &Digest,
    size: u64,
) -> Result<Option<DirectUpload>> {
    if digest.algorithm() != Algorithm::Sha256 || size > MAX_DIRECT_PUT {
        return Ok(None);
    }
    let key = staged_key(id, digest);
    let expiry = store.config.presign_expiry;
    // The SDK resolves the endpoint and addressing style; its URL, stripped of its own
    // signature, is the base the digest-bound signature is computed over.
    let sdk_url = store
        .client
        .put_object()
        .bucket(&store.config.bucket)
        .key(&key)
        .presigned(PresigningConfig::expires_in(expiry).map_err(StorageError::backend)?)
        .await
        .map_err(|e| crate::storage::aws::storage_error("presign PutObject", e))?
        .uri()
        .to_owned();
    let base = sdk_url.split('?').next().unwrap_or(&sdk_url).to_owned();
    let signer = &store.signer;
    let credentials = signer
        .credentials
        .as_ref()
        .ok_or_else(|| StorageError::backend("no credentials to presign with"))?
        .provide_credentials()
        .await
        .map_err(StorageError::backend)?;
    let identity: Identity = credentials.into();
    let region = signer.region.clone();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expiry);
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(StorageError::backend)?
        .into();
    let headers = vec![
        ("x-amz-content-sha256".to_owned(), digest.hex().to_owned()),
        ("content-length".to_owned(), size.to_string()),
    ];
    let signable = SignableRequest::new(
        "PUT",
        base.as_str(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::UnsignedPayload,
    )
    .map_err(StorageError::backend)?;
    let (instructions, _) = sign(signable, &params)
        .map_err(StorageError::backend)?
        .into_parts();
    let mut request = http::Request::builder()
        .method("PUT")
        .uri(base.as_str())
        .body(())
        .map_err(StorageError::backend)?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(Some(DirectUpload {
        method: "PUT".to_owned(),
        url: request.uri().to_string(),
        headers,
    }))
}

/// Copies the staged object of a direct upload to the blob's key (unless the blob is there
/// already) and drops the staged copy; `None` when the client never put it.
pub(super) async fn finish(store: &S3BlobStore, id: &str, digest: &Digest) -> Result<Option<u64>> {
    let staged = staged_key(id, digest);
    let Some(size) = store.head(&staged).await? else {
        return Ok(None);
    };
    let blob = ObjectKey::Blob(digest).to_string();
    if store.head(&blob).await? != Some(size) {
        store.copy(&staged, &blob, size).await?;
    }
    store.remove(&staged).await?;
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staged_key_names_the_upload_and_the_digest() {
        let d = Algorithm::Sha256.digest(b"x");
        assert_eq!(
            staged_key("ab12", &d),
            format!("uploads/ab12/direct-sha256-{}", d.hex())
        );
    }
}
