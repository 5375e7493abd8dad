//! Pins: an immutable tag holds its whole release, not only the manifest it points at.
//!
//! When a manifest is written under an immutable tag ([`super::TagGuard::Immutable`]), the store
//! records a *pin* (key [`super::key::Key::Pin`]) on every digest the release reaches in that
//! repository: the manifest itself, its config and layer blob links, the child manifests of an
//! index and, recursively, their own blobs and children. A pin names its holders, each a tag with
//! the digest it was pushed at ([`PinHolder`]). [`super::MetaStore::delete_manifest`] and
//! [`super::MetaStore::unlink_blob`] refuse, inside their own transaction, to remove a digest a
//! pin holds ([`DeleteError::Pinned`]); garbage collection marks from links and manifests, so it
//! never reclaims what cannot be unlinked.
//!
//! Pins are written before (DynamoDB) or with (redb) the tag, and are never removed by a push.
//! A pin whose holders no longer hold anything is *stale* and is dropped by the delete that meets
//! it ([`judge`]): a holder is live while its tag points at its digest, and also while its tag
//! does not exist but the pin was written less than [`PIN_SETTLE_MS`] ago (the tag's own write
//! may still be on its way). So a push that failed after writing its pins, or a tag that a policy
//! change made mutable and that was then moved or deleted, over-protects only until then.
//!
//! Layer rule: this module knows the OCI model and the `MetaStore` types, never a backend.

use std::collections::{BTreeSet, VecDeque};

use super::{ManifestRecord, ManifestWrite, PutManifestError, StorageError};
use crate::oci::{Digest, Tag, parse_manifest};

/// How long a pin whose tag does not exist yet still protects. It must outlast the gap between
/// a push writing its pins and writing its tag (a few storage calls, seconds, with retries) plus
/// the clock skew between instances; past it, a holder whose tag is missing is a leftover of a
/// failed push or of a tag deleted after a policy change, and its pin may go.
pub const PIN_SETTLE_MS: u64 = 10 * 60 * 1000;

/// Most digests (manifests and blobs) one immutable release may pin. Every digest costs a write
/// when the tag is pushed, so the bound keeps a push within a function's time limit and keeps one
/// crafted index (up to 4 MiB of child descriptors) from costing millions of writes. Real
/// multi-platform releases hold a few hundred.
pub const MAX_RELEASE_DIGESTS: usize = 4096;

/// A holder of a pin: immutable tag `tag`, pushed at manifest `root`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PinHolder {
    /// The immutable tag.
    pub tag: Tag,
    /// The manifest the tag was pushed at.
    pub root: Digest,
}

impl PinHolder {
    /// The stored form, `<tag>@<digest>` (a tag never contains `@`).
    pub fn encode(&self) -> String {
        format!("{}@{}", self.tag, self.root)
    }

    /// Reads [`PinHolder::encode`]'s form back.
    pub fn decode(raw: &str) -> Result<Self, StorageError> {
        let (tag, root) = raw
            .split_once('@')
            .ok_or_else(|| StorageError::backend(format!("corrupt pin holder {raw:?}")))?;
        Ok(PinHolder {
            tag: Tag::parse(tag).map_err(StorageError::backend)?,
            root: Digest::parse(root).map_err(StorageError::backend)?,
        })
    }
}

