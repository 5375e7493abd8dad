//! `wharf catalog build`: renders the static public catalog from the configured stores.

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use wharf::config::Config;
use wharf::runtime;
use wharf_catalog::{FsWriter, Options, Progress, S3Target, S3Writer, SiteWriter};

/// Arguments of `wharf catalog build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Where the site goes, kept between builds (it holds the state that makes rebuilds
    /// incremental): a directory, or a bucket as
    /// `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]` (credentials from the standard AWS
    /// chain, e.g. `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).
    #[arg(long)]
    out: String,
    /// Registry host shown in pull commands (default: the host of `auth.public_url`, else the
    /// listen address).
    #[arg(long)]
    registry_host: Option<String>,
    /// Absolute URL the site is published at, for the sitemap and feed (default
    /// `https://<registry-host>/`).
    #[arg(long)]
    site_url: Option<String>,
    /// Also list the output and delete every repository file no repository owns (files left
    /// behind by interrupted or overlapping builds).
    #[arg(long)]
    sweep: bool,
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
    let options = Options {
        sweep: args.sweep,
        ..Options::new(registry_host, args.site_url)
    };
    let writer: Box<dyn SiteWriter> = if args.out.starts_with("s3://") {
        Box::new(S3Writer::connect(S3Target::from_url(&args.out)?).await)
    } else {
        Box::new(FsWriter::new(&args.out))
    };
    let started = std::time::Instant::now();
    let line = ProgressLine::new();
    let progress = |p: &Progress<'_>| line.show(p);
    let report = wharf_catalog::build(
        meta.as_ref(),
        blobs.as_ref(),
        &policy,
        writer.as_ref(),
        &options,
        &progress,
    )
    .await
    .context("building the catalog")?;
    line.finish();
    eprintln!(
        "catalog: {} public repositories, {} re-rendered, {} removed, in {:.1?} → {}",
        report.repositories,
        report.rendered.len(),
        report.removed.len(),
        started.elapsed(),
        args.out
    );
    Ok(())
}

/// The progress of `wharf catalog build` on stderr, one line per repository as
/// `[done/total] rendered  <repo>` (or `unchanged`): on a terminal one `indicatif` line redrawn
/// in place, otherwise plain lines without escape codes, so a log or a pipe keeps which
/// repositories were rendered.
struct ProgressLine {
    /// `Some` on a terminal.
    bar: Option<ProgressBar>,
}

impl ProgressLine {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template("[{pos}/{len}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            )
        });
        ProgressLine { bar }
    }

    fn show(&self, p: &Progress<'_>) {
        let verb = if p.rendered { "rendered " } else { "unchanged" };
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
                bar.set_message(format!("{verb} {}", p.repo));
            }
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "[{}/{}] {verb} {}", p.done, p.total, p.repo);
            }
        }
    }

    /// Clears the line so the summary starts at the left edge.
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
