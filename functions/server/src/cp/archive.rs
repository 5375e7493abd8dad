//! Unpacking a `docker save` archive without trusting it.
//!
//! An archive is data from anywhere, and `wharf cp` uploads what it unpacks: an entry that is a
//! symbolic or hard link to `/home/me/.ssh/id_ed25519` (or to `../../secret`) would otherwise be
//! read through and pushed to the registry. So nothing from the archive is ever created on disk
//! as a link, and nothing but regular files and directories is created at all:
//!
//! - an entry path must be relative and free of `..` (a path is never taken as given);
//! - a symbolic link (its target resolved against the link's own directory) or a hard link (its
//!   target named from the archive's root) must name, after following further links of the
//!   archive, a regular file of the same archive; it is then made a hard link to that file
//!   inside the unpack directory. `docker save` itself writes `<id>/layer.tar ->
//!   ../<other-id>/layer.tar` links for layers an archive holds twice (moby/moby#24003), and
//!   skopeo's docker-archive writer links every layer, so such links must keep working;
//! - any other link, and any device, FIFO or other special entry, refuses the whole archive
//!   with a message naming the entry.
//!
//! Layer rule: this module reads the archive and writes only under the directory it is given,
//! which must be new and empty (the caller's scratch directory).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// How many links of the archive one path may go through before it must reach a file: more
/// than any real archive needs, few enough to end a cycle at once.
const MAX_LINK_HOPS: usize = 8;

/// Why an archive is refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry path that is absolute or climbs with `..`.
    #[error("refusing the archive: entry {entry:?} is not a plain relative path inside it")]
    UnsafePath {
        /// The entry's path as the archive spells it.
        entry: PathBuf,
    },
    /// A link whose target is absolute, climbs out of the archive, or is not one of its files.
    #[error(
        "refusing the archive: entry {entry:?} is a {kind} to {target:?}, which is not a file inside the archive"
    )]
    LinkOutside {
        /// The link's path.
        entry: PathBuf,
        /// "symbolic link" or "hard link".
        kind: &'static str,
        /// Its target as the archive spells it.
        target: PathBuf,
    },
    /// A device, FIFO or other special entry.
    #[error("refusing the archive: entry {entry:?} is a {kind:?} entry, not a file or directory")]
    Unsupported {
        /// The entry's path.
        entry: PathBuf,
        /// Its tar type.
        kind: EntryType,
    },
    /// The same path twice (a later copy would silently replace the first).
    #[error("refusing the archive: it holds {entry:?} twice")]
    Duplicate {
        /// The path.
        entry: PathBuf,
    },
    /// Reading the archive or writing the unpacked files failed.
    #[error("unpacking the archive: {0}")]
    Io(#[from] std::io::Error),
}

/// What an archive path turned out to be.
#[derive(Debug)]
enum Node {
    File,
    Dir,
    /// A link, with its target as a path relative to the archive's root.
    Link {
        kind: &'static str,
        target: PathBuf,
        spelled: PathBuf,
    },
}

/// `path` as a relative path of plain components (`.` dropped), or `None` when it is absolute
/// or holds `..`.
fn plain_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A link target, resolved against `base` (a relative directory of the archive): `None` when it
/// is absolute or climbs above the archive's root.
fn resolve_target(base: &Path, target: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    for c in target.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    let out: PathBuf = parts.iter().collect();
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Unpacks the archive at `archive` into `into` (new and empty) under the rules of the module
/// doc.
pub fn unpack(archive: &Path, into: &Path) -> Result<(), ArchiveError> {
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut nodes: BTreeMap<PathBuf, Node> = BTreeMap::new();
    for entry in tar.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let spelled = entry.path()?.into_owned();
        let rel = plain_relative(&spelled).ok_or_else(|| ArchiveError::UnsafePath {
            entry: spelled.clone(),
        })?;
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue;
            }
            return Err(ArchiveError::UnsafePath { entry: spelled });
        }
        let node = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                write_file(into, &rel, &mut entry, &nodes)?;
                Node::File
            }
            EntryType::Directory => {
                if matches!(nodes.get(&rel), Some(Node::Dir)) {
                    continue;
                }
                Node::Dir
            }
            EntryType::Symlink | EntryType::Link => {
                let (kind, base) = if kind.is_symlink() {
                    ("symbolic link", rel.parent().unwrap_or(Path::new("")))
                } else {
                    // A hard link's target is another member's name, from the root.
                    ("hard link", Path::new(""))
                };
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                let resolved =
                    resolve_target(base, &target).ok_or_else(|| ArchiveError::LinkOutside {
                        entry: spelled.clone(),
                        kind,
                        target: target.clone(),
                    })?;
                Node::Link {
                    kind,
                    target: resolved,
                    spelled: target,
                }
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    entry: spelled,
                    kind: other,
                });
            }
        };
        if nodes.contains_key(&rel) {
            return Err(ArchiveError::Duplicate { entry: spelled });
        }
        if let Node::Dir = node {
            std::fs::create_dir_all(into.join(&rel))?;
        }
        nodes.insert(rel, node);
    }
    for (path, node) in &nodes {
        if let Node::Link { .. } = node {
            let file = follow(&nodes, path)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(into.join(parent))?;
            }
            std::fs::hard_link(into.join(file), into.join(path))?;
        }
    }
    Ok(())
}

