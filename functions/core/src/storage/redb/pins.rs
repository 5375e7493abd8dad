//! Pins in the embedded store ([`crate::storage::pins`]): written inside the transaction of the
//! manifest write that pushes an immutable tag, checked inside the transaction of each delete.
//! redb has a single writer, so a pin and the delete it refuses never interleave.
//!
//! A pin's value is JSON: its holders (`<tag>@<digest>`, sorted) and when one was last added.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Table, decode_manifest, decode_tag, from_json, get_raw, json, put_raw, remove_raw};
use crate::oci::{Digest, RepoName, Tag};
use crate::storage::key::Key;
use crate::storage::pins::{DeleteError, PinHolder, PinVerdict, Release, judge};
use crate::storage::{ManifestWrite, PutManifestError, now_ms};

/// The stored form of a pin.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PinValue {
    holders: BTreeSet<String>,
    touched_ms: u64,
}

/// Pins everything `w` reaches under immutable tag `tag`, after checking that every manifest
/// and blob link of the release exists (the write's own references are checked by its caller).
pub(super) fn pin_release(
    t: &mut Table<'_>,
    w: &ManifestWrite,
    tag: &Tag,
) -> Result<(), PutManifestError> {
    let mut release = Release::new(w, tag)?;
    while let Some(child) = release.next_child() {
        let Some(raw) = get_raw(t, Key::Manifest(&w.repo, &child))? else {
            return Err(PutManifestError::MissingManifest(child));
        };
        let (record, _) = decode_manifest(&child, &raw)?;
        release.visit(&record)?;
    }
    for blob in release.indirect_blobs() {
        if get_raw(t, Key::Blob(&w.repo, blob))?.is_none() {
            return Err(PutManifestError::MissingBlob(blob.clone()));
        }
    }
    let holder = release.holder().encode();
    let now = now_ms();
    for digest in release.digests() {
        let key = Key::Pin(&w.repo, &digest);
        let mut value: PinValue = match get_raw(t, key)? {
            Some(raw) => from_json(&raw)?,
            None => PinValue::default(),
        };
        value.holders.insert(holder.clone());
        value.touched_ms = now;
        put_raw(t, key, &json(&value)?)?;
    }
    Ok(())
}

/// Refuses a delete of `digest` in `repo` while a pin holds it; drops a stale pin (the caller's
/// transaction then deletes on).
pub(super) fn check_unpinned(
    t: &mut Table<'_>,
    repo: &RepoName,
    digest: &Digest,
) -> Result<(), DeleteError> {
    let Some(raw) = get_raw(t, Key::Pin(repo, digest))? else {
        return Ok(());
    };
    let value: PinValue = from_json(&raw)?;
    let mut holders = Vec::with_capacity(value.holders.len());
    for raw in &value.holders {
        let holder = PinHolder::decode(raw)?;
        let current = get_raw(t, Key::Tag(repo, &holder.tag))?
            .map(|v| decode_tag(&v).map(|(d, _)| d))
            .transpose()?;
        holders.push((holder, current));
    }
    match judge(value.touched_ms, now_ms(), &holders) {
        PinVerdict::Held(h) => Err(DeleteError::Pinned {
            digest: digest.clone(),
            tag: h.tag,
        }),
        PinVerdict::Stale => {
            remove_raw(t, Key::Pin(repo, digest))?;
            Ok(())
        }
    }
}
