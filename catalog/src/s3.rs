//! The public-bucket writer: the site as objects of an S3-compatible bucket (Cloudflare R2
//! behind a custom domain or `r2.dev`, AWS S3, any S3 server), under an optional key prefix.
//! Each object carries the `Content-Type` and `Cache-Control` of its [`ContentKind`], because
//! a bucket serves exactly the headers stored with the object.
//!
//! The build's state file is an object of the same bucket, so a cold function instance (or a
//! laptop) picks up where the last build stopped and re-renders only what changed.
//!
//! Layer rule: SDK types stay in this module; the build sees a [`SiteWriter`] only. Keys are
//! built from site paths that [`check_path`] accepted, so nothing lands outside the prefix.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use wharf::storage::aws::{Endpoint, ErrorClass, StaticCredentials, classify, sdk_config};
use wharf::storage::backend_url::BackendUrl;

use crate::writer::{ContentKind, SiteWriter, WriteError, check_path};

/// Keys listed per `ListObjectsV2` call (the S3 maximum).
const LIST_PAGE: i32 = 1000;

/// Where the site goes: `s3://<bucket>[/<prefix>][?endpoint=…&region=…&path_style=…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// The bucket.
    pub bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    /// Endpoint, region and credentials.
    pub endpoint: Endpoint,
    /// Path-style addressing (the default with a custom endpoint).
    pub path_style: bool,
}

impl S3Target {
    /// Parses an `s3://` site URL. The prefix must be plain path segments (no `.`, `..` or
    /// empty segment), so every key stays under it.
    pub fn from_url(url: &str) -> Result<S3Target, WriteError> {
        let bad = |why: String| WriteError::BadTarget(format!("{url:?}: {why}"));
        let mut u = BackendUrl::parse(url).map_err(|e| bad(e.to_string()))?;
        if u.scheme != "s3" {
            return Err(bad("not an s3:// URL".into()));
        }
        let (bucket, prefix) = u.name.split_once('/').unwrap_or((&u.name, ""));
        let (bucket, prefix) = (bucket.to_owned(), prefix.trim_end_matches('/'));
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            check_path(prefix).map_err(|_| bad(format!("bad key prefix {prefix:?}")))?;
            format!("{prefix}/")
        };
        let endpoint = Endpoint {
            url: u.take("endpoint"),
            region: u.take("region"),
            credentials: None,
        };
        let path_style = u
            .take_bool("path_style")
            .map_err(|e| bad(e.to_string()))?
            .unwrap_or(endpoint.url.is_some());
        u.finish().map_err(|e| bad(e.to_string()))?;
        Ok(S3Target {
            bucket,
            prefix,
            endpoint,
            path_style,
        })
    }

    /// The same target with fixed credentials instead of the standard AWS chain.
    pub fn with_credentials(mut self, credentials: Option<StaticCredentials>) -> S3Target {
        if credentials.is_some() {
            self.endpoint.credentials = credentials;
        }
        self
    }
}

/// Writes the site into a bucket.
#[derive(Debug, Clone)]
pub struct S3Writer {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Writer {
    /// A writer for `target` (the bucket must exist).
    pub async fn connect(target: S3Target) -> S3Writer {
        let sdk = sdk_config(&target.endpoint).await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(target.path_style)
            .build();
        S3Writer {
            client: Client::from_conf(conf),
            bucket: target.bucket,
            prefix: target.prefix,
        }
    }

    fn key(&self, path: &str) -> Result<String, WriteError> {
        check_path(path)?;
        Ok(format!("{}{path}", self.prefix))
    }
}

fn store_error(path: &str, e: impl std::fmt::Display) -> WriteError {
    WriteError::Store {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

#[async_trait]
impl SiteWriter for S3Writer {
    async fn put(&self, path: &str, bytes: Vec<u8>, kind: ContentKind) -> Result<(), WriteError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(path)?)
            .content_type(kind.content_type())
            .cache_control(kind.cache_control())
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| store_error(path, aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, WriteError> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(path)?);
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if classify(&e) == ErrorClass::NotFound => return Ok(None),
            Err(e) => {
                return Err(store_error(path, aws_sdk_s3::error::DisplayErrorContext(e)));
            }
        };
        let body = out.body.collect().await.map_err(|e| store_error(path, e))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn delete(&self, path: &str) -> Result<(), WriteError> {
        // S3 answers a delete of a missing key with success.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(path)?)
            .send()
            .await
            .map_err(|e| store_error(path, aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>, WriteError> {
        let start = self.key(dir)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(format!("{start}/"))
                .max_keys(LIST_PAGE)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| store_error(dir, aws_sdk_s3::error::DisplayErrorContext(e)))?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(&self.prefix))
                    .map(str::to_owned),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_urls_name_bucket_prefix_and_endpoint() {
        let t = S3Target::from_url(
            "s3://public/catalog/v1/?endpoint=https://acct.r2.cloudflarestorage.com&region=auto",
        )
        .expect("valid");
        assert_eq!(t.bucket, "public");
        assert_eq!(t.prefix, "catalog/v1/");
        assert_eq!(t.endpoint.region.as_deref(), Some("auto"));
        assert!(t.path_style);
        let bare = S3Target::from_url("s3://public").expect("valid");
        assert_eq!(bare.prefix, "");
        assert!(!bare.path_style, "AWS S3 uses virtual hosts");
        for bad in [
            "s3://b/../x",
            "s3://b/a//c",
            "s3://b/./a",
            "s3://b?bogus=1",
            "http://b/x",
            "s3://",
        ] {
            assert!(S3Target::from_url(bad).is_err(), "{bad} must be refused");
        }
    }
}