/// Why a delete was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// `digest` is part of the release immutable tag `tag` holds.
    #[error("{digest} is part of immutable tag {tag}")]
    Pinned {
        /// The digest the delete named.
        digest: Digest,
        /// A tag holding it.
        tag: Tag,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a pin means for a delete now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinVerdict {
    /// The pin protects the digest; this holder names why.
    Held(PinHolder),
    /// Nothing holds it any more: the pin may be removed (only if it was not written since).
    Stale,
}

/// Judges a pin written (last) at `touched_ms`, given each holder with the digest its tag points
/// at now (`None`: the tag does not exist).
pub fn judge(touched_ms: u64, now_ms: u64, holders: &[(PinHolder, Option<Digest>)]) -> PinVerdict {
    let settling = now_ms < touched_ms.saturating_add(PIN_SETTLE_MS);
    let live = holders.iter().find(|(h, current)| match current {
        Some(d) => *d == h.root,
        None => settling,
    });
    match live {
        Some((h, _)) => PinVerdict::Held(h.clone()),
        None => PinVerdict::Stale,
    }
}

/// Everything one immutable release reaches, found by walking its manifests. A backend drives
/// the walk: it asks [`Release::next_child`] for the next manifest to read and hands its record
/// to [`Release::visit`].
#[derive(Debug, Clone)]
pub struct Release {
    holder: PinHolder,
    /// References the write itself names (checked in the write's own transaction).
    direct: BTreeSet<Digest>,
    blobs: BTreeSet<Digest>,
    manifests: BTreeSet<Digest>,
    queue: VecDeque<Digest>,
}

impl Release {
    /// The release of `w` under `tag`: the manifest and what it names directly; children are
    /// added as they are visited.
    pub fn new(w: &ManifestWrite, tag: &Tag) -> Result<Self, PutManifestError> {
        let root = w.manifest.digest.clone();
        let direct: BTreeSet<Digest> = w.blobs.iter().chain(&w.manifests).cloned().collect();
        let mut manifests: BTreeSet<Digest> = w.manifests.iter().cloned().collect();
        manifests.insert(root.clone());
        let release = Release {
            holder: PinHolder {
                tag: tag.clone(),
                root,
            },
            direct,
            blobs: w.blobs.iter().cloned().collect(),
            queue: w.manifests.iter().cloned().collect(),
            manifests,
        };
        release.within_bound()?;
        Ok(release)
    }

    fn within_bound(&self) -> Result<(), PutManifestError> {
        if self.blobs.len() + self.manifests.len() > MAX_RELEASE_DIGESTS {
            return Err(PutManifestError::ReleaseTooLarge(MAX_RELEASE_DIGESTS));
        }
        Ok(())
    }

    /// The holder every pin of this release names.
    pub fn holder(&self) -> &PinHolder {
        &self.holder
    }

    /// The next child manifest to read and [`Release::visit`]; `None` when the walk is done.
    pub fn next_child(&mut self) -> Option<Digest> {
        self.queue.pop_front()
    }

    /// Adds what child manifest `record` references. A record that no longer parses (a parser
    /// grown stricter since its push) is kept as a leaf: its own pin still protects it.
    pub fn visit(&mut self, record: &ManifestRecord) -> Result<(), PutManifestError> {
        let parsed = match parse_manifest(Some(&record.media_type), &record.bytes) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(digest = %record.digest, error = %e, "a stored child manifest does not parse; pinned as a leaf");
                return Ok(());
            }
        };
        self.blobs.extend(parsed.blobs);
        for child in parsed.manifests {
            if self.manifests.insert(child.clone()) {
                self.queue.push_back(child);
            }
        }
        self.within_bound()
    }

    /// Every digest to pin: the manifests, then the blobs (a digest that is both is pinned once).
    pub fn digests(&self) -> Vec<Digest> {
        let mut all: BTreeSet<&Digest> = self.manifests.iter().collect();
        all.extend(&self.blobs);
        all.into_iter().cloned().collect()
    }

    /// Blobs reached only through child manifests: their links must still exist once pinned,
    /// which the write's own transaction does not check.
    pub fn indirect_blobs(&self) -> impl Iterator<Item = &Digest> {
        self.blobs.iter().filter(|d| !self.direct.contains(*d))
    }

    /// Manifests reached only through child manifests (see [`Release::indirect_blobs`]).
    pub fn indirect_manifests(&self) -> impl Iterator<Item = &Digest> {
        self.manifests
            .iter()
            .filter(|d| !self.direct.contains(*d) && **d != self.holder.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    fn holder(tag: &str, n: u8) -> PinHolder {
        PinHolder {
            tag: Tag::parse(tag).expect("tag"),
            root: Algorithm::Sha256.digest(&[n]),
        }
    }

    #[test]
    fn holders_round_trip_through_their_stored_form() {
        let h = holder("v1.2_rc-3", 1);
        assert_eq!(PinHolder::decode(&h.encode()).expect("decode"), h);
        assert!(PinHolder::decode("no-at-sign").is_err());
        assert!(PinHolder::decode("v1@sha256:short").is_err());
    }

    #[test]
    fn a_pin_holds_while_its_tag_points_at_its_root_or_is_still_being_written() {
        let (a, b) = (holder("v1", 1), holder("v2", 2));
        let t0 = 1_000_000;
        let later = t0 + PIN_SETTLE_MS;
        // The tag points at the root: held, however old the pin.
        let at_root = [(a.clone(), Some(a.root.clone()))];
        assert_eq!(judge(t0, later, &at_root), PinVerdict::Held(a.clone()));
        // The tag is missing: held while the push may still be writing it, stale after.
        let missing = [(a.clone(), None)];
        assert_eq!(judge(t0, later - 1, &missing), PinVerdict::Held(a.clone()));
        assert_eq!(judge(t0, later, &missing), PinVerdict::Stale);
        // The tag points elsewhere (it lost a race, or was made mutable and moved): stale now.
        let moved = [(a.clone(), Some(b.root.clone()))];
        assert_eq!(judge(t0, t0, &moved), PinVerdict::Stale);
        // One live holder is enough.
        let mixed = [(a, Some(b.root.clone())), (b.clone(), Some(b.root.clone()))];
        assert_eq!(judge(t0, later, &mixed), PinVerdict::Held(b));
    }

    fn write(blobs: Vec<Digest>, manifests: Vec<Digest>) -> ManifestWrite {
        let bytes = bytes::Bytes::from_static(b"{}");
        ManifestWrite {
            repo: crate::oci::RepoName::parse("a/b").expect("name"),
            manifest: ManifestRecord {
                digest: Algorithm::Sha256.digest(&bytes),
                media_type: crate::oci::media::OCI_INDEX.into(),
                bytes,
            },
            tag: None,
            blobs,
            manifests,
            referrer: None,
            pushed_ms: 0,
        }
    }

    fn image_manifest(layers: std::ops::Range<u32>) -> ManifestRecord {
        let d = |n: u32| Algorithm::Sha256.digest(&n.to_be_bytes()).to_string();
        let value = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(u32::MAX), "size": 1},
            "layers": layers.map(|n| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d(n), "size": 1
            })).collect::<Vec<_>>(),
        });
        let bytes = bytes::Bytes::from(serde_json::to_vec(&value).expect("json"));
        ManifestRecord {
            digest: Algorithm::Sha256.digest(&bytes),
            media_type: crate::oci::media::OCI_MANIFEST.into(),
            bytes,
        }
    }

    #[test]
    fn a_release_reaching_more_digests_than_it_may_pin_is_refused() {
        let tag = Tag::parse("v1").expect("tag");
        let many = |n: usize| -> Vec<Digest> {
            (0..n as u32)
                .map(|i| Algorithm::Sha256.digest(&i.to_le_bytes()))
                .collect()
        };
        // The manifest itself counts: MAX - 1 blobs fit, MAX do not.
        assert!(Release::new(&write(many(MAX_RELEASE_DIGESTS - 1), Vec::new()), &tag).is_ok());
        assert!(matches!(
            Release::new(&write(many(MAX_RELEASE_DIGESTS), Vec::new()), &tag),
            Err(PutManifestError::ReleaseTooLarge(MAX_RELEASE_DIGESTS))
        ));
        // Through children: an index of one child whose layers overflow the bound.
        let child = image_manifest(0..MAX_RELEASE_DIGESTS as u32);
        let mut release =
            Release::new(&write(Vec::new(), vec![child.digest.clone()]), &tag).expect("small");
        assert_eq!(release.next_child(), Some(child.digest.clone()));
        assert!(matches!(
            release.visit(&child),
            Err(PutManifestError::ReleaseTooLarge(_))
        ));
        // A child within the bound adds its blobs as indirect ones.
        let small = image_manifest(0..3);
        let mut release =
            Release::new(&write(Vec::new(), vec![small.digest.clone()]), &tag).expect("small");
        release.next_child();
        release.visit(&small).expect("visit");
        assert_eq!(
            release.indirect_blobs().count(),
            4,
            "config and three layers"
        );
        assert_eq!(release.digests().len(), 6, "index, child, config, layers");
        assert_eq!(release.next_child(), None);
    }
}
