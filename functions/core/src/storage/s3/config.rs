//! Configuration of the S3 blob store, from `s3://<bucket>?endpoint=…&region=…`.

use std::time::Duration;

use super::parts::{DEFAULT_PART_SIZE, MIN_PART_SIZE};
use crate::storage::aws::Endpoint;
use crate::storage::backend_url::{BackendUrl, BackendUrlError};

/// How long a presigned blob URL stays valid. The object store checks it when the download
/// starts, so it only has to cover the client following the redirect (a slow start included);
/// a URL copied out of a log is useless soon after.
pub const DEFAULT_PRESIGN_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// Longest expiry SigV4 allows for a presigned URL.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Largest object a single `CopyObject` may copy (an S3 limit); larger staged blobs are copied
/// part by part with `UploadPartCopy`.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Whether the store offers direct uploads (presigned PUTs straight into the bucket; see
/// `direct.rs`), from `direct=auto|on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectMode {
    /// Offer them once a probe showed that the store refuses a PUT whose body does not match
    /// its `x-amz-checksum-sha256` and reports the SHA-256 of what it kept (the default).
    #[default]
    Auto,
    /// Offer them without the probe: for a store known to verify checksums, saving the
    /// probe's requests on a cold start. The registry still reads the stored SHA-256 back
    /// before it publishes anything.
    On,
    /// Never: every push goes through the registry.
    Off,
}

/// The S3 blob store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket.
    pub bucket: String,
    /// Endpoint, region and credentials.
    pub endpoint: Endpoint,
    /// Address the bucket in the path (`https://host/bucket/key`) instead of the host name.
    /// Needed by most S3-compatible servers and harmless on R2; the default when an endpoint
    /// is given.
    pub path_style: bool,
    /// Answer blob GETs with a redirect to a presigned URL (true) or stream the bytes.
    pub presign: bool,
    /// Validity of presigned URLs.
    pub presign_expiry: Duration,
    /// Size of every multipart part but the last.
    pub part_size: u64,
    /// Staged blobs up to this size are copied in one `CopyObject`.
    pub single_copy_limit: u64,
    /// Whether direct uploads are offered.
    pub direct: DirectMode,
}

impl S3Config {
    /// Settings for `bucket` on `endpoint`, with every default.
    pub fn new(bucket: impl Into<String>, endpoint: Endpoint) -> Self {
        S3Config {
            bucket: bucket.into(),
            path_style: endpoint.url.is_some(),
            endpoint,
            presign: true,
            presign_expiry: DEFAULT_PRESIGN_EXPIRY,
            part_size: DEFAULT_PART_SIZE,
            single_copy_limit: MAX_SINGLE_COPY,
            direct: DirectMode::Auto,
        }
    }

    /// Parses `s3://<bucket>?endpoint=&region=&path_style=&presign=&presign_expiry=<seconds>&part_size=<bytes>&direct=auto|on|off`.
    pub fn from_url(url: &str) -> Result<Self, BackendUrlError> {
        let mut u = BackendUrl::parse(url)?;
        if u.scheme != "s3" {
            return Err(BackendUrlError(format!("{url:?} is not an s3:// URL")));
        }
        let endpoint = Endpoint {
            url: u.take("endpoint"),
            region: u.take("region"),
            credentials: None,
        };
        let mut c = S3Config::new(u.name.clone(), endpoint);
        if let Some(v) = u.take_bool("path_style")? {
            c.path_style = v;
        }
        if let Some(v) = u.take_bool("presign")? {
            c.presign = v;
        }
        if let Some(secs) = u.take_u64("presign_expiry")? {
            c.presign_expiry = Duration::from_secs(secs);
            if c.presign_expiry.is_zero() || c.presign_expiry > MAX_PRESIGN_EXPIRY {
                return Err(BackendUrlError(format!(
                    "presign_expiry must be 1 to {} seconds",
                    MAX_PRESIGN_EXPIRY.as_secs()
                )));
            }
        }
        if let Some(size) = u.take_u64("part_size")? {
            if size < MIN_PART_SIZE {
                return Err(BackendUrlError(format!(
                    "part_size must be at least {MIN_PART_SIZE} bytes"
                )));
            }
            c.part_size = size;
        }
        if let Some(mode) = u.take("direct") {
            c.direct = match mode.as_str() {
                "auto" => DirectMode::Auto,
                "on" => DirectMode::On,
                "off" => DirectMode::Off,
                other => {
                    return Err(BackendUrlError(format!(
                        "direct must be auto, on or off, not {other:?}"
                    )));
                }
            };
        }
        u.finish()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r2_style_url() {
        let c = S3Config::from_url(
            "s3://wharf?endpoint=https://acct.r2.cloudflarestorage.com&region=auto&presign_expiry=60",
        )
        .expect("valid");
        assert_eq!(c.bucket, "wharf");
        assert_eq!(
            c.endpoint.url.as_deref(),
            Some("https://acct.r2.cloudflarestorage.com")
        );
        assert_eq!(c.endpoint.region.as_deref(), Some("auto"));
        assert!(c.path_style, "a custom endpoint defaults to path style");
        assert_eq!(c.presign_expiry, Duration::from_secs(60));
        assert_eq!(c.part_size, DEFAULT_PART_SIZE);
    }

    #[test]
    fn aws_url_uses_virtual_hosts_and_checks_limits() {
        let c = S3Config::from_url("s3://b").expect("valid");
        assert!(!c.path_style);
        assert!(c.presign);
        assert!(S3Config::from_url("s3://b?part_size=1024").is_err());
        assert!(S3Config::from_url("s3://b?presign_expiry=0").is_err());
        assert!(S3Config::from_url("s3://b?bogus=1").is_err());
        assert_eq!(c.direct, DirectMode::Auto);
        let on = S3Config::from_url("s3://b?direct=on").expect("valid");
        assert_eq!(on.direct, DirectMode::On);
        assert!(S3Config::from_url("s3://b?direct=yes").is_err());
        assert!(S3Config::from_url("dynamodb://b").is_err());
    }
}
