//! Headless Chromium (Debian's `/usr/bin/chromium`) driven by npm `playwright-core`, for the
//! public catalog: `tests/fixtures/catalog-browser/check.mjs` does the clicking. Its npm package
//! is installed on first use (`npm ci`, needs the npm registry once); `tests/run.sh` does the
//! same up front, and installs Chromium from Debian.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd::Cmd;
use crate::npm;

/// Upper bound on the whole browser check: start Chromium, a few pages, four screenshots.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs the catalog browser check on the site in `site`; screenshots go to `shots`. Fails
/// with the check's message when one fails.
pub fn check_catalog(site: &Path, shots: &Path, expected_pull: &str) -> Result<String> {
    if !Path::new(CHROMIUM).is_file() {
        bail!("{CHROMIUM} is missing: apt-get install chromium (tests/run.sh does)");
    }
    let dir = npm::fixture("catalog-browser", "playwright-core", "playwright-core")?;
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
