//! SHA-256 checksums the store records with an object, and what the registry concludes from
//! them: whether an object's bytes are the blob of a digest, and whether the store can be
//! handed a presigned PUT at all.
//!
//! S3 defines the checksum: a PUT may carry `x-amz-checksum-sha256`, the base64 of the SHA-256
//! of the body; the store computes the body's own SHA-256, refuses the request with `BadDigest`
//! when they differ, and records the value with the object; `HeadObject` with
//! `x-amz-checksum-mode: ENABLED` reports it ("Checking object integrity in Amazon S3",
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>;
//! `PutObject` and `HeadObject` in the Amazon S3 API Reference). A multipart object reports a
//! checksum of its parts' checksums with a `-<parts>` suffix, never equal to a digest, so it
//! can never pass for one.
//!
//! Two things follow, and only together do they make the reported value evidence:
//! - a store may record a client's claim without computing anything (moto does), so before
//!   it gets the direct path the registry probes it once per process ([`probe`]): a PUT whose
//!   checksum does not match its body must be refused, and a matching one must be reported;
//! - a store that checks a presigned URL's signature but not its body records no checksum
//!   when the client leaves the header out, so [`verdict`] accepts only an object whose
//!   reported SHA-256 equals the digest; silence is a refusal.
//!
//! Layer rule: SDK types stay in this file and `objects.rs`.

use std::collections::HashMap;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::ChecksumMode;
use base64::Engine;
use bytes::Bytes;

use super::S3BlobStore;
use crate::oci::{Algorithm, Digest};
use crate::storage::aws::{ErrorClass, classify, storage_error};
use crate::storage::key::ObjectKey;
use crate::storage::{Result, StorageError};

/// Object metadata (`x-amz-meta-wharf-upload`) saying who wrote the object: the upload
/// session whose presigned PUT created it (its id, signed into the URL, so only that session's
/// URL can write it), or [`HASHED`].
pub(super) const UPLOAD_META: &str = "wharf-upload";

/// [`UPLOAD_META`] of a blob the registry wrote itself after hashing every byte. No upload id
/// looks like it, and a presigned URL cannot write it: its signed `x-amz-meta-wharf-upload`
/// names its session, and changing a signed header breaks the signature.
pub(super) const HASHED: &str = "hashed";

/// `x-amz-checksum-sha256` of `digest`: the base64 of its 32 bytes. `None` for other
/// algorithms.
pub(super) fn sha256_b64(digest: &Digest) -> Option<String> {
    if digest.algorithm() != Algorithm::Sha256 {
        return None;
    }
    let bytes = hex::decode(digest.hex()).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// What `HeadObject` with checksum mode reports about an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ObjectHead {
    /// Size in bytes.
    pub size: u64,
    /// The SHA-256 the store recorded (base64), if any.
    pub sha256: Option<String>,
    /// The upload session whose presigned PUT created it ([`UPLOAD_META`]), if any.
    pub upload: Option<String>,
    /// For a pointer the registry wrote ([`super::located`]): the upload whose located object
    /// holds the bytes. `size` is then the blob's size, not the pointer's.
    pub located: Option<String>,
}

impl ObjectHead {
    /// True when the store vouches that these bytes hash to `digest`.
    pub fn proves(&self, digest: &Digest) -> bool {
        verdict(self, digest).is_ok()
    }

    /// True when a push may take this object as the blob of `digest` and skip writing its
    /// own: the registry wrote it after hashing the bytes ([`HASHED`]), or the store vouches for
    /// its SHA-256. Anything else at a blob's key (a direct upload not proven, what a store kept
    /// of a PUT it refused, a blob from before the marker) is overwritten by the next push that
    /// verified the bytes itself.
    pub fn trusted_as(&self, digest: &Digest) -> bool {
        self.upload.as_deref() == Some(HASHED) || self.located.is_some() || self.proves(digest)
    }
}

/// Whether `head` proves its bytes are `digest`; the refusal says what the store reported.
pub(super) fn verdict(head: &ObjectHead, digest: &Digest) -> Result<(), String> {
    let expected = sha256_b64(digest).ok_or_else(|| format!("{digest} is not a sha256 digest"))?;
    match &head.sha256 {
        Some(got) if *got == expected => Ok(()),
        Some(got) => Err(format!(
            "the store reports SHA-256 {got}, the digest is {expected}"
        )),
        None => Err("the store reports no SHA-256 for the uploaded bytes".to_owned()),
    }
}

