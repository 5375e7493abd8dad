//! Direct uploads, Wharf's extension of the upload session for its own client (`wharf cp`):
//! the blob's bytes go straight to the object store through a presigned PUT bound to their
//! SHA-256, so no byte passes through the registry (ARCHITECTURE.md §6).
//!
//! 1. `POST /v2/<name>/blobs/uploads/` with [`DIRECT_DIGEST`] and [`DIRECT_SIZE`] opens a normal
//!    session (202, `Location`) and, when the blob store can presign, adds [`DIRECT_UPLOAD`]`: 1`
//!    and a JSON body [`crate::storage::DirectUpload`]: the method, URL and headers to send.
//! 2. The client sends the bytes there, with exactly the headers given (they are signed).
//! 3. `PUT <Location>?digest=<digest>` with an empty body: the registry asks the store for the
//!    SHA-256 it recorded for what this session uploaded (the client's word is never taken,
//!    nor the store's claim to have compared anything), makes the bytes the blob and links it,
//!    answering 201 as for any upload. Bytes whose recorded SHA-256 is not the digest's, or
//!    that have none, are deleted and the session ends with `DIGEST_INVALID`.
//!
//! A store that cannot presign, or cannot report the SHA-256 of what it stores, answers step 1
//! without [`DIRECT_UPLOAD`]; the client then pushes through the session as any client does.
//! So does a blob named by a `sha512:` digest: S3 records no SHA-512 checksum, so nothing the
//! store could report would prove its bytes, and such a blob always goes through the session
//! (chunked or streamed), where Wharf hashes every byte itself. The session is opened for
//! sha512 only, as if the POST had said `digest-algorithm=sha512`.
//!
//! Layer rule: request parsing and answers only; the store does the binding and the checks.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::oci::{Algorithm, Digest, ErrorCode, OciError};
use crate::storage::{BlobLink, DirectFinish, UploadSession};

/// Request header naming the digest of the blob to upload directly.
pub const DIRECT_DIGEST: HeaderName = HeaderName::from_static("wharf-direct-digest");
/// Request header giving its size in bytes.
pub const DIRECT_SIZE: HeaderName = HeaderName::from_static("wharf-direct-size");
/// Response header: `1` when the body holds a presigned upload request.
pub const DIRECT_UPLOAD: HeaderName = HeaderName::from_static("wharf-direct-upload");

fn bad(message: impl Into<String>) -> OciError {
    OciError::new(ErrorCode::BlobUploadInvalid, message)
}

/// The digest and size a POST asks a direct upload for, if it asks for one.
pub(super) fn asked(headers: &HeaderMap) -> Result<Option<(Digest, u64)>, OciError> {
    let Some(raw) = headers.get(&DIRECT_DIGEST) else {
        return Ok(None);
    };
    let digest = raw
        .to_str()
        .ok()
        .and_then(|v| Digest::parse(v).ok())
        .ok_or_else(|| OciError::new(ErrorCode::DigestInvalid, "invalid direct-upload digest"))?;
    let size = headers
        .get(&DIRECT_SIZE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| bad("a direct upload needs the blob's size (Wharf-Direct-Size)"))?;
    Ok(Some((digest, size)))
}

/// Answers a POST that asked for a direct upload on the new `session`.
pub(super) async fn open(
    state: &AppState,
    session: &UploadSession,
    digest: &Digest,
    size: u64,
    mut headers: HeaderMap,
) -> Result<Response, OciError> {
    if digest.algorithm() != Algorithm::Sha256 {
        tracing::debug!(repo = %session.repo, %digest, "no direct upload for a non-sha256 digest");
        return Ok((StatusCode::ACCEPTED, headers).into_response());
    }
    let Some(upload) = state.blobs.direct_upload(&session.id, digest, size).await? else {
        return Ok((StatusCode::ACCEPTED, headers).into_response());
    };
    let body = serde_json::to_vec(&upload).map_err(OciError::internal)?;
    headers.insert(DIRECT_UPLOAD, HeaderValue::from_static("1"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok((StatusCode::ACCEPTED, headers, body).into_response())
}

/// Completes a direct upload of `digest` on `session` when the store holds its bytes: the blob
/// is made visible and linked, and its size (as the store reports it) returned. `None` when
/// nothing was uploaded directly for that digest, which is always so for a digest that is not
/// sha256 (none is ever handed a presigned URL). Bytes the store does not report the digest's
/// SHA-256 for end the session with `DIGEST_INVALID`; they are gone by then.
pub(super) async fn finish(
    state: &AppState,
    session: &UploadSession,
    digest: &Digest,
) -> Result<Option<u64>, OciError> {
    if digest.algorithm() != Algorithm::Sha256 || *digest == Algorithm::Sha256.digest(b"") {
        return Ok(None);
    }
    let size = match state
        .blobs
        .finish_direct_upload(&session.id, digest)
        .await?
    {
        DirectFinish::Stored(size) => size,
        DirectFinish::Missing => return Ok(None),
        DirectFinish::Refused(why) => {
            state
                .blobs
                .abort_upload(&session.id, session.staging.clone())
                .await?;
            state.meta.delete_upload(&session.id).await?;
            tracing::warn!(repo = %session.repo, %digest, why, "direct upload refused");
            return Err(OciError::new(
                ErrorCode::DigestInvalid,
                "the uploaded content does not have the digest",
            )
            .with_detail(serde_json::json!({ "digest": digest.to_string() })));
        }
    };
    state
        .meta
        .link_blob(&session.repo, digest, BlobLink { size })
        .await?;
    Ok(Some(size))
}
