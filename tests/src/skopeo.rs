//! [`Skopeo`]: the skopeo CLI with a private temp directory and no trust policy lookup.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::cmd::Cmd;

/// skopeo, run hermetically: `--insecure-policy` (no `/etc/containers/policy.json` needed) and
/// a `--tmpdir` that is removed with the handle.
#[derive(Debug)]
pub struct Skopeo {
    tmp: TempDir,
}

/// `oci:<dir>:<tag>`.
pub fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

impl Skopeo {
    /// A skopeo handle with its own temp directory.
    pub fn new() -> Result<Self> {
        Ok(Skopeo {
            tmp: tempfile::Builder::new().prefix("wharf-skopeo-").tempdir()?,
        })
    }

    /// `skopeo <global flags> <subcommand>`; add the rest with [`Cmd::arg`].
    pub fn cmd(&self, subcommand: &str) -> Cmd {
        Cmd::new("skopeo")
            .arg("--insecure-policy")
            .arg("--tmpdir")
            .arg(self.tmp.path())
            .arg(subcommand)
            .env("TMPDIR", self.tmp.path())
    }

    /// `skopeo copy --preserve-digests` from `src` to `dst`: fails rather than recompress or
    /// convert anything, so digests must survive. `extra` flags go before the references.
    pub fn copy(&self, src: &str, dst: &str, extra: &[&str], timeout: Duration) -> Result<()> {
        self.cmd("copy")
            .args([
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--src-tls-verify=false",
            ])
            .args(extra)
            .arg(src)
            .arg(dst)
            .timeout(timeout)
            .run()?;
        Ok(())
    }

    /// `skopeo list-tags` of a `docker://` reference.
    pub fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let out = self
            .cmd("list-tags")
            .arg("--tls-verify=false")
            .arg(repo)
            .stdout()?;
        let v: Value = serde_json::from_str(&out).context("list-tags output is not JSON")?;
        Ok(v["Tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `skopeo inspect --raw`: the manifest bytes exactly as the registry serves them.
    pub fn inspect_raw(&self, image: &str) -> Result<Vec<u8>> {
        let out = self
            .cmd("inspect")
            .args(["--raw", "--tls-verify=false"])
            .arg(image)
            .run()?;
        Ok(out.stdout)
    }
}
