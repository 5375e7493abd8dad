//! The credential store: refresh tokens per registry host, in one JSON file readable only by its
//! owner (`$WHARF_CREDENTIALS`, else `$XDG_CONFIG_HOME/wharf/credentials.json`, else
//! `~/.config/wharf/credentials.json`).
//!
//! The file is replaced atomically at every save (a temp file in the same directory, made 0600
//! with `fchmod` before a byte is written, synced, renamed over the old file, directory synced):
//! a crash leaves the old store or the new one, and a store that was once world-readable (an old
//! `0644` file, a copy from elsewhere) ends private. Directories are made private only when Wharf
//! creates them or when they are Wharf's own (the default `…/wharf` directory): the parent of
//! `WHARF_CREDENTIALS=/shared/x` is someone else's, and as root it could be `/tmp`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The store file's mode: its owner alone may read it (it holds refresh tokens).
const FILE_MODE: u32 = 0o600;

/// The mode of a directory Wharf creates for the store.
const DIR_MODE: u32 = 0o700;

/// What is kept for one registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The registry's refresh token (bounded lifetime, revocable, bound to the identity).
    pub refresh_token: String,
}

/// The store file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CredentialStore {
    /// Registry host → credential.
    pub registries: BTreeMap<String, Stored>,
}

/// Where the store lives, and the directory that is Wharf's own (`None` for a path the user
/// named, whose directory belongs to them).
struct Location {
    file: PathBuf,
    own_dir: Option<PathBuf>,
}

fn location() -> Result<Location> {
    if let Some(p) = std::env::var_os("WHARF_CREDENTIALS") {
        return Ok(Location {
            file: PathBuf::from(p),
            own_dir: None,
        });
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    let dir = base.join("wharf");
    Ok(Location {
        file: dir.join("credentials.json"),
        own_dir: Some(dir),
    })
}

/// Where the store lives.
pub fn path() -> Result<PathBuf> {
    Ok(location()?.file)
}

impl CredentialStore {
    /// Loads the store (empty when the file does not exist).
    pub fn load() -> Result<CredentialStore> {
        let path = path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialStore::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the store atomically with mode 0600 (see the module doc).
    pub fn save(&self) -> Result<()> {
        let loc = location()?;
        let bytes = serde_json::to_vec_pretty(self)?;
        write_private(&loc.file, loc.own_dir.as_deref(), &bytes)
            .with_context(|| format!("writing {}", loc.file.display()))
    }
}

/// Creates the missing directories above `file`, each private; makes `own_dir` private too
/// (Wharf's own directory, even when it already existed). No other directory is touched.
fn prepare_dirs(file: &Path, own_dir: Option<&Path>) -> std::io::Result<()> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    // A relative path's last ancestor is "" (the working directory), which never "exists".
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for d in missing.into_iter().rev() {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
        match builder.create(d) {
            Ok(()) => set_mode(d, DIR_MODE)?,
            // Another process made it meanwhile: it is not ours to change.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(own) = own_dir
        && own == dir
    {
        set_mode(own, DIR_MODE)?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Replaces `file` with `bytes`, readable by its owner only.
fn write_private(file: &Path, own_dir: Option<&Path>, bytes: &[u8]) -> std::io::Result<()> {
    prepare_dirs(file, own_dir)?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".credentials-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // fchmod on the open file before any byte is in it, whatever the umask or the temp file
    // library's default.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    // The rename is durable only once the directory is.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn an_existing_world_readable_store_ends_private_after_a_save() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("credentials.json");
        std::fs::write(&file, b"{\"registries\":{}}").expect("old store");
        set_mode(&file, 0o644).expect("chmod");
        write_private(&file, None, b"{\"registries\":{\"h\":{}}}").expect("save");
        assert_eq!(mode(&file), FILE_MODE, "the refreshed store is private");
        assert_eq!(
            std::fs::read(&file).expect("read"),
            b"{\"registries\":{\"h\":{}}}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["credentials.json"], "no temp file is left behind");
    }

    #[test]
    fn a_store_named_in_a_shared_directory_leaves_that_directory_alone() {
        let shared = tempfile::tempdir().expect("tempdir");
        // `/tmp`'s mode: everyone may create files, the sticky bit guards them.
        set_mode(shared.path(), 0o1777).expect("chmod");
        let file = shared.path().join("x");
        write_private(&file, None, b"{}").expect("save");
        assert_eq!(
            mode(shared.path()),
            0o1777,
            "the shared directory kept its mode"
        );
        assert_eq!(mode(&file), FILE_MODE);
    }

    #[test]
    fn directories_wharf_creates_are_private_and_its_own_directory_too() {
        let home = tempfile::tempdir().expect("tempdir");
        set_mode(home.path(), 0o755).expect("chmod");
        let file = home.path().join("new/deeper/credentials.json");
        write_private(&file, None, b"{}").expect("save");
        assert_eq!(mode(home.path()), 0o755, "an existing parent is untouched");
        assert_eq!(mode(&home.path().join("new")), DIR_MODE);
        assert_eq!(mode(&home.path().join("new/deeper")), DIR_MODE);

        let own = home.path().join("wharf");
        std::fs::create_dir(&own).expect("mkdir");
        set_mode(&own, 0o755).expect("chmod");
        write_private(&own.join("credentials.json"), Some(&own), b"{}").expect("save");
        assert_eq!(
            mode(&own),
            DIR_MODE,
            "Wharf's own directory is made private"
        );
    }
}
