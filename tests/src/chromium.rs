//! Headless Chromium (Debian's `/usr/bin/chromium`) driven by npm `playwright-core`, for the
//! public catalog: `tests/fixtures/catalog-browser/check.mjs` does the clicking. Its npm package
//! is installed on first use (`npm ci`, needs the npm registry once); `tests/run.sh` does the
//! same up front, and installs Chromium from Debian.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd::Cmd;

/// How long `npm ci` may take (one package).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Upper bound on the whole browser check: start Chromium, a few pages, four screenshots.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Serializes `npm ci` between tests of one binary.
static INSTALL: Mutex<()> = Mutex::new(());

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("catalog-browser")
}

/// Installs `playwright-core` from the lock file unless it is already there.
fn ensure_installed(dir: &Path) -> Result<()> {
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return Ok(());
    }
    Cmd::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .cwd(dir)
        .timeout(INSTALL_TIMEOUT)
        .run()
        .context("installing playwright-core (npm ci)")?;
    Ok(())
}

/// Runs the catalog browser check on the site in `site`; screenshots go to `shots`. Fails
/// with the check's message when one fails.
pub fn check_catalog(site: &Path, shots: &Path, expected_pull: &str) -> Result<String> {
    if !Path::new(CHROMIUM).is_file() {
        bail!("{CHROMIUM} is missing: apt-get install chromium (tests/run.sh does)");
    }
    let dir = fixture_dir();
    ensure_installed(&dir)?;
    let output = Cmd::new("node")
        .arg(dir.join("check.mjs"))
        .arg(site)
        .arg(shots)
        .arg(expected_pull)
        .env("CHROMIUM", CHROMIUM)
        .cwd(&dir)
        .timeout(CHECK_TIMEOUT)
        .run()
        .context("the catalog browser check failed")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
