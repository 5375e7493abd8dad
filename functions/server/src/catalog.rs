//! `wharf catalog build`: renders the static public catalog from the configured stores.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use wharf::config::Config;
use wharf::runtime;
use wharf_catalog::{FsWriter, Options, Progress};

/// Title of the generated site.
const SITE_TITLE: &str = "Wharf catalog";

/// Arguments of `wharf catalog build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Directory to write the site into (kept between builds: it holds the state that makes
    /// rebuilds incremental).
    #[arg(long)]
    out: PathBuf,
    /// Registry host shown in pull commands (default: the host of `auth.public_url`, else the
    /// listen address).
    #[arg(long)]
    registry_host: Option<String>,
    /// Absolute URL the site is published at, for the sitemap and feed (default
    /// `https://<registry-host>/`).
    #[arg(long)]
    site_url: Option<String>,
}

fn registry_host(config: &Config, flag: Option<String>) -> String {
    if let Some(host) = flag {
        return host;
    }
    let from_url = config
        .auth
        .as_ref()
        .and_then(|a| a.public_url.as_deref())
        .and_then(|u| u.split_once("://").map(|(_, rest)| rest))
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned());
    from_url.unwrap_or_else(|| config.listen.to_string())
}

/// Runs the build, with a progress line on stderr.
pub async fn build(config: &Config, args: BuildArgs) -> anyhow::Result<()> {
    let Some(auth) = &config.auth else {
        bail!(
            "no [auth] section is configured, so no policy says which repositories are public: \
             without one nothing is public and the catalog would be empty. Configure [auth] with \
             a policy_file that lists `public = [...]` patterns."
        );
    };
    let data_dir = runtime::data_dir(config)?;
    let (blobs, meta) = runtime::open_stores(config, Some(&data_dir)).await?;
    let policy = runtime::load_policy(auth, meta.as_ref())
        .await
        .context("loading the policy")?;
    let registry_host = registry_host(config, args.registry_host);
    let site_url = args
        .site_url
        .unwrap_or_else(|| format!("https://{registry_host}/"));
    let site_url = if site_url.ends_with('/') {
        site_url
    } else {
        format!("{site_url}/")
    };
    let options = Options {
        registry_host,
        site_url,
        site_title: SITE_TITLE.to_owned(),
    };
    let writer = FsWriter::new(&args.out);
    let started = std::time::Instant::now();
    let progress = |p: &Progress<'_>| {
        let mut err = std::io::stderr().lock();
        let verb = if p.rendered { "rendered " } else { "unchanged" };
        // `\r` + clear-to-end-of-line keeps one updating line on a terminal.
        let _ = write!(err, "\r\x1b[K[{}/{}] {verb} {}", p.done, p.total, p.repo);
        let _ = err.flush();
    };
    let report = wharf_catalog::build(
        meta.as_ref(),
        blobs.as_ref(),
        &policy,
        &writer,
        &options,
        &progress,
    )
    .await
    .context("building the catalog")?;
    eprintln!(
        "\r\x1b[Kcatalog: {} public repositories, {} re-rendered, {} removed, in {:.1?} → {}",
        report.repositories,
        report.rendered.len(),
        report.removed.len(),
        started.elapsed(),
        args.out.display()
    );
    Ok(())
}