impl S3BlobStore {
    /// Size, recorded SHA-256 and upload marker of an object, or `None`.
    pub(super) async fn head_checked(&self, key: &str) -> Result<Option<ObjectHead>> {
        let out = match self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if classify(&e) == ErrorClass::NotFound => return Ok(None),
            Err(e) => return Err(storage_error("HeadObject", e)),
        };
        let metadata = out.metadata();
        let upload = metadata
            .and_then(|m: &HashMap<String, String>| m.get(UPLOAD_META))
            .cloned();
        let pointer = metadata.and_then(|m| super::located::pointer_of(upload.as_deref(), m));
        Ok(Some(ObjectHead {
            size: match &pointer {
                Some(p) => p.size,
                None => out.content_length().unwrap_or(0).try_into().unwrap_or(0),
            },
            sha256: out.checksum_sha256().map(str::to_owned),
            upload,
            located: pointer.map(|p| p.id),
        }))
    }

    /// PUTs `bytes` declaring `claimed` as their SHA-256; false when the store refused it.
    async fn put_claiming(
        &self,
        key: &str,
        bytes: &'static [u8],
        claimed: &Digest,
    ) -> Result<bool> {
        let claimed = sha256_b64(claimed).ok_or_else(|| StorageError::backend("not sha256"))?;
        let sent = self
            .client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key)
            .checksum_sha256(claimed)
            .body(SdkBody::from(Bytes::from_static(bytes)))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) => {
                tracing::debug!(key, error = ?e.err(), "the store refused a checksummed PUT");
                Ok(false)
            }
            Err(e) => Err(storage_error("PutObject", e)),
        }
    }
}

/// The body of the probe's objects.
const PROBE_BODY: &[u8] = b"wharf: does this store verify x-amz-checksum-sha256?";

/// Whether the store verifies and reports SHA-256 checksums: a PUT claiming another body's
/// SHA-256 must be refused, a PUT claiming its own must be kept, and `HeadObject` must report
/// exactly that SHA-256. The probe object lives under `uploads/` (the lifecycle rule drops it
/// if the last step fails) and is deleted at the end.
pub(super) async fn probe(store: &S3BlobStore) -> Result<bool> {
    let id = format!("{:032x}", rand::random::<u128>());
    let key = format!("{}checksum-probe", ObjectKey::UploadPrefix(&id));
    let own = Algorithm::Sha256.digest(PROBE_BODY);
    let other = Algorithm::Sha256.digest(b"other bytes");
    let result = async {
        if store.put_claiming(&key, PROBE_BODY, &other).await? {
            tracing::warn!(
                "the blob store kept a PUT whose x-amz-checksum-sha256 did not match its body: \
                 no direct uploads (pushes go through the registry)"
            );
            return Ok(false);
        }
        if !store.put_claiming(&key, PROBE_BODY, &own).await? {
            tracing::warn!(
                "the blob store refused a PUT with a correct x-amz-checksum-sha256: \
                 no direct uploads (pushes go through the registry)"
            );
            return Ok(false);
        }
        let head = store.head_checked(&key).await?.unwrap_or_default();
        if let Err(why) = verdict(&head, &own) {
            tracing::warn!(
                "the blob store does not report SHA-256 checksums ({why}): no direct uploads \
                 (pushes go through the registry)"
            );
            return Ok(false);
        }
        Ok(true)
    }
    .await;
    store.remove(&key).await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_the_base64_of_the_digest_bytes() {
        // SHA-256 of "abc" (FIPS 180-2 example), as S3 spells it in x-amz-checksum-sha256.
        let d = Algorithm::Sha256.digest(b"abc");
        assert_eq!(
            sha256_b64(&d).as_deref(),
            Some("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")
        );
        assert_eq!(sha256_b64(&Algorithm::Sha512.digest(b"abc")), None);
    }

    #[test]
    fn only_a_reported_sha256_equal_to_the_digest_proves_the_bytes() {
        let d = Algorithm::Sha256.digest(b"abc");
        let right = sha256_b64(&d).expect("sha256");
        let head = |sha256: Option<&str>, upload: Option<&str>| ObjectHead {
            size: 3,
            sha256: sha256.map(str::to_owned),
            upload: upload.map(str::to_owned),
            located: None,
        };
        assert!(head(Some(&right), Some("u")).proves(&d));
        let other = sha256_b64(&Algorithm::Sha256.digest(b"abd")).expect("sha256");
        assert!(!head(Some(&other), Some("u")).proves(&d));
        assert!(!head(None, Some("u")).proves(&d), "silence proves nothing");
        // A multipart object's composite checksum never passes for a digest.
        assert!(!head(Some(&format!("{right}-2")), None).proves(&d));
        // What the registry hashed itself is trusted; anything else only with its proof.
        assert!(head(None, Some(HASHED)).trusted_as(&d));
        assert!(
            !head(None, None).trusted_as(&d),
            "an unmarked object proves nothing"
        );
        assert!(!head(None, Some("u")).trusted_as(&d));
        assert!(!head(Some(&other), Some("u")).trusted_as(&d));
        assert!(head(Some(&right), Some("u")).trusted_as(&d));
    }
}