/// Writes one regular file, refusing to replace anything.
fn write_file(
    into: &Path,
    rel: &Path,
    entry: &mut impl std::io::Read,
    nodes: &BTreeMap<PathBuf, Node>,
) -> Result<(), ArchiveError> {
    if nodes.contains_key(rel) {
        return Err(ArchiveError::Duplicate {
            entry: rel.to_owned(),
        });
    }
    let dst = into.join(rel);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // `create_new`: O_EXCL, which also refuses to open through a link at `dst` (none can
    // exist: links are only made after every entry is read).
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&dst)?;
    std::io::copy(entry, &mut out)?;
    Ok(())
}

/// The regular file a link of the archive leads to.
fn follow<'a>(
    nodes: &'a BTreeMap<PathBuf, Node>,
    link: &'a Path,
) -> Result<&'a Path, ArchiveError> {
    let mut at = link;
    for _ in 0..=MAX_LINK_HOPS {
        match nodes.get(at) {
            Some(Node::File) => return Ok(at),
            Some(Node::Link { target, .. }) => at = target,
            Some(Node::Dir) | None => break,
        }
    }
    let (kind, spelled) = match nodes.get(link) {
        Some(Node::Link { kind, spelled, .. }) => (*kind, spelled.clone()),
        _ => ("link", PathBuf::new()),
    };
    Err(ArchiveError::LinkOutside {
        entry: link.to_owned(),
        kind,
        target: spelled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    enum E<'a> {
        File(&'a str, &'a [u8]),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        Fifo(&'a str),
    }

    fn archive(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_mtime(0);
            match e {
                E::File(path, bytes) => {
                    h.set_size(bytes.len() as u64);
                    b.append_data(&mut h, path, *bytes).expect("file");
                }
                E::Symlink(path, target) => {
                    h.set_entry_type(EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).expect("symlink");
                }
                E::HardLink(path, target) => {
                    h.set_entry_type(EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).expect("hard link");
                }
                E::Fifo(path) => {
                    h.set_entry_type(EntryType::Fifo);
                    h.set_size(0);
                    b.append_data(&mut h, path, std::io::empty()).expect("fifo");
                }
            }
        }
        b.into_inner().expect("tar")
    }

    /// A secret outside the archive, the archive, and an empty unpack directory.
    fn setup(entries: impl FnOnce(&str) -> Vec<u8>) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, b"TOP SECRET").expect("secret");
        let tar = dir.path().join("image.tar");
        std::fs::write(&tar, entries(secret.to_str().expect("utf-8"))).expect("tar");
        let into = dir.path().join("unpacked");
        std::fs::create_dir(&into).expect("into");
        (dir, tar, into)
    }

    /// No file under `dir` holds the secret's bytes.
    fn secret_absent(dir: &Path) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            assert!(!meta.file_type().is_symlink(), "{path:?} is a symlink");
            if meta.is_dir() {
                secret_absent(&path);
            } else {
                assert_ne!(
                    std::fs::read(&path).expect("read"),
                    b"TOP SECRET",
                    "{path:?}"
                );
            }
        }
    }

    #[test]
    fn symlink_to_a_file_outside_the_archive_is_refused() {
        let (_dir, tar, into) = setup(|secret| {
            archive(&[
                E::File("config.json", b"{}"),
                E::Symlink("manifest.json", secret),
            ])
        });
        let err = unpack(&tar, &into).expect_err("an absolute symlink");
        assert!(
            matches!(&err, ArchiveError::LinkOutside { entry, kind: "symbolic link", .. } if entry == Path::new("manifest.json")),
            "{err}"
        );
        assert!(err.to_string().contains("manifest.json"), "{err}");
        secret_absent(&into);
    }

    #[test]
    fn symlink_climbing_out_of_the_archive_is_refused() {
        let (_dir, tar, into) =
            setup(|_| archive(&[E::Symlink("abc/layer.tar", "../../secret.txt")]));
        let err = unpack(&tar, &into).expect_err("a climbing symlink");
        assert!(matches!(err, ArchiveError::LinkOutside { .. }), "{err}");
        secret_absent(&into);
    }

    #[test]
    fn hard_link_to_a_file_outside_the_archive_is_refused() {
        let (_dir, tar, into) = setup(|secret| archive(&[E::HardLink("abc/layer.tar", secret)]));
        let err = unpack(&tar, &into).expect_err("an absolute hard link");
        assert!(
            matches!(
                err,
                ArchiveError::LinkOutside {
                    kind: "hard link",
                    ..
                }
            ),
            "{err}"
        );
        secret_absent(&into);
    }

    #[test]
    fn link_to_a_directory_or_to_nothing_is_refused() {
        for entries in [
            vec![E::File("d/x", b"x"), E::Symlink("layer.tar", "d")],
            vec![E::Symlink("layer.tar", "missing")],
            vec![E::Symlink("a", "b"), E::Symlink("b", "a")],
        ] {
            let (_dir, tar, into) = setup(|_| archive(&entries));
            let err = unpack(&tar, &into).expect_err("a link to no file");
            assert!(matches!(err, ArchiveError::LinkOutside { .. }), "{err}");
        }
    }

    #[test]
    fn entry_paths_that_climb_or_are_absolute_are_refused() {
        for path in ["../escape", "a/../../escape", "/etc/escape"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            // `set_path` refuses `..`, as a hostile archive would not: write the name raw.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            let mut bytes = h.as_bytes().to_vec();
            bytes.extend_from_slice(&[b'x'; 512]);
            bytes.extend_from_slice(&[0; 1024]);
            let (dir, tar, into) = setup(|_| bytes);
            let err = unpack(&tar, &into).expect_err(path);
            assert!(
                matches!(err, ArchiveError::UnsafePath { .. }),
                "{path}: {err}"
            );
            assert!(!dir.path().join("escape").exists());
        }
    }

    #[test]
    fn special_files_and_duplicates_are_refused() {
        let (_dir, tar, into) = setup(|_| archive(&[E::Fifo("manifest.json")]));
        let err = unpack(&tar, &into).expect_err("a fifo");
        assert!(matches!(err, ArchiveError::Unsupported { .. }), "{err}");
        let (_dir, tar, into) = setup(|_| {
            archive(&[
                E::File("manifest.json", b"1"),
                E::File("manifest.json", b"2"),
            ])
        });
        let err = unpack(&tar, &into).expect_err("twice");
        assert!(matches!(err, ArchiveError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn links_between_files_of_the_archive_become_hard_links_inside_it() {
        // `docker save`'s own shape for a layer held twice, and a hard link.
        let (_dir, tar, into) = setup(|_| {
            archive(&[
                E::File("aaa/layer.tar", b"layer bytes"),
                E::Symlink("bbb/layer.tar", "../aaa/layer.tar"),
                E::Symlink("ccc/layer.tar", "../bbb/layer.tar"),
                E::HardLink("ddd/layer.tar", "aaa/layer.tar"),
            ])
        });
        unpack(&tar, &into).expect("in-archive links");
        for link in ["bbb", "ccc", "ddd"] {
            let path = into.join(link).join("layer.tar");
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            assert!(meta.is_file(), "{link}: a regular file, not a link");
            assert_eq!(std::fs::read(&path).expect("read"), b"layer bytes");
        }
    }
}
