//! The one place where table keys and object keys are spelled.
//!
//! The table layout is DynamoDB's single-table design (partition key `pk`, sort key `sk`); the
//! embedded store uses the very same keys, so a dump of one reads like the other.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | tag | `REPO#<name>` | `TAG#<tag>` |
//! | manifest | `REPO#<name>` | `MANIFEST#<digest>` |
//! | blob link | `REPO#<name>` | `BLOB#<digest>` |
//! | referrer | `REPO#<name>` | `REF#<subject>#<digest>` |
//! | pin (content an immutable tag holds) | `REPO#<name>` | `PIN#<digest>` |
//! | repository index | `REPOS` | `<name>` |
//! | upload session | `UPLOAD#<id>` | `UPLOAD` |
//! | identity policy | `POLICY` | `CURRENT` |
//! | garbage-collection record of a digest | `BLOBS` | `<digest>` |
//! | garbage-collection epoch (run counter) | `GC` | `EPOCH` |
//! | garbage-collection epoch shard (DynamoDB) | `GC#<shard, 2 hex digits>` | `EPOCH` |
//! | audit event | `AUDIT#<day since 1970>` | `<time ms, 20 digits>#<nonce>` |

use crate::oci::{Digest, RepoName, Tag};

/// A table key.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// A tag in a repository.
    Tag(&'a RepoName, &'a Tag),
    /// A manifest in a repository.
    Manifest(&'a RepoName, &'a Digest),
    /// A repository's link to a blob.
    Blob(&'a RepoName, &'a Digest),
    /// A referrer entry: (repository, subject, referrer).
    Referrer(&'a RepoName, &'a Digest, &'a Digest),
    /// The pin on a digest (manifest or blob link) that immutable tags hold in a repository.
    Pin(&'a RepoName, &'a Digest),
    /// A repository in the repository index.
    Repo(&'a RepoName),
    /// An upload session.
    Upload(&'a str),
    /// The identity policy document.
    Policy,
    /// The garbage-collection record of a digest (last link, hold).
    BlobActivity(&'a Digest),
    /// The garbage-collection epoch, bumped when a run starts (on DynamoDB: the run counter,
    /// written by garbage collection only).
    GcEpoch,
    /// One shard of DynamoDB's garbage-collection epoch, raised when a run starts; a link
    /// checks only its digest's shard, so no item is checked by every push. Each shard is a
    /// partition of its own.
    GcEpochShard(u8),
    /// An audit event: (time in Unix milliseconds, random nonce).
    Audit(u64, u64),
}

/// Milliseconds per audit partition: one partition per day keeps each small and lets a reader
/// ask only the days it wants.
pub const AUDIT_DAY_MS: u64 = 24 * 3600 * 1000;

/// Partition key of the audit events of day `day` (days since 1970).
pub fn audit_pk(day: u64) -> String {
    format!("AUDIT#{day}")
}

/// Partition of the repository index.
pub const REPOS_PK: &str = "REPOS";

/// Where a range read of repository names starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameStart {
    /// At this name, included.
    At(String),
    /// Just after this name.
    After(String),
}

/// The part of the repository index holding names that start with `prefix` and sort after
/// `last`: where to start and the exclusive end, or `None` when no such name can exist.
///
/// Repository names are ASCII from `[a-z0-9._/-]` (see `RepoName`), every byte below `~`, so
/// the names starting with `prefix` are exactly those in `[prefix, prefix + "~")`: one range
/// read, no filtering, on every backend.
pub fn repo_name_range(prefix: &str, last: Option<&str>) -> Option<(NameStart, String)> {
    let end = format!("{prefix}~");
    let start = match last {
        Some(last) if last >= end.as_str() => return None,
        Some(last) if last >= prefix => NameStart::After(last.to_owned()),
        _ => NameStart::At(prefix.to_owned()),
    };
    Some((start, end))
}

/// Partition of the garbage-collection records, one per digest. One partition, like the
/// repository index, so garbage collection lists them with a `Query`, not a table `Scan`.
pub const BLOBS_PK: &str = "BLOBS";

/// Sort-key prefix of blob links.
pub const BLOB_PREFIX: &str = "BLOB#";

/// Partition-key prefix of upload sessions.
pub const UPLOAD_PK_PREFIX: &str = "UPLOAD#";

/// Sort key of upload sessions.
pub const UPLOAD_SK: &str = "UPLOAD";

impl Key<'_> {
    /// Partition key.
    pub fn pk(&self) -> String {
        match self {
            Key::Tag(r, _)
            | Key::Manifest(r, _)
            | Key::Blob(r, _)
            | Key::Referrer(r, _, _)
            | Key::Pin(r, _) => repo_pk(r),
            Key::Repo(_) => REPOS_PK.to_owned(),
            Key::Upload(id) => format!("{UPLOAD_PK_PREFIX}{id}"),
            Key::Policy => "POLICY".to_owned(),
            Key::BlobActivity(_) => BLOBS_PK.to_owned(),
            Key::GcEpoch => "GC".to_owned(),
            Key::GcEpochShard(shard) => format!("GC#{shard:02x}"),
            Key::Audit(ms, _) => audit_pk(ms / AUDIT_DAY_MS),
        }
    }

    /// Sort key.
    pub fn sk(&self) -> String {
        match self {
            Key::Tag(_, t) => format!("{TAG_PREFIX}{t}"),
            Key::Manifest(_, d) => format!("{MANIFEST_PREFIX}{d}"),
            Key::Blob(_, d) => format!("{BLOB_PREFIX}{d}"),
            Key::Referrer(_, s, d) => format!("{}{d}", referrer_prefix(s)),
            Key::Pin(_, d) => format!("{PIN_PREFIX}{d}"),
            Key::Repo(r) => r.to_string(),
            Key::Upload(_) => UPLOAD_SK.to_owned(),
            Key::Policy => "CURRENT".to_owned(),
            Key::BlobActivity(d) => d.to_string(),
            Key::GcEpoch | Key::GcEpochShard(_) => "EPOCH".to_owned(),
            Key::Audit(ms, nonce) => format!("{ms:020}#{nonce:016x}"),
        }
    }
}

/// Sort-key prefix of tags.
pub const TAG_PREFIX: &str = "TAG#";
/// Sort-key prefix of manifests.
pub const MANIFEST_PREFIX: &str = "MANIFEST#";
/// Sort-key prefix of pins.
pub const PIN_PREFIX: &str = "PIN#";

/// Partition key of a repository.
pub fn repo_pk(repo: &RepoName) -> String {
    format!("REPO#{repo}")
}

/// Sort-key prefix of the referrers of `subject`.
pub fn referrer_prefix(subject: &Digest) -> String {
    format!("REF#{subject}#")
}

/// An object key in the blob store.
#[derive(Debug, Clone, Copy)]
pub enum ObjectKey<'a> {
    /// A complete, verified blob: `blobs/<alg>/<hex>`.
    Blob(&'a Digest),
    /// A staged upload as one local file: `uploads/<id>`.
    Upload(&'a str),
    /// Everything an object-store upload stages lives under `uploads/<id>/`.
    UploadPrefix(&'a str),
    /// The object an object-store multipart upload completes into: `uploads/<id>/object`.
    UploadObject(&'a str),
    /// The bytes of an object-store upload not yet cut into a part, staged by the append that
    /// ended at `offset`: `uploads/<id>/tail-<offset>-<nonce>` (zero-padded, so keys sort by
    /// offset). The random nonce keeps two racing appends at one offset from overwriting each
    /// other's tail.
    UploadTail(&'a str, u64, u64),
    /// Everything a located blob of object-store upload `id` keeps: `objects/<id>/`. Outside
    /// `uploads/`, so dropping an upload's staging never touches a blob it became.
    LocatedPrefix(&'a str),
    /// The object an object-store multipart upload completes into, and where its blob stays
    /// (the blob's key then holds a pointer to it, so finishing copies nothing):
    /// `objects/<id>/data`.
    Located(&'a str),
    /// Says which digest the located object of upload `id` was published as, written before
    /// the pointer, so garbage collection can tell an orphan from a blob with one request:
    /// `objects/<id>/of-sha256-<hex>`, and `objects/<id>/of-sha512-<base64url>` (unpadded):
    /// with a sha512 digest's 128 hex characters the key would be 179 characters long, and
    /// s3s-fs, an S3 server on a file system, names each object's metadata file after the
    /// base64 of its key, which must then fit a file name's 255 bytes ([`MAX_KEY_LEN`]).
    LocatedFor(&'a str, &'a Digest),
}

/// The longest object key Wharf writes. S3 allows 1024 bytes; an S3 server that keeps objects
/// as files may need a file name of about 4/3 of the key (s3s-fs: `.bucket-<b64>.object-<b64
/// key>.metadata.json`, at most 255 bytes), which keys of this length fit.
pub const MAX_KEY_LEN: usize = 158;

/// The digest as the located marker spells it: hex for sha256, unpadded base64url of its bytes
/// for sha512 (see [`ObjectKey::LocatedFor`]).
fn marker_encoding(d: &Digest) -> String {
    use base64::Engine;
    match d.algorithm() {
        crate::oci::Algorithm::Sha256 => d.hex().to_owned(),
        crate::oci::Algorithm::Sha512 => hex::decode(d.hex())
            .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
            .unwrap_or_default(),
    }
}

/// The digest a located marker's `<alg>-<encoding>` names ([`ObjectKey::LocatedFor`]).
pub fn parse_marker(alg_and_encoding: &str) -> Option<Digest> {
    use base64::Engine;
    let (alg, encoded) = alg_and_encoding.split_once('-')?;
    let hex = match alg {
        "sha512" => hex::encode(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .ok()?,
        ),
        _ => encoded.to_owned(),
    };
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

impl std::fmt::Display for ObjectKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectKey::Blob(d) => write!(f, "blobs/{}/{}", d.algorithm().as_str(), d.hex()),
            ObjectKey::Upload(id) => write!(f, "uploads/{id}"),
            ObjectKey::UploadPrefix(id) => write!(f, "uploads/{id}/"),
            ObjectKey::UploadObject(id) => write!(f, "uploads/{id}/object"),
            ObjectKey::UploadTail(id, offset, nonce) => {
                write!(f, "uploads/{id}/tail-{offset:020}-{nonce:016x}")
            }
            ObjectKey::LocatedPrefix(id) => write!(f, "objects/{id}/"),
            ObjectKey::Located(id) => write!(f, "objects/{id}/data"),
            ObjectKey::LocatedFor(id, d) => {
                write!(
                    f,
                    "objects/{id}/of-{}-{}",
                    d.algorithm().as_str(),
                    marker_encoding(d)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_range_holds_exactly_the_names_under_its_prefix() {
        let names = [
            "team", "team-b/x", "team/a", "team/a/b", "team/z9", "teamz", "u",
        ];
        let under = |prefix: &str, last: Option<&str>| -> Vec<&str> {
            let Some((start, end)) = repo_name_range(prefix, last) else {
                return Vec::new();
            };
            names
                .iter()
                .copied()
                .filter(|n| match &start {
                    NameStart::At(s) => *n >= s.as_str(),
                    NameStart::After(s) => *n > s.as_str(),
                })
                .filter(|n| *n < end.as_str())
                .collect()
        };
        assert_eq!(under("team/", None), ["team/a", "team/a/b", "team/z9"]);
        assert_eq!(under("team/", Some("team/a")), ["team/a/b", "team/z9"]);
        assert_eq!(under("team/", Some("a")), ["team/a", "team/a/b", "team/z9"]);
        assert_eq!(under("team/", Some("team/z9")), Vec::<&str>::new());
        assert_eq!(repo_name_range("team/", Some("u")), None);
        assert_eq!(
            under("team", None),
            ["team", "team-b/x", "team/a", "team/a/b", "team/z9", "teamz"]
        );
        for name in names {
            let rn = RepoName::parse(name).expect("name");
            assert!(rn.as_str().bytes().all(|b| b < b'~'), "{name}");
        }
    }

    #[test]
    fn keys_follow_the_single_table_layout() {
        let repo = RepoName::parse("a/b").expect("name");
        let tag = Tag::parse("v1").expect("tag");
        let d = crate::oci::Algorithm::Sha256.digest(b"");
        assert_eq!(Key::Tag(&repo, &tag).pk(), "REPO#a/b");
        assert_eq!(Key::Tag(&repo, &tag).sk(), "TAG#v1");
        assert_eq!(Key::Manifest(&repo, &d).sk(), format!("MANIFEST#{d}"));
        assert_eq!(Key::Referrer(&repo, &d, &d).sk(), format!("REF#{d}#{d}"));
        assert_eq!(Key::Pin(&repo, &d).pk(), "REPO#a/b");
        assert_eq!(Key::Pin(&repo, &d).sk(), format!("PIN#{d}"));
        assert_eq!(Key::Repo(&repo).pk(), "REPOS");
        assert_eq!(Key::Upload("ab12").pk(), "UPLOAD#ab12");
        assert_eq!(Key::BlobActivity(&d).pk(), "BLOBS");
        assert_eq!(Key::BlobActivity(&d).sk(), d.to_string());
        assert_eq!(Key::GcEpochShard(10).pk(), "GC#0a");
        assert_eq!(Key::GcEpochShard(10).sk(), "EPOCH");
        assert_eq!(
            ObjectKey::Blob(&d).to_string(),
            format!("blobs/sha256/{}", d.hex())
        );
        assert_eq!(
            ObjectKey::UploadObject("ab").to_string(),
            "uploads/ab/object"
        );
        assert_eq!(
            ObjectKey::UploadTail("ab", 42, 255).to_string(),
            "uploads/ab/tail-00000000000000000042-00000000000000ff"
        );
        assert_eq!(ObjectKey::Located("ab").to_string(), "objects/ab/data");
        assert_eq!(
            ObjectKey::LocatedFor("ab", &d).to_string(),
            format!("objects/ab/of-sha256-{}", d.hex())
        );
        let d512 = crate::oci::Algorithm::Sha512.digest(b"");
        let id = "0123456789abcdef0123456789abcdef";
        for (key, d) in [
            (ObjectKey::LocatedFor(id, &d), &d),
            (ObjectKey::LocatedFor(id, &d512), &d512),
        ] {
            let key = key.to_string();
            assert!(key.len() <= MAX_KEY_LEN, "{key}");
            let marker = key
                .strip_prefix(&format!("objects/{id}/of-"))
                .expect("prefix");
            assert_eq!(parse_marker(marker).as_ref(), Some(d), "{key}");
        }
        assert!(ObjectKey::Blob(&d512).to_string().len() <= MAX_KEY_LEN);
        assert_eq!(parse_marker("sha512-!!"), None);
        assert_eq!(parse_marker("sha512-AAAA"), None, "not 64 bytes");
        for k in [ObjectKey::Located("ab"), ObjectKey::LocatedFor("ab", &d)] {
            assert!(
                k.to_string()
                    .starts_with(&ObjectKey::LocatedPrefix("ab").to_string())
            );
        }
        assert!(
            ObjectKey::UploadTail("ab", 1, 2)
                .to_string()
                .starts_with(&ObjectKey::UploadPrefix("ab").to_string())
        );
    }
}
