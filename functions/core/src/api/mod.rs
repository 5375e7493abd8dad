//! The HTTP API: one module per endpoint group, each with `router(state) -> Router`.
//!
//! Layer rule: handlers translate HTTP to storage calls and back; they see only the
//! `BlobStore`/`MetaStore` traits, never a backend or a runtime. Repository names contain slashes,
//! which path routers cannot match, so every router is wrapped by [`paths::OciPaths`]: it parses
//! the raw path (validating the name) and rewrites it to a canonical form where the name is one
//! segment, before any route is matched.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode};

use crate::auth::Auth;
use crate::config::RateLimitConfig;
use crate::oci::{ErrorCode, OciError};
use crate::storage::{BlobStore, MetaStore, StorageError};

mod authz;
pub mod base;
pub mod blobs;
pub mod catalog;
pub mod direct;
pub mod lane;
mod limits;
pub mod manifests;
mod middleware;
pub mod paths;
mod ratelimit;
pub mod referrers;
pub mod tags;
pub mod token;
pub mod uploads;

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod tests;

pub use ratelimit::{ClientAddr, RateLimiter};

/// The origin (`https://host`) a client reached the registry at, as told by the platform in
/// front of it (API Gateway's request context, set by the Lambda adapter), never by a request
/// header. Without `public_url`, the token realm is derived from it; without it (`wharf
/// serve`), from the `Host` header over plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin(String);

impl PublicOrigin {
    /// `https://<domain>` for a request API Gateway received at `domain` (API Gateway serves
    /// HTTPS only); `None` for a domain that is not a plain host name with an optional port,
    /// so nothing odd can reach a `WWW-Authenticate` header.
    pub fn https(domain: &str) -> Option<PublicOrigin> {
        crate::auth::is_host_port(domain).then(|| PublicOrigin(format!("https://{domain}")))
    }

    /// `http://<host>` for the `Host` header of a request `wharf serve` received directly, under
    /// the same rule as [`PublicOrigin::https`]: `None` for anything but a host and port.
    pub fn http(host: &str) -> Option<PublicOrigin> {
        crate::auth::is_host_port(host).then(|| PublicOrigin(format!("http://{host}")))
    }

    /// The origin, e.g. `https://abc123.execute-api.eu-west-1.amazonaws.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Docker-Content-Digest`.
pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// `Docker-Upload-UUID`.
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// `OCI-Subject`.
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// One per tag a push by digest applied from its `tag` query parameters.
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
/// `OCI-Filters-Applied`.
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Blob bytes.
    pub blobs: Arc<dyn BlobStore>,
    /// Metadata.
    pub meta: Arc<dyn MetaStore>,
    /// Authentication; `None` is development mode (everything allowed, loopback only).
    pub auth: Option<Arc<Auth>>,
    /// Serializes requests on one upload session within this process.
    pub(crate) upload_locks: Arc<uploads::SessionLocks>,
    /// Per-caller request limits; `None` when off.
    pub rate_limits: Option<Arc<RateLimiter>>,
    /// How long a request body may deliver nothing before the request fails.
    pub body_idle_timeout: std::time::Duration,
    /// Where upload sessions are reached (an upload lane) and whether their URLs carry
    /// capabilities.
    pub upload_routing: lane::UploadRouting,
    /// Largest request body the uploads group takes, in bytes (`None`: no limit). A Lambda
    /// function sets it under its payload limit so an oversized body gets a clear OCI error.
    pub max_upload_body: Option<u64>,
}

impl AppState {
    /// State over the given stores.
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>) -> Self {
        AppState {
            blobs,
            meta,
            auth: None,
            upload_locks: Arc::new(uploads::SessionLocks::default()),
            rate_limits: None,
            body_idle_timeout: std::time::Duration::from_secs(
                crate::config::DEFAULT_BODY_IDLE_TIMEOUT_SECS,
            ),
            upload_routing: lane::UploadRouting::default(),
            max_upload_body: None,
        }
    }

    /// The same state, limiting each caller's request rate as `config` says.
    pub fn with_rate_limits(mut self, config: &RateLimitConfig) -> Self {
        self.rate_limits = Some(Arc::new(RateLimiter::new(config)));
        self
    }

    /// The same state, enforcing `auth`.
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = Some(auth);
        self
    }
}

/// Every endpoint group in one router: what `wharf serve` runs.
pub fn router(state: AppState) -> Router {
    wrap(
        Router::new()
            .merge(base::routes())
            .merge(manifests::routes())
            .merge(blobs::routes())
            .merge(uploads::routes())
            .merge(tags::routes())
            .merge(referrers::routes())
            .merge(token::routes()),
        state,
    )
}

/// Wraps a group's canonical routes into a router that accepts real OCI paths.
fn wrap(routes: Router<AppState>, state: AppState) -> Router {
    let body_idle_timeout = state.body_idle_timeout;
    let rate_limits = state.rate_limits.clone();
    let inner = routes
        .fallback(|| async { not_found() })
        .method_not_allowed_fallback(|| async {
            OciError::new(
                ErrorCode::Unsupported,
                "method not allowed on this endpoint",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.rate_limits.clone(),
            ratelimit::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authz::authorize,
        ))
        .layer(axum::middleware::from_fn(middleware::common_headers))
        .with_state(state);
    Router::new()
        .fallback_service(paths::OciPaths::new(inner))
        .layer(axum::middleware::from_fn_with_state(
            body_idle_timeout,
            middleware::body_idle_timeout,
        ))
        // Before paths are parsed and callers authorized, so refused requests are limited too.
        .layer(axum::middleware::from_fn_with_state(
            rate_limits,
            ratelimit::limit_address,
        ))
        .layer(axum::middleware::from_fn(middleware::log_requests))
}

fn not_found() -> OciError {
    OciError::new(ErrorCode::Unsupported, "no such endpoint").with_status(StatusCode::NOT_FOUND)
}

impl From<StorageError> for OciError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Body(e) => {
                OciError::new(ErrorCode::BlobUploadInvalid, "request body failed").with_cause(e)
            }
            StorageError::Conflict => OciError::new(
                ErrorCode::BlobUploadInvalid,
                "the upload was changed by a concurrent request; retry",
            )
            .with_status(StatusCode::CONFLICT),
            StorageError::Throttled => OciError::new(
                ErrorCode::TooManyRequests,
                "the storage backend is busy; retry later",
            ),
            other => OciError::internal(other),
        }
    }
}

/// A header value from a string Wharf built itself (names, digests, numbers: always visible ASCII).
fn header(value: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(value.as_ref()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Parses `n` and `last` for listing endpoints.
fn page_params(n: Option<&str>, last: Option<&str>) -> Result<(usize, Option<String>), OciError> {
    let n = match n {
        None => DEFAULT_PAGE,
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| {
                OciError::new(ErrorCode::Unsupported, "n must be a non-negative integer")
                    .with_status(StatusCode::BAD_REQUEST)
            })?
            .min(MAX_PAGE),
    };
    Ok((n, last.map(str::to_owned)))
}

/// Listing page size when the client gives no `n`.
pub const DEFAULT_PAGE: usize = 1000;
/// Largest page served, whatever `n` asks for: bounds the work of one request.
pub const MAX_PAGE: usize = 10_000;
