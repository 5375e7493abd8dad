//! `wharf audit`: reads the audit trail (pushes, tag moves, deletes, with who made them) from
//! the configured metadata store, as JSON lines on stdout.

use anyhow::{Context, bail};
use wharf::config::Config;
use wharf::oci::RepoName;
use wharf::runtime;
use wharf::storage::audit::AuditQuery;
use wharf::storage::now_ms;

use crate::gc::parse_duration;

/// Most events one call prints.
const MAX_EVENTS: usize = 100_000;

/// Arguments of `wharf audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only this repository.
    #[arg(long)]
    repo: Option<String>,
    /// Only events in this last period: `90s`, `30m`, `24h`, `7d` (default: 7 days).
    #[arg(long, value_parser = parse_duration, default_value = "7d")]
    since: std::time::Duration,
}

/// Runs `wharf audit`.
#[expect(clippy::print_stdout, reason = "the events are the command's output")]
pub async fn run(config: &Config, args: AuditArgs) -> anyhow::Result<()> {
    let repo = args
        .repo
        .as_deref()
        .map(RepoName::parse)
        .transpose()
        .context("--repo is not a repository name")?;
    let data_dir = runtime::data_dir(config)?;
    let (_, meta) = match runtime::open_stores(config, Some(&data_dir)).await {
        Ok(stores) => stores,
        Err(e) if e.is_locked() => bail!(
            "the metadata database is in use by a running `wharf serve`; read {} directly ({e})",
            data_dir.join(wharf::storage::redb::AUDIT_FILE).display()
        ),
        Err(e) => return Err(e).context("opening the stores"),
    };
    let since = u64::try_from(args.since.as_millis()).unwrap_or(u64::MAX);
    let query = AuditQuery {
        since_ms: now_ms().saturating_sub(since),
        repo,
        n: MAX_EVENTS,
    };
    for event in meta.list_audit(&query).await.context("reading the trail")? {
        println!("{}", serde_json::to_string(&event)?);
    }
    Ok(())
}
