//! npm fixtures under `tests/fixtures/<name>/`: installed from their lock file on first use.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cmd::Cmd;

/// How long one `npm ci` may take (a few dozen small packages at most).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Serializes `npm ci` between tests of one process (every e2e test is in the one `e2e` binary).
static INSTALL: Mutex<()> = Mutex::new(());

/// `tests/fixtures/<name>`, with its npm packages installed (`npm ci`) unless `package` is
/// already in its `node_modules`. `what` names the packages in an error.
pub fn fixture(name: &str, package: &str, what: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if dir
        .join("node_modules")
        .join(package)
        .join("package.json")
        .is_file()
    {
        return Ok(dir);
    }
    Cmd::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .cwd(&dir)
        .timeout(INSTALL_TIMEOUT)
        .run()
        .with_context(|| format!("installing {what} (npm ci)"))?;
    Ok(dir)
}
