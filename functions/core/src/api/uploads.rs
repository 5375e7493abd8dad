//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic `?digest=`, cross-repo
//! `?mount=&from=`) and `PATCH/PUT/GET/DELETE /v2/<name>/blobs/uploads/<id>`.
//!
//! A session lives in the `MetaStore` with its committed offset, the hash midstates of the
//! bytes so far (sha256, sha512 or both, see [`hash`]) and the blob store's staging state, so it survives restarts and any process can
//! take the next chunk. A chunk is committed only once fully staged: a failed or interrupted
//! chunk leaves the session as it was. A blob becomes visible (and linked) only after its digest
//! matched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;

use super::{
    AppState, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, direct, header as hv, lane, limits,
};
use crate::auth::{Action, Caller};
use crate::oci::{Digest, DigestStream, ErrorCode, OciError, RepoName};
use crate::storage::{BlobLink, ByteStream, UploadSession};

mod hash;
mod locks;
pub(crate) use locks::SessionLocks;

/// `OCI-Chunk-Min-Length`: the chunk size the blob store cuts parts at, advertised so chunking
/// clients send whole parts.
pub const OCI_CHUNK_MIN_LENGTH: axum::http::HeaderName =
    axum::http::HeaderName::from_static("oci-chunk-min-length");

/// Canonical routes of the uploads group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/{name}/blobs/uploads/", post(start))
        .route(
            "/v2/{name}/blobs/uploads/{id}",
            get(status).patch(patch).put(put).delete(cancel),
        )
}

/// The uploads group as its own router.
pub fn router(state: AppState) -> Router {
    super::wrap(routes(), state)
}

/// What an upload lane serves (`wharf serve --only uploads`): the uploads group, plus `GET /v2/`
/// for health checks. Its session URLs always carry capabilities (with authentication on),
/// since clients reach it without their `Authorization` header.
pub fn lane_router(mut state: AppState) -> Router {
    state.upload_routing.capabilities = true;
    super::wrap(super::base::routes().merge(routes()), state)
}

fn repo_of(name: &str) -> Result<RepoName, OciError> {
    RepoName::parse(name).map_err(|e| OciError::new(ErrorCode::NameInvalid, e.to_string()))
}

fn upload_unknown() -> OciError {
    OciError::new(ErrorCode::BlobUploadUnknown, "upload session is unknown")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The session's URL: on the upload lane when one is configured, with a capability when the
/// lane needs one (see [`super::lane`]), renewed or not.
fn location(
    state: &AppState,
    session: &UploadSession,
    renewal: lane::Renewal<'_>,
) -> Result<String, OciError> {
    lane::session_url(
        &state.upload_routing,
        state.auth.as_deref(),
        session,
        renewal,
    )
    .map_err(|e| OciError::internal(format!("signing an upload capability: {e}")))
}

/// `Range: 0-<last byte>`; `0-0` before any byte, as distribution answers.
fn progress(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn session_headers(
    state: &AppState,
    session: &UploadSession,
    renewal: lane::Renewal<'_>,
) -> Result<HeaderMap, OciError> {
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, hv(location(state, session, renewal)?));
    h.insert(header::RANGE, hv(progress(session.offset)));
    h.insert(DOCKER_UPLOAD_UUID, hv(&session.id));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    if let Some(min) = limits::chunk_min_length(state) {
        h.insert(OCI_CHUNK_MIN_LENGTH, hv(min.to_string()));
    }
    Ok(h)
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, hv(format!("/v2/{repo}/blobs/{digest}")));
    h.insert(DOCKER_CONTENT_DIGEST, hv(digest.to_string()));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    (StatusCode::CREATED, h).into_response()
}

/// Opens a new staging area whose bytes `hasher` hashes; the session is not yet persisted.
async fn new_session(
    state: &AppState,
    repo: RepoName,
    hasher: DigestStream,
) -> Result<UploadSession, OciError> {
    let id = format!("{:032x}", rand::random::<u128>());
    let staging = state.blobs.start_upload(&id).await?;
    Ok(UploadSession {
        id,
        repo,
        offset: 0,
        hash_state: hasher.save(),
        staging,
        created: now(),
        version: 0,
    })
}

/// Loads session `id` of `repo`, then takes its lock and loads it again (a request that held
/// the lock may have changed it). The lock is taken only for a session that exists in the
/// repository the caller was authorized for, so nobody can queue on another repository's
/// session, and waited for at most [`locks::SESSION_LOCK_WAIT`].
async fn load_locked<'a>(
    state: &'a AppState,
    repo: &RepoName,
    id: &str,
) -> Result<(locks::SessionGuard<'a>, UploadSession), OciError> {
    load(state, repo, id).await?;
    let guard = state
        .upload_locks
        .lock(id, locks::SESSION_LOCK_WAIT)
        .await?;
    Ok((guard, load(state, repo, id).await?))
}

async fn load(state: &AppState, repo: &RepoName, id: &str) -> Result<UploadSession, OciError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(upload_unknown());
    }
    match state.meta.upload(id).await? {
        Some(s) if s.repo == *repo => Ok(s),
        _ => Err(upload_unknown()),
    }
}

