//! Direct uploads: the client puts a blob's bytes straight into the bucket through a presigned
//! PUT bound to the blob's SHA-256, so no byte passes through Wharf, and the registry publishes
//! them only once the store reports that SHA-256 for what it holds.
//!
//! The binding: the URL is signed (SigV4, query parameters) over the headers
//! `x-amz-checksum-sha256: <base64 of the digest>` (which S3 verifies against the body and
//! records, see [`super::checksum`]), `x-amz-content-sha256: <hex of the digest>` (which some
//! stores verify too), `x-amz-meta-wharf-upload: <upload id>`, `if-none-match: *` and
//! `content-length: <size>`. A
//! signed header cannot be left out or changed without breaking the signature. The SDK's
//! presigner cannot express this (it drops checksums, awslabs/aws-sdk-rust#1103), so the URL is
//! signed here with `aws-sigv4` directly.
//!
//! The registry never takes the store's comparison on trust: direct uploads are offered only on
//! a store the checksum probe passed, and [`finish`] reads the object's recorded SHA-256 back
//! (`HeadObject` with checksum mode) and publishes it only when it equals the digest. Anything
//! else is deleted and the session answers `DIGEST_INVALID`; a store that records no checksum
//! (it checked the signature, not the body) is refused the same way.
//!
//! Where the bytes go, so that finishing costs the same for 1 KB as for 5 GB (no copy):
//! - when no object is at the blob's key, straight to it (`blobs/<alg>/<hex>`), with a signed
//!   `If-None-Match: *` so the URL can only create, never replace, and the upload marker
//!   (`x-amz-meta-wharf-upload: <id>`) so [`finish`] knows this session's URL wrote it: the
//!   client proves it holds the bytes by uploading them in this session. Linking an existing
//!   blob by naming its digest would otherwise let anyone who knows a digest read it into their
//!   repository. Until [`finish`] has read back its SHA-256 the object is linked nowhere, and
//!   no push takes it for the blob unless the store vouches for that SHA-256
//!   ([`super::checksum::ObjectHead::trusted_as`]);
//! - when an object is there already, into the upload's own staging area
//!   (`uploads/<id>/direct-<alg>-<hex>`), as the proof of possession; [`finish`] then drops it
//!   (or, if what sits at the blob's key is not trusted, copies it over: the one case that
//!   copies).
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
use super::checksum::{UPLOAD_META, sha256_b64, verdict};
use crate::oci::Digest;
use crate::storage::key::ObjectKey;
use crate::storage::{DirectFinish, DirectUpload, Result, StorageError};

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

/// The staging key a direct upload of `digest` in upload `id` goes to when the blob's key is
/// taken. The digest is part of the key, so the object found there at [`finish`] is the one
/// the URL bound to that digest.
fn staged_key(id: &str, digest: &Digest) -> String {
    format!(
        "{}direct-{}-{}",
        ObjectKey::UploadPrefix(id),
        digest.algorithm().as_str(),
        digest.hex()
    )
}

/// A presigned PUT of `size` bytes hashing to `digest`, or `None` when the blob cannot be put
/// in one request (not SHA-256, or over [`MAX_DIRECT_PUT`]) or the store is not known to verify
/// checksums (see [`super::checksum::probe`]).
pub(super) async fn presign_put(
    store: &S3BlobStore,
    id: &str,
    digest: &Digest,
    size: u64,
) -> Result<Option<DirectUpload>> {
    let Some(checksum) = sha256_b64(digest) else {
        return Ok(None);
    };
    if size > MAX_DIRECT_PUT || !store.verifies_checksums().await {
        return Ok(None);
    }
    let blob = ObjectKey::Blob(digest).to_string();
    let key = match store.head(&blob).await? {
        None => blob,
        Some(_) => staged_key(id, digest),
    };
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
        ("x-amz-checksum-sha256".to_owned(), checksum),
        ("x-amz-content-sha256".to_owned(), digest.hex().to_owned()),
        (format!("x-amz-meta-{UPLOAD_META}"), id.to_owned()),
        ("if-none-match".to_owned(), "*".to_owned()),
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

/// Publishes what upload `id`'s presigned PUT stored, when the store reports the digest's
/// SHA-256 for it; deletes it otherwise. At the blob's key that costs one `HeadObject`; from
/// the staging area the staged object is dropped (copied first only when what sits at the
/// blob's key is not trusted).
pub(super) async fn finish(store: &S3BlobStore, id: &str, digest: &Digest) -> Result<DirectFinish> {
    let blob = ObjectKey::Blob(digest).to_string();
    let at_blob = store.head_checked(&blob).await?;
    if let Some(head) = &at_blob
        && head.upload.as_deref() == Some(id)
    {
        return Ok(match verdict(head, digest) {
            Ok(()) => DirectFinish::Stored(head.size),
            Err(why) => {
                store.remove(&blob).await?;
                DirectFinish::Refused(why)
            }
        });
    }
    let staged = staged_key(id, digest);
    let Some(head) = store.head_checked(&staged).await? else {
        return Ok(DirectFinish::Missing);
    };
    if let Err(why) = verdict(&head, digest) {
        store.remove(&staged).await?;
        return Ok(DirectFinish::Refused(why));
    }
    if !at_blob.is_some_and(|b| b.size == head.size && b.trusted_as(digest)) {
        store.copy_to_blob(&staged, &blob, head.size).await?;
    }
    store.remove(&staged).await?;
    Ok(DirectFinish::Stored(head.size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    #[test]
    fn the_staged_key_names_the_upload_and_the_digest() {
        let d = Algorithm::Sha256.digest(b"x");
        assert_eq!(
            staged_key("ab12", &d),
            format!("uploads/ab12/direct-sha256-{}", d.hex())
        );
    }
}
