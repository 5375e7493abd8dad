//! `GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Router};

use super::{AppState, DOCKER_CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG, header as hv};
use crate::auth::Caller;
use crate::oci::{
    Algorithm, ErrorCode, MAX_MANIFEST_BYTES, OciError, Reference, RepoName, parse_manifest,
    too_large,
};
use crate::oci::{Digest, Tag};
use crate::storage::audit::{AuditAction, AuditEvent};
use crate::storage::{
    DeleteError, Deleted, ManifestRecord, ManifestWrite, Page, PutManifestError, ReferrerEntry,
    TagGuard,
};

/// The canonical path of a manifest.
const MANIFEST_PATH: &str = "/v2/{name}/manifests/{reference}";

/// Canonical routes of the manifests group.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        MANIFEST_PATH,
        get(get_manifest)
            .head(head_manifest)
            .put(put_manifest)
            .delete(delete_manifest),
    )
}

/// The manifests group as its own router.
pub fn router(state: AppState) -> Router {
    super::wrap(routes(), state)
}

/// The read half (`GET`/`HEAD`): what a function with read-only storage rights serves. Other
/// methods are answered `405 UNSUPPORTED`.
pub fn pull_router(state: AppState) -> Router {
    super::wrap(
        Router::new().route(MANIFEST_PATH, get(get_manifest).head(head_manifest)),
        state,
    )
}

/// The write half (`PUT`/`DELETE`). Other methods are answered `405 UNSUPPORTED`.
pub fn push_router(state: AppState) -> Router {
    super::wrap(
        Router::new().route(MANIFEST_PATH, put(put_manifest).delete(delete_manifest)),
        state,
    )
}

/// What a request does with its `{reference}`: the spec answers an invalid one differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefUse {
    /// `GET`/`HEAD`: the spec's only failure answer for a manifest read is 404 (endpoint end-3),
    /// and a reference that is neither a tag nor a digest names no manifest.
    Read,
    /// `PUT`/`DELETE`: an invalid reference is the client's error, answered 400 with the code
    /// of what it tried to be (`DIGEST_INVALID` for anything with a colon, else `TAG_INVALID`).
    Write,
}

/// Parses the `{name}` and `{reference}` path parameters. An invalid name is `NAME_INVALID`
/// for every method (`api::paths` refuses most before routing).
pub(super) fn parse_path(
    name: &str,
    reference: &str,
    how: RefUse,
) -> Result<(RepoName, Reference), OciError> {
    let repo =
        RepoName::parse(name).map_err(|e| OciError::new(ErrorCode::NameInvalid, e.to_string()))?;
    let reference = Reference::parse(reference).map_err(|e| match (how, &e) {
        (RefUse::Read, _) => OciError::new(
            ErrorCode::ManifestUnknown,
            format!("manifest unknown: the reference is not a valid tag or digest ({e})"),
        ),
        (RefUse::Write, crate::oci::NameError::Digest(_)) => {
            OciError::new(ErrorCode::DigestInvalid, e.to_string())
        }
        (RefUse::Write, _) => OciError::new(ErrorCode::TagInvalid, e.to_string()),
    })?;
    Ok((repo, reference))
}

fn unknown(reference: &Reference) -> OciError {
    OciError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is unknown"),
    )
}

async fn resolve(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
) -> Result<ManifestRecord, OciError> {
    let digest = match reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(t) => state
            .meta
            .tag(repo, t)
            .await?
            .ok_or_else(|| unknown(reference))?,
    };
    state
        .meta
        .manifest(repo, &digest)
        .await?
        .ok_or_else(|| unknown(reference))
}

fn manifest_headers(m: &ManifestRecord) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert(header::CONTENT_LENGTH, hv(m.bytes.len().to_string()));
    h.insert(DOCKER_CONTENT_DIGEST, hv(m.digest.to_string()));
    h.insert(header::ETAG, hv(format!("\"{}\"", m.digest)));
    h
}

async fn get_manifest(
    State(state): State<AppState>,
    Path((name, reference)): Path<(String, String)>,
) -> Result<Response, OciError> {
    let (repo, reference) = parse_path(&name, &reference, RefUse::Read)?;
    let m = resolve(&state, &repo, &reference).await?;
    Ok((manifest_headers(&m), Body::from(m.bytes)).into_response())
}