/// Streams `body` onto the session's staged bytes, hashing as it goes. On success the session
/// (in memory) holds the new offset, midstate and staging state; on failure it is unchanged.
async fn append(
    state: &AppState,
    session: &mut UploadSession,
    body: Body,
) -> Result<u64, OciError> {
    let hasher = hash::restore(session)?;
    let shared = Arc::new(Mutex::new(hasher));
    let tap = shared.clone();
    let mut meter = limits::BodyMeter::new(state.max_upload_body);
    let over = meter.tripped();
    let stream: ByteStream = Box::pin(body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        meter.count(chunk.len())?;
        if let Ok(mut h) = tap.lock() {
            h.update(&chunk);
        }
        Ok(chunk)
    }));
    let appended = state
        .blobs
        .append_upload(&session.id, session.staging.clone(), session.offset, stream)
        .await;
    let (staging, written) = match appended {
        Ok(done) => done,
        Err(_) if over.load(std::sync::atomic::Ordering::Relaxed) => {
            return Err(limits::too_large(state.max_upload_body.unwrap_or_default()));
        }
        Err(e) => return Err(e.into()),
    };
    let hasher = shared
        .lock()
        .map_err(|_| OciError::internal("hash state lock poisoned"))?
        .clone();
    if session.offset.checked_add(written) != Some(hasher.len()) {
        return Err(OciError::internal(
            "staged byte count differs from hashed byte count",
        ));
    }
    session.offset = hasher.len();
    session.hash_state = hasher.save();
    session.staging = staging;
    session.version += 1;
    Ok(written)
}

/// Verifies the digest, makes the blob visible and links it. Consumes the staging area.
async fn finish(
    state: &AppState,
    session: &UploadSession,
    expected: &Digest,
) -> Result<(), OciError> {
    let actual = hash::actual(session, expected)?;
    if actual != *expected {
        state
            .blobs
            .abort_upload(&session.id, session.staging.clone())
            .await?;
        return Err(OciError::new(
            ErrorCode::DigestInvalid,
            format!("uploaded content has digest {actual}, not {expected}"),
        )
        .with_detail(serde_json::json!({ "digest": expected.to_string() })));
    }
    state
        .blobs
        .finish_upload(&session.id, session.staging.clone(), expected)
        .await?;
    state
        .meta
        .link_blob(
            &session.repo,
            expected,
            BlobLink {
                size: session.offset,
            },
        )
        .await?;
    tracing::info!(repo = %session.repo, digest = %expected, size = session.offset, "blob stored");
    Ok(())
}

