//! Setting up a bucket for Wharf (`wharf admin create-bucket`): for local servers and first
//! deployments; production buckets may equally be made by infrastructure code.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter,
};

use super::S3BlobStore;
use crate::storage::aws::storage_error;
use crate::storage::{Result, StorageError};

/// Days after which the bucket drops what abandoned uploads left behind: open multipart
/// uploads under `uploads/` and `objects/` (a crashed or abandoned push never aborts its own)
/// and staged objects under `uploads/`. Longer than any upload session lives, so no live upload loses its parts.
pub const STAGING_EXPIRY_DAYS: i32 = 7;

/// Regions whose buckets are created without a location constraint.
const NO_CONSTRAINT_REGIONS: &[&str] = &["us-east-1", "auto"];

/// What [`create_bucket`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSetup {
    /// The bucket was created (false: it existed already).
    pub created: bool,
    /// The lifecycle rule for abandoned uploads is in place (false: the server refused it,
    /// as some S3-compatible servers do).
    pub lifecycle: bool,
}

/// Creates the store's bucket if missing, with a lifecycle rule that cleans up abandoned
/// uploads.
pub async fn create_bucket(store: &S3BlobStore) -> Result<BucketSetup> {
    let bucket = store.config.bucket.clone();
    let region = store
        .client
        .config()
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_default();
    let mut req = store.client.create_bucket().bucket(&bucket);
    if !NO_CONSTRAINT_REGIONS.contains(&region.as_str()) {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    let created = match req.send().await {
        Ok(_) => true,
        Err(e) => {
            let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or_default();
            if matches!(code, "BucketAlreadyOwnedByYou" | "BucketAlreadyExists") {
                false
            } else {
                return Err(storage_error("CreateBucket", e));
            }
        }
    };
    let lifecycle = put_lifecycle(store).await.is_ok();
    Ok(BucketSetup { created, lifecycle })
}

async fn put_lifecycle(store: &S3BlobStore) -> Result<()> {
    let rule = |id: &str, prefix: &str| {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
    };
    let abort_rule = |id: &str, prefix: &str| {
        rule(id, prefix)
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(STAGING_EXPIRY_DAYS)
                    .build(),
            )
            .build()
            .map_err(StorageError::backend)
    };
    let abort = abort_rule("wharf-abort-abandoned-multipart-uploads", "uploads/")?;
    // Chunked uploads go to `objects/` (located blobs): only their *open* multipart uploads
    // expire there, never a completed object, which may be a published blob.
    let abort_located = abort_rule("wharf-abort-abandoned-located-uploads", "objects/")?;
    let expire = rule("wharf-expire-staged-objects", "uploads/")
        .expiration(
            LifecycleExpiration::builder()
                .days(STAGING_EXPIRY_DAYS)
                .build(),
        )
        .build()
        .map_err(StorageError::backend)?;
    store
        .client
        .put_bucket_lifecycle_configuration()
        .bucket(&store.config.bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(abort)
                .rules(abort_located)
                .rules(expire)
                .build()
                .map_err(StorageError::backend)?,
        )
        .send()
        .await
        .map_err(|e| storage_error("PutBucketLifecycleConfiguration", e))?;
    Ok(())
}