async fn head_manifest(
    State(state): State<AppState>,
    Path((name, reference)): Path<(String, String)>,
) -> Result<Response, OciError> {
    let (repo, reference) = parse_path(&name, &reference, RefUse::Read)?;
    let m = resolve(&state, &repo, &reference).await?;
    Ok((manifest_headers(&m), Body::empty()).into_response())
}

/// Most tags one `PUT …/manifests/<digest>?tag=…` may apply. The spec's tag parameter
/// ("Pushing Manifests", distribution-spec main) asks a registry to take at least 10 per request
/// and lets it answer `414` past its limit; each tag is one guarded write, so the bound keeps a
/// push inside a function's time limit.
pub const MAX_TAGS_PER_PUSH: usize = 64;

/// The `tag` query parameters of a push by digest, validated and de-duplicated in order. A
/// push by tag takes none: its tag is the path's.
fn tag_params(params: &[(String, String)], reference: &Reference) -> Result<Vec<Tag>, OciError> {
    let raw: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.as_str())
        .collect();
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if matches!(reference, Reference::Tag(_)) {
        return Err(OciError::new(
            ErrorCode::TagInvalid,
            "tag parameters are accepted only on a push by digest",
        ));
    }
    if raw.len() > MAX_TAGS_PER_PUSH {
        return Err(OciError::new(
            ErrorCode::TagInvalid,
            format!("at most {MAX_TAGS_PER_PUSH} tag parameters per push"),
        )
        .with_status(StatusCode::URI_TOO_LONG));
    }
    let mut tags: Vec<Tag> = Vec::with_capacity(raw.len());
    for value in raw {
        let tag = Tag::parse(value).map_err(|e| {
            OciError::new(ErrorCode::TagInvalid, format!("tag parameter: {e}"))
                .with_detail(serde_json::json!({ "tag": value }))
        })?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

async fn put_manifest(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((name, reference)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let (repo, reference) = parse_path(&name, &reference, RefUse::Write)?;
    let extra_tags = tag_params(&params, &reference)?;
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|l| l > MAX_MANIFEST_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| match std::error::Error::source(&e) {
            Some(s) if s.is::<http_body_util::LengthLimitError>() => too_large(),
            _ => OciError::new(
                ErrorCode::ManifestInvalid,
                "failed to read the manifest body",
            )
            .with_cause(e),
        })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = parse_manifest(content_type, &bytes)?;
    let algorithm = match &reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let digest = algorithm.digest(&bytes);
    if let Reference::Digest(expected) = &reference
        && *expected != digest
    {
        return Err(OciError::new(
            ErrorCode::DigestInvalid,
            format!("manifest digest is {digest}, not {expected}"),
        ));
    }
    let size = bytes.len() as u64;
    let referrer = parsed.referrer.map(|r| {
        let entry = ReferrerEntry {
            media_type: parsed.media_type.clone(),
            digest: digest.clone(),
            size,
            artifact_type: r.artifact_type,
            annotations: r.annotations,
        };
        (r.subject, entry)
    });
    let subject = referrer.as_ref().map(|(s, _)| s.clone());
    let by_digest = matches!(reference, Reference::Digest(_));
    let tags: Vec<Option<Tag>> = match reference {
        Reference::Tag(t) => vec![Some(t)],
        Reference::Digest(_) if extra_tags.is_empty() => vec![None],
        Reference::Digest(_) => extra_tags.into_iter().map(Some).collect(),
    };
    // An immutable tag that already points elsewhere refuses the whole push before anything
    // is written; the store's guard still decides a race with another pusher.
    for tag in tags.iter().flatten() {
        if is_immutable(&state, &repo, tag)
            && let Some(current) = state.meta.tag(&repo, tag).await?
            && current != digest
        {
            return Err(immutable_denied(
                &repo,
                tag.as_str(),
                &format!("it points at {current} and cannot be moved; push a new tag"),
            ));
        }
    }
    let write = ManifestWrite {
        repo: repo.clone(),
        manifest: ManifestRecord {
            digest: digest.clone(),
            media_type: parsed.media_type,
            bytes,
        },
        tag: None,
        blobs: parsed.blobs,
        manifests: parsed.manifests,
        referrer,
        pushed_ms: crate::storage::now_ms(),
    };
    let mut h = HeaderMap::new();
    for tag in tags {
        let write = ManifestWrite {
            tag: tag.clone(),
            ..write.clone()
        };
        store_manifest(&state, caller.as_deref(), write).await?;
        if let Some(tag) = tag.as_ref().filter(|_| by_digest) {
            h.append(OCI_TAG, hv(tag.as_str()));
        }
    }
    tracing::info!(repo = %repo, %digest, "manifest stored");
    h.insert(
        header::LOCATION,
        hv(format!("/v2/{repo}/manifests/{digest}")),
    );
    h.insert(DOCKER_CONTENT_DIGEST, hv(digest.to_string()));
    if let Some(subject) = subject {
        h.insert(OCI_SUBJECT, hv(subject.to_string()));
    }
    Ok((StatusCode::CREATED, h).into_response())
}

/// One guarded manifest write (the manifest and at most one tag) with its audit event.
async fn store_manifest(
    state: &AppState,
    caller: Option<&Caller>,
    write: ManifestWrite,
) -> Result<(), OciError> {
    let repo = write.repo.clone();
    let digest = write.manifest.digest.clone();
    let guard = match &write.tag {
        Some(tag) if is_immutable(state, &repo, tag) => TagGuard::Immutable,
        _ => TagGuard::Mutable,
    };
    let tag = write.tag.clone();
    // For the audit trail only: whether this push moves the tag, and from where.
    let previous = match &tag {
        Some(t) => state.meta.tag(&repo, t).await?.filter(|d| *d != digest),
        None => None,
    };
    let action = if previous.is_some() {
        AuditAction::TagMove
    } else {
        AuditAction::Push
    };
    let event = audit_event(
        caller,
        action,
        &repo,
        Some(digest.clone()),
        tag.as_ref().map(|t| t.to_string()),
        previous,
    );
    state
        .meta
        .put_manifest_guarded(write, guard, Some(&event))
        .await
        .map_err(|e| match e {
            PutManifestError::MissingBlob(d) => OciError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("manifest references blob {d}, which is not in the repository"),
            )
            .with_detail(serde_json::json!({ "digest": d.to_string() })),
            PutManifestError::MissingManifest(d) => OciError::new(
                ErrorCode::ManifestUnknown,
                format!("index references manifest {d}, which is not in the repository"),
            )
            .with_status(StatusCode::BAD_REQUEST)
            .with_detail(serde_json::json!({ "digest": d.to_string() })),
            PutManifestError::TagImmutable(current) => immutable_denied(
                &repo,
                tag.as_ref().map_or("", |t| t.as_str()),
                &format!("it points at {current} and cannot be moved; push a new tag"),
            ),
            PutManifestError::ReleaseTooLarge(limit) => OciError::new(
                ErrorCode::ManifestInvalid,
                format!(
                    "an immutable tag may hold at most {limit} manifests and blobs; this release reaches more"
                ),
            ),
            PutManifestError::Storage(e) => e.into(),
        })
}