/// The `digest` query parameter of a completing request.
fn digest_param(params: &HashMap<String, String>) -> Result<Digest, OciError> {
    let raw = params.get("digest").ok_or_else(|| {
        OciError::new(ErrorCode::DigestInvalid, "the digest parameter is required")
    })?;
    Digest::parse(raw).map_err(|e| OciError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Parses `Content-Range: <start>-<end>` (inclusive; a `bytes ` or `bytes=` prefix and a
/// `/<total>` suffix are tolerated).
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches([' ', '=']))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    // The session's offset after the chunk is `end + 1`: it must be a `u64` too, so no length
    // or offset computed from the range can wrap.
    (end >= start && end.checked_add(1).is_some()).then_some((start, end))
}

/// The number of bytes `start-end` (inclusive) covers; `None` when it is not a range.
fn range_len(start: u64, end: u64) -> Option<u64> {
    end.checked_sub(start)?.checked_add(1)
}

/// Checks a chunk's `Content-Range` against the session; returns the expected chunk length.
fn check_range(
    state: &AppState,
    headers: &HeaderMap,
    session: &UploadSession,
) -> Result<Option<u64>, OciError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let range = value.to_str().ok().and_then(parse_content_range);
    let len = range.and_then(|(start, end)| Some((start, range_len(start, end)?)));
    match len {
        Some((start, len)) if start == session.offset => {
            check_announced(state, headers, len)?;
            Ok(Some(len))
        }
        _ => Err(OciError::new(
            ErrorCode::BlobUploadInvalid,
            format!("chunk must start at byte {}", session.offset),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header(header::RANGE, hv(progress(session.offset)))
        .with_header(
            header::LOCATION,
            hv(location(state, session, lane::Renewal::Renew)?),
        )
        .with_header(DOCKER_UPLOAD_UUID, hv(&session.id))),
    }
}

/// Refuses, before a byte is read, a chunk whose `Content-Range` length disagrees with its
/// `Content-Length` or is over the body limit.
fn check_announced(state: &AppState, headers: &HeaderMap, len: u64) -> Result<(), OciError> {
    if let Some(limit) = state.max_upload_body
        && len > limit
    {
        return Err(limits::too_large(limit));
    }
    match content_length(headers) {
        Some(n) if n != len => Err(OciError::new(
            ErrorCode::SizeInvalid,
            format!("Content-Range announces {len} bytes, Content-Length {n}"),
        )),
        _ => Ok(()),
    }
}

fn check_written(expected: Option<u64>, written: u64) -> Result<(), OciError> {
    match expected {
        Some(n) if n != written => Err(OciError::new(
            ErrorCode::SizeInvalid,
            format!("Content-Range announced {n} bytes, body had {written}"),
        )),
        _ => Ok(()),
    }
}

async fn start(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let repo = repo_of(&name)?;
    limits::check_declared(&state, &headers)?;
    let hint = hash::hint(&params)?;
    if let Some(mount) = params.get("mount") {
        // The spec: a mount that fails "due to invalid repository or digest arguments" falls
        // back to the standard upload behaviour, a 202 session.
        let digest = Digest::parse(mount).ok();
        let from = params.get("from").and_then(|f| RepoName::parse(f).ok());
        let caller = caller.map(|Extension(c)| c).unwrap_or(Caller::Anonymous);
        // Mounting reads the source: without pull on it, fall back to a normal upload session.
        let from = from.filter(|f| caller.may(state.auth.as_deref(), f, Action::Pull));
        if let (Some(from), Some(digest)) = (from, digest)
            && let Some(link) = state.meta.blob_link(&from, &digest).await?
        {
            state.meta.link_blob(&repo, &digest, link).await?;
            tracing::info!(repo = %repo, from = %from, %digest, "blob mounted");
            return Ok(blob_created(&repo, &digest));
        }
    } else if params.contains_key("digest") {
        let digest = digest_param(&params)?;
        let hasher = hash::for_monolithic(&digest, hint)?;
        let mut session = new_session(&state, repo.clone(), hasher).await?;
        if let Err(e) = append(&state, &mut session, body).await {
            state
                .blobs
                .abort_upload(&session.id, session.staging.clone())
                .await?;
            return Err(e);
        }
        finish(&state, &session, &digest).await?;
        return Ok(blob_created(&repo, &digest));
    }
    let direct = direct::asked(&headers)?;
    let hint = hash::with_direct(direct.as_ref().map(|(d, _)| d), hint)?;
    let session = new_session(&state, repo, DigestStream::new(hint)).await?;
    state.meta.create_upload(&session).await?;
    let headers_out = session_headers(&state, &session, lane::Renewal::Renew)?;
    if let Some((digest, size)) = direct {
        return direct::open(&state, &session, &digest, size, headers_out).await;
    }
    Ok((StatusCode::ACCEPTED, headers_out).into_response())
}

async fn status(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, OciError> {
    let session = load(&state, &repo_of(&name)?, &id).await?;
    let keep = lane::Renewal::Keep(lane::capability_in(query.as_deref()));
    Ok((
        StatusCode::NO_CONTENT,
        session_headers(&state, &session, keep)?,
    )
        .into_response())
}

async fn patch(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let repo = repo_of(&name)?;
    limits::check_declared(&state, &headers)?;
    let (_guard, mut session) = load_locked(&state, &repo, &id).await?;
    let expected = check_range(&state, &headers, &session)?;
    let written = append(&state, &mut session, body).await?;
    check_written(expected, written)?;
    state.meta.update_upload(&session).await?;
    Ok((
        StatusCode::ACCEPTED,
        session_headers(&state, &session, lane::Renewal::Renew)?,
    )
        .into_response())
}

async fn put(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let repo = repo_of(&name)?;
    let digest = digest_param(&params)?;
    limits::check_declared(&state, &headers)?;
    let (_guard, mut session) = load_locked(&state, &repo, &id).await?;
    hash::check_completes(&session, &digest)?;
    hash::narrow(&mut session, &digest);
    let expected = check_range(&state, &headers, &session)?;
    if session.offset == 0
        && content_length(&headers).unwrap_or(0) == 0
        && let Some(size) = direct::finish(&state, &session, &digest).await?
    {
        state.meta.delete_upload(&session.id).await?;
        tracing::info!(repo = %repo, %digest, size, "blob stored by direct upload");
        return Ok(blob_created(&repo, &digest));
    }
    if content_length(&headers) != Some(0) {
        let written = append(&state, &mut session, body).await?;
        check_written(expected, written)?;
    }
    let result = finish(&state, &session, &digest).await;
    if result.is_ok() || matches!(&result, Err(e) if e.code() == ErrorCode::DigestInvalid) {
        state.meta.delete_upload(&session.id).await?;
    }
    result?;
    Ok(blob_created(&repo, &digest))
}

async fn cancel(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, OciError> {
    let repo = repo_of(&name)?;
    let (_guard, session) = load_locked(&state, &repo, &id).await?;
    state
        .blobs
        .abort_upload(&session.id, session.staging)
        .await?;
    state.meta.delete_upload(&session.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 5)));
        assert_eq!(parse_content_range("9-3"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(parse_content_range("-5"), None);
        assert_eq!(parse_content_range(""), None);
        // The chunk would end past the largest offset a session can hold.
        assert_eq!(parse_content_range("0-18446744073709551615"), None);
        assert_eq!(
            parse_content_range("0-18446744073709551614"),
            Some((0, u64::MAX - 1))
        );
        assert_eq!(parse_content_range("0-99999999999999999999"), None);
        assert_eq!(range_len(0, u64::MAX - 1), Some(u64::MAX));
        assert_eq!(range_len(5, 4), None);
    }
}
