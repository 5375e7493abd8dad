//! Which algorithms an upload session hashes with, and how a completing digest is checked
//! against them.
//!
//! The distribution spec (main branch, "Pushing a blob in chunks", end-4c): "When pushing a
//! blob with a digest algorithm other than `sha256`, the post request SHOULD include the
//! `digest-algorithm` parameter: `/v2/<name>/blobs/uploads/?digest-algorithm=<algorithm>` …
//! the algorithm the registry should use for the blob". So:
//! - with the parameter, the session hashes with that algorithm only;
//! - without it, with both (a client may still close with a `sha512:` digest, a SHOULD is not
//!   a MUST), so the algorithm can be chosen at the final `PUT` without reading a byte again;
//! - a monolithic `POST ?digest=` hashes with its digest's algorithm only.
//!
//! "If the client provided digest is invalid or uses an unsupported algorithm, the registry
//! SHOULD respond with a response code `400 Bad Request`" (spec, "Pushing blobs"): an unknown
//! `digest-algorithm`, and a digest whose algorithm is not the one the session was opened for,
//! are `400 DIGEST_INVALID`, refused before a byte of the request is read, the session left as
//! it was.
//!
//! Layer rule: parsing and checks only; no storage call.

use std::collections::HashMap;

use crate::oci::{Algorithm, Digest, DigestStream, ErrorCode, OciError};
use crate::storage::UploadSession;

/// The query parameter naming the algorithm of a session's blob (spec end-4c).
const DIGEST_ALGORITHM: &str = "digest-algorithm";

/// The `digest-algorithm` parameter of a `POST`, if given.
pub(super) fn hint(params: &HashMap<String, String>) -> Result<Option<Algorithm>, OciError> {
    params
        .get(DIGEST_ALGORITHM)
        .map(|name| {
            Algorithm::from_name(name).map_err(|e| {
                OciError::new(
                    ErrorCode::DigestInvalid,
                    format!("{DIGEST_ALGORITHM}: {e}; use sha256 or sha512"),
                )
            })
        })
        .transpose()
}

/// A digest whose algorithm the hint at `POST` excluded.
fn mismatch(digest: &Digest, hashed: &[Algorithm]) -> OciError {
    let names: Vec<&str> = hashed.iter().map(|a| a.as_str()).collect();
    OciError::new(
        ErrorCode::DigestInvalid,
        format!(
            "the upload was opened for {}, so it cannot be completed as {}",
            names.join(" and "),
            digest.algorithm().as_str()
        ),
    )
    .with_detail(serde_json::json!({ "digest": digest.to_string() }))
}

/// The hasher of a monolithic `POST ?digest=`: its digest's algorithm only. A `digest-algorithm`
/// naming another one contradicts it.
pub(super) fn for_monolithic(
    digest: &Digest,
    hint: Option<Algorithm>,
) -> Result<DigestStream, OciError> {
    match hint {
        Some(h) if h != digest.algorithm() => Err(mismatch(digest, &[h])),
        _ => Ok(DigestStream::new(Some(digest.algorithm()))),
    }
}

/// The algorithm of a session whose `POST` asked for a direct upload of `direct`: that digest's
/// (should the bytes come through the session after all), which a hint naming another
/// contradicts.
pub(super) fn with_direct(
    direct: Option<&Digest>,
    hint: Option<Algorithm>,
) -> Result<Option<Algorithm>, OciError> {
    match (direct, hint) {
        (Some(d), Some(h)) if h != d.algorithm() => Err(mismatch(d, &[h])),
        (Some(d), _) => Ok(Some(d.algorithm())),
        (None, h) => Ok(h),
    }
}

/// The session's hasher as the last request left it.
pub(super) fn restore(session: &UploadSession) -> Result<DigestStream, OciError> {
    DigestStream::restore(&session.hash_state)
        .ok_or_else(|| OciError::internal("corrupt hash state in upload session"))
}

/// Refuses, before anything is read or changed, a completing `digest` the session does not
/// hash with (its `POST` named another algorithm, or it predates sha512 uploads).
pub(super) fn check_completes(session: &UploadSession, digest: &Digest) -> Result<(), OciError> {
    let hasher = restore(session)?;
    if hasher.hashes(digest.algorithm()) {
        Ok(())
    } else {
        Err(mismatch(digest, &hasher.algorithms()))
    }
}

/// A completing `digest` sent before any byte (`POST` then one `PUT` with the blob) names the
/// algorithm in time: the session then hashes with that one only, sparing the other hash its
/// CPU (SHA-512 costs three to four times SHA-256 on a CPU with SHA extensions, see the
/// README).
pub(super) fn narrow(session: &mut UploadSession, digest: &Digest) {
    if session.offset == 0 {
        session.hash_state = DigestStream::new(Some(digest.algorithm())).save();
    }
}

/// The digest of the session's bytes in `digest`'s algorithm.
pub(super) fn actual(session: &UploadSession, digest: &Digest) -> Result<Digest, OciError> {
    let hasher = restore(session)?;
    hasher
        .digest(digest.algorithm())
        .ok_or_else(|| mismatch(digest, &hasher.algorithms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_hint_is_parsed_and_an_unknown_one_refused() {
        assert_eq!(hint(&params(&[])).ok(), Some(None));
        assert_eq!(
            hint(&params(&[(DIGEST_ALGORITHM, "sha512")])).ok(),
            Some(Some(Algorithm::Sha512))
        );
        for bad in ["md5", "", "SHA512", "sha512:"] {
            let e = hint(&params(&[(DIGEST_ALGORITHM, bad)])).expect_err(bad);
            assert_eq!(e.code(), ErrorCode::DigestInvalid);
        }
    }

    #[test]
    fn a_put_before_any_byte_hashes_only_its_digests_algorithm() {
        let mut session = UploadSession {
            id: "ab".into(),
            repo: crate::oci::RepoName::parse("a").expect("name"),
            offset: 0,
            hash_state: DigestStream::new(None).save(),
            staging: serde_json::Value::Null,
            created: 0,
            version: 0,
        };
        let d = Algorithm::Sha512.digest(b"x");
        narrow(&mut session, &d);
        assert_eq!(
            restore(&session).map(|h| h.algorithms()).ok(),
            Some(vec![Algorithm::Sha512])
        );
        // After bytes were hashed, both midstates stay: they are the only record of them.
        let mut both = DigestStream::new(None);
        both.update(b"x");
        session.offset = 1;
        session.hash_state = both.save();
        narrow(&mut session, &d);
        assert_eq!(
            restore(&session).map(|h| h.algorithms().len()).ok(),
            Some(2)
        );
    }

    #[test]
    fn a_monolithic_digest_contradicting_its_hint_is_refused() {
        let d = Algorithm::Sha512.digest(b"x");
        assert!(for_monolithic(&d, Some(Algorithm::Sha256)).is_err());
        let h = for_monolithic(&d, None).expect("no hint");
        assert_eq!(h.algorithms(), vec![Algorithm::Sha512]);
        assert!(for_monolithic(&d, Some(Algorithm::Sha512)).is_ok());
    }
}