async fn delete_manifest(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((name, reference)): Path<(String, String)>,
) -> Result<Response, OciError> {
    let (repo, reference) = parse_path(&name, &reference, RefUse::Write)?;
    check_deletable(&state, &repo, &reference).await?;
    let event = match &reference {
        Reference::Digest(d) => audit_event(
            caller.as_deref(),
            AuditAction::ManifestDelete,
            &repo,
            Some(d.clone()),
            None,
            None,
        ),
        Reference::Tag(t) => {
            let was = state.meta.tag(&repo, t).await?;
            audit_event(
                caller.as_deref(),
                AuditAction::TagDelete,
                &repo,
                was,
                Some(t.to_string()),
                None,
            )
        }
    };
    let deleted = match &reference {
        Reference::Digest(d) => state
            .meta
            .delete_manifest(&repo, d)
            .await
            .map_err(|e| pinned_denied(&repo, "manifest", e))?,
        Reference::Tag(t) => state.meta.delete_tag(&repo, t).await?,
    };
    match deleted {
        Deleted::Yes => {
            tracing::info!(repo = %repo, %reference, "manifest reference deleted");
            record(&state, &event).await;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Deleted::NotFound => Err(unknown(&reference)),
    }
}

/// True when the policy makes `tag` in `repo` immutable. Immutability is part of the `[auth]`
/// policy: in development mode (no `[auth]`) every tag is mutable.
fn is_immutable(state: &AppState, repo: &RepoName, tag: &Tag) -> bool {
    state
        .auth
        .as_ref()
        .is_some_and(|a| a.policy().is_immutable(repo, tag.as_str()))
}

/// The `DENIED` answer for an immutable tag.
fn immutable_denied(repo: &RepoName, tag: &str, why: &str) -> OciError {
    OciError::new(
        ErrorCode::Denied,
        format!("tag {tag:?} of {repo} is immutable (repository policy): {why}"),
    )
    .with_detail(serde_json::json!({ "tag": tag }))
}

/// The answer to a delete the store refused: `DENIED` naming the immutable tag that holds the
/// content (`what` is "manifest" or "blob").
pub(super) fn pinned_denied(repo: &RepoName, what: &str, e: DeleteError) -> OciError {
    match e {
        DeleteError::Pinned { digest, tag } => OciError::new(
            ErrorCode::Denied,
            format!(
                "{what} {digest} is part of immutable tag {tag} of {repo} (repository policy); it cannot be deleted"
            ),
        )
        .with_detail(serde_json::json!({ "tag": tag.as_str(), "digest": digest.to_string() })),
        DeleteError::Storage(e) => e.into(),
    }
}

/// Refuses deleting an immutable tag, or a manifest that an immutable tag points at. Immutable
/// tags are never deleted, so the refusal needs no transaction. It answers early; the store
/// decides in the delete's own transaction, where the pins an immutable push wrote refuse the
/// delete of anything its release reaches (`storage::pins`).
async fn check_deletable(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
) -> Result<(), OciError> {
    let Some(auth) = &state.auth else {
        return Ok(());
    };
    if auth.policy().immutable.is_empty() {
        return Ok(());
    }
    match reference {
        Reference::Tag(t) if is_immutable(state, repo, t) => {
            if state.meta.tag(repo, t).await?.is_some() {
                return Err(immutable_denied(repo, t.as_str(), "it cannot be deleted"));
            }
            Ok(())
        }
        Reference::Tag(_) => Ok(()),
        Reference::Digest(d) => {
            if let Some(t) = immutable_tag_on(state, repo, d).await? {
                return Err(immutable_denied(
                    repo,
                    t.as_str(),
                    &format!("it points at {d}, which therefore cannot be deleted"),
                ));
            }
            Ok(())
        }
    }
}

/// An immutable tag pointing at `digest`, if any.
async fn immutable_tag_on(
    state: &AppState,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<Tag>, OciError> {
    let mut last = None;
    loop {
        let page = Page { last, n: 1000 };
        let records = state.meta.list_tag_records(repo, &page).await?;
        let done = records.len() < page.n;
        last = records.last().map(|r| r.tag.to_string());
        if let Some(r) = records
            .into_iter()
            .find(|r| r.digest == *digest && is_immutable(state, repo, &r.tag))
        {
            return Ok(Some(r.tag));
        }
        if done {
            return Ok(None);
        }
    }
}

/// An audit event by `caller`, now. The caller is named by OIDC issuer and subject only: no
/// token, no other claim.
fn audit_event(
    caller: Option<&Caller>,
    action: AuditAction,
    repo: &RepoName,
    digest: Option<Digest>,
    tag: Option<String>,
    previous: Option<Digest>,
) -> AuditEvent {
    let (issuer, subject) = match caller {
        Some(Caller::Token(claims)) => (claims.idp.clone(), Some(claims.sub.clone())),
        _ => (None, None),
    };
    AuditEvent {
        time_ms: crate::storage::now_ms(),
        action,
        repo: repo.clone(),
        digest,
        tag,
        previous,
        issuer,
        subject,
    }
}

/// Appends to the audit trail. The change is already committed, so a failure here is logged
/// as an error rather than turned into a failed request the client would retry.
async fn record(state: &AppState, event: &AuditEvent) {
    if let Err(e) = state.meta.record_audit(event).await {
        tracing::error!(error = %e, repo = %event.repo, action = ?event.action, "could not record an audit event");
    }
}
