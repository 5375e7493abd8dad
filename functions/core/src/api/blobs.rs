//! `GET/HEAD/DELETE /v2/<name>/blobs/<digest>`.
//!
//! A repository serves a blob only through its own link: a digest pushed to another repository
//! is `BLOB_UNKNOWN` here, whatever the blob store holds.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};

use super::{AppState, DOCKER_CONTENT_DIGEST, header as hv};
use crate::oci::{Digest, ErrorCode, OciError, RepoName};
use crate::storage::{BlobLink, ByteRange};

/// The canonical path of a blob.
const BLOB_PATH: &str = "/v2/{name}/blobs/{digest}";

/// Canonical routes of the blobs group.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route(BLOB_PATH, get(get_blob).head(head_blob).delete(delete_blob))
}

/// The blobs group as its own router.
pub fn router(state: AppState) -> Router {
    super::wrap(routes(), state)
}

/// The read half (`GET`/`HEAD`): what a function with read-only storage rights serves. Other
/// methods are answered `405 UNSUPPORTED`.
pub fn pull_router(state: AppState) -> Router {
    super::wrap(
        Router::new().route(BLOB_PATH, get(get_blob).head(head_blob)),
        state,
    )
}

/// The write half (`DELETE`). Other methods are answered `405 UNSUPPORTED`.
pub fn delete_router(state: AppState) -> Router {
    super::wrap(Router::new().route(BLOB_PATH, delete(delete_blob)), state)
}

/// Parses `{name}` and a `{digest}` path parameter; an invalid digest is `DIGEST_INVALID` (400),
/// as the referrers endpoint must answer (spec: "a `<digest>` with an invalid syntax, a 400").
pub(super) fn parse_path(name: &str, digest: &str) -> Result<(RepoName, Digest), OciError> {
    let repo =
        RepoName::parse(name).map_err(|e| OciError::new(ErrorCode::NameInvalid, e.to_string()))?;
    let digest = Digest::parse(digest)
        .map_err(|e| OciError::new(ErrorCode::DigestInvalid, e.to_string()))?;
    Ok((repo, digest))
}

/// [`parse_path`] for `GET`/`HEAD`/`DELETE` of a blob, whose only failure answer in the spec's
/// endpoint table is 404 (end-2, end-10): a string that is not a digest names no blob.
fn parse_blob_path(name: &str, digest: &str) -> Result<(RepoName, Digest), OciError> {
    parse_path(name, digest).map_err(|e| match e.code() {
        ErrorCode::DigestInvalid => OciError::new(
            ErrorCode::BlobUnknown,
            "blob unknown: the path does not name a valid digest",
        ),
        _ => e,
    })
}

fn unknown(digest: &Digest) -> OciError {
    OciError::new(
        ErrorCode::BlobUnknown,
        format!("blob {digest} is unknown to this repository"),
    )
    .with_detail(serde_json::json!({ "digest": digest.to_string() }))
}

async fn link(state: &AppState, repo: &RepoName, digest: &Digest) -> Result<BlobLink, OciError> {
    state
        .meta
        .blob_link(repo, digest)
        .await?
        .ok_or_else(|| unknown(digest))
}

fn blob_headers(digest: &Digest, len: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, hv(len.to_string()));
    h.insert(DOCKER_CONTENT_DIGEST, hv(digest.to_string()));
    h.insert(header::ACCEPT_RANGES, hv("bytes"));
    h.insert(header::ETAG, hv(format!("\"{digest}\"")));
    h
}

async fn head_blob(
    State(state): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
) -> Result<Response, OciError> {
    let (repo, digest) = parse_blob_path(&name, &digest)?;
    let link = link(&state, &repo, &digest).await?;
    Ok((blob_headers(&digest, link.size), Body::empty()).into_response())
}

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole blob.
    Whole,
    /// One satisfiable range.
    Part(ByteRange),
    /// A syntactically valid range that lies outside the blob: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (multiple ranges and other units are ignored, as RFC 9110
/// allows, and the whole blob is sent).
pub fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else {
            return RangeRequest::Whole;
        };
        if suffix == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        ByteRange {
            start: size.saturating_sub(suffix),
            end: size - 1,
        }
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return RangeRequest::Whole;
        };
        let end = if last.is_empty() {
            u64::MAX
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end,
                _ => return RangeRequest::Whole,
            }
        };
        if start >= size {
            return RangeRequest::Unsatisfiable;
        }
        ByteRange {
            start,
            end: end.min(size - 1),
        }
    };
    RangeRequest::Part(range)
}

async fn get_blob(
    State(state): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, OciError> {
    let (repo, digest) = parse_blob_path(&name, &digest)?;
    let link = link(&state, &repo, &digest).await?;
    if let Some(url) = state.blobs.redirect_url(&digest).await? {
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, hv(url));
        h.insert(DOCKER_CONTENT_DIGEST, hv(digest.to_string()));
        return Ok((StatusCode::TEMPORARY_REDIRECT, h).into_response());
    }
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        link.size,
    );
    let part = match range {
        RangeRequest::Whole => None,
        RangeRequest::Part(r) => Some(r),
        RangeRequest::Unsatisfiable => {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_RANGE, hv(format!("bytes */{}", link.size)));
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
        }
    };
    let read =
        state.blobs.get(&digest, part).await?.ok_or_else(|| {
            unknown(&digest).with_cause("linked blob is missing from the blob store")
        })?;
    match part {
        None => Ok((
            blob_headers(&digest, read.size),
            Body::from_stream(read.body),
        )
            .into_response()),
        Some(r) => {
            let mut h = blob_headers(&digest, r.len());
            h.insert(
                header::CONTENT_RANGE,
                hv(format!("bytes {}-{}/{}", r.start, r.end, read.size)),
            );
            Ok((StatusCode::PARTIAL_CONTENT, h, Body::from_stream(read.body)).into_response())
        }
    }
}

async fn delete_blob(
    State(state): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
) -> Result<Response, OciError> {
    let (repo, digest) = parse_blob_path(&name, &digest)?;
    let unlinked = state
        .meta
        .unlink_blob(&repo, &digest)
        .await
        .map_err(|e| super::manifests::pinned_denied(&repo, "blob", e))?;
    if unlinked {
        tracing::info!(repo = %repo, %digest, "blob link deleted");
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(unknown(&digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Part(ByteRange { start, end })
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), part(5, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), part(0, 9));
        assert_eq!(
            parse_range(Some("bytes=10-"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=-0"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), RangeRequest::Whole);
    }
}
