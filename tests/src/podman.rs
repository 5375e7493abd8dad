//! [`Podman`]: podman with private storage (vfs) under a temp directory, so tests never touch
//! the machine's images and can run side by side.

use std::path::PathBuf;

use anyhow::{Result, bail};
use tempfile::TempDir;

use crate::cmd::Cmd;

/// A podman with its own `--root`, `--runroot`, temp dir and registries configuration.
#[derive(Debug)]
pub struct Podman {
    dir: TempDir,
}

/// A temp directory whose path is a valid image name: podman names an image pulled from
/// `oci:DIR:TAG` after DIR, and image names must be lowercase (tempfile's names are not).
pub fn lowercase_tempdir() -> Result<TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("wharf-oci-{:016x}", rand::random::<u64>()))
        .rand_bytes(0)
        .tempdir()?)
}

impl Podman {
    /// Creates the private directories and a registries.conf with no search registries.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("wharf-podman-").tempdir()?;
        for sub in ["root", "runroot", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        std::fs::write(
            dir.path().join("registries.conf"),
            "unqualified-search-registries = []\n",
        )?;
        Ok(Podman { dir })
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// `podman <private storage flags> <args>`.
    pub fn cmd(&self) -> Cmd {
        Cmd::new("podman")
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .env("TMPDIR", self.path("tmp"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("XDG_RUNTIME_DIR", self.path("runroot"))
    }

    /// Checks that podman can work here at all (`podman info`), with a precise reason if not.
    pub fn check_usable(&self) -> Result<()> {
        let out = self
            .cmd()
            .args(["info", "--format", "{{.Store.GraphDriverName}}"])
            .output()?;
        if !out.status.success() {
            bail!(
                "podman cannot run in this environment (`podman info` failed with {}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let driver = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if driver != "vfs" {
            bail!("podman uses storage driver {driver:?}, not vfs");
        }
        Ok(())
    }

    /// The full image id (`sha256` of the image config, as hex) of a local image.
    pub fn image_id(&self, image: &str) -> Result<String> {
        let out = self
            .cmd()
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(image)
            .stdout()?;
        Ok(out.trim().to_owned())
    }

    /// Whether a local image by that name exists.
    pub fn image_exists(&self, image: &str) -> Result<bool> {
        let out = self.cmd().args(["image", "exists"]).arg(image).output()?;
        Ok(out.status.success())
    }
}
