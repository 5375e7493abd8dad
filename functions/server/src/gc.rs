//! `wharf gc`: garbage collection over the configured stores, with a progress line on a
//! terminal and a summary of what went (or, with `--dry-run`, would go).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf::config::Config;
use wharf::gc::{GcItem, GcOptions, GcReport, Phase, Progress};
use wharf::runtime;

/// Arguments of `wharf gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Report what would be removed, and how many bytes, without removing anything.
    #[arg(long)]
    dry_run: bool,
    /// Only remove what has been idle for longer than this: `90s`, `30m`, `24h`, `7d` or
    /// seconds (default: `gc_grace_secs` in the configuration, 24 h).
    #[arg(long, value_parser = parse_duration)]
    grace: Option<Duration>,
    /// Print the report as JSON on stdout instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `90s`, `30m`, `24h`, `7d`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 24h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use s, m, h or d)"
            ));
        }
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The progress line on stderr: one `indicatif` bar redrawn in place, one phase after the
/// other. `ProgressDrawTarget::stderr` draws nothing when stderr is not a terminal, and `run`
/// only uses a bar on a terminal anyway, so piped output never holds an escape code.
struct Bar {
    bar: ProgressBar,
}

/// A phase whose number of steps is known: `sweeping blobs         [####------] 12/30`.
const BAR_TEMPLATE: &str = "{msg:<22} [{bar:30}] {pos}/{len}";
/// A phase counted as it goes: `marking repositories   12`.
const COUNT_TEMPLATE: &str = "{msg:<22} {pos}";

impl Bar {
    fn new(target: ProgressDrawTarget) -> Self {
        // Styled before anything can draw it: every setter redraws, and a run starts marking.
        let bar = ProgressBar::with_draw_target(None, target)
            .with_style(Self::style(None))
            .with_message(what(Phase::Mark));
        Bar { bar }
    }

    /// The style of a phase: a bar with its count when the total is known, else the count.
    fn style(total: Option<u64>) -> ProgressStyle {
        let template = match total {
            Some(total) if total > 0 => BAR_TEMPLATE,
            _ => COUNT_TEMPLATE,
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#-")
    }

    /// Leaves the last line shown and moves below it, so the summary starts on its own line.
    fn finish(&self) {
        self.bar.finish();
        let _ = writeln!(std::io::stderr());
    }
}

/// What a phase is called on the progress line.
fn what(phase: Phase) -> &'static str {
    match phase {
        Phase::Mark => "marking repositories",
        Phase::Uploads => "checking uploads",
        Phase::Sweep => "sweeping blobs",
    }
}

impl Progress for Bar {
    fn start(&self, phase: Phase, total: Option<u64>) {
        match total {
            Some(total) if total > 0 => self.bar.set_length(total),
            _ => self.bar.unset_length(),
        }
        self.bar.set_style(Self::style(total));
        self.bar.set_message(what(phase));
        self.bar.reset();
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
}

/// Runs `wharf gc`.
#[expect(clippy::print_stdout, reason = "the report is the command's output")]
pub async fn run(config: &Config, args: GcArgs) -> anyhow::Result<()> {
    let grace = args
        .grace
        .unwrap_or(Duration::from_secs(config.gc_grace_secs));
    let data_dir = runtime::data_dir(config)?;
    let (blobs, meta) = match runtime::open_stores(config, Some(&data_dir)).await {
        Ok(stores) => stores,
        Err(e) if e.is_locked() => bail!(
            "the metadata database is in use by a running `wharf serve`, which collects garbage \
             itself every gc_interval_secs ({}s); stop it to collect now ({e})",
            config.gc_interval_secs
        ),
        Err(e) => return Err(e).context("opening the stores"),
    };
    // Retention rules live in the `[auth]` policy.
    let policy = match &config.auth {
        Some(auth) => Some(std::sync::Arc::new(
            runtime::load_policy(auth, meta.as_ref())
                .await
                .context("loading the policy (for its retention rules)")?,
        )),
        None => None,
    };
    let options = GcOptions {
        grace,
        dry_run: args.dry_run,
        policy,
    };
    let interactive = std::io::stderr().is_terminal() && !args.json;
    let bar = Bar::new(ProgressDrawTarget::stderr());
    let quiet = wharf::gc::Quiet;
    let progress: &dyn Progress = if interactive { &bar } else { &quiet };
    let report =
        wharf::gc::run_with_progress(blobs.as_ref(), meta.as_ref(), &options, progress).await;
    if interactive {
        bar.finish();
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => bail!(
            "garbage collection stopped: {e} (what was removed before stays removed; run it again)"
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report, grace));
    }
    Ok(())
}

/// Runs garbage collection inside `wharf serve` every `gc_interval_secs` (first one interval
/// after start), logging each report. A failed run is logged and retried at the next tick.
pub fn schedule(state: wharf::api::AppState, config: &Config) {
    if config.gc_interval_secs == 0 {
        return;
    }
    let every = Duration::from_secs(config.gc_interval_secs);
    let options = GcOptions {
        grace: Duration::from_secs(config.gc_grace_secs),
        dry_run: false,
        ..GcOptions::default()
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticks.tick().await;
            match wharf::gc::run(&state, &options).await {
                Ok(report) => tracing::info!(
                    removed = report.removed.len(),
                    bytes = report.bytes(),
                    "scheduled garbage collection"
                ),
                Err(e) => tracing::error!(error = %e, "scheduled garbage collection failed"),
            }
        }
    });
}

/// Human-readable byte counts.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The summary printed after a run: each item, then totals.
pub fn summary(report: &GcReport, grace: Duration) -> String {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = String::new();
    for item in &report.removed {
        let line = match item {
            GcItem::Blob { digest, size } => format!("blob {digest} ({})", human_bytes(*size)),
            GcItem::Session { id, repo, size } => {
                format!("upload session {id} in {repo} ({})", human_bytes(*size))
            }
            GcItem::Staged { id, size } => {
                format!(
                    "staged upload {id} without a session ({})",
                    human_bytes(*size)
                )
            }
            GcItem::Tag { repo, tag, digest } => {
                format!("tag {repo}:{tag} (was {digest}) by retention")
            }
        };
        out.push_str(&format!("{verb} {line}\n"));
    }
    let count = |f: fn(&GcItem) -> bool| report.removed.iter().filter(|i| f(i)).count();
    out.push_str(&format!(
        "{}: {verb} {} blobs, {} upload sessions, {} staged uploads, {} tags: {} in all \
         (grace {}s; {} repositories, {} manifests, {} blobs seen; kept {} too recent, {} linked meanwhile)\n",
        if report.dry_run { "dry run" } else { "done" },
        count(|i| matches!(i, GcItem::Blob { .. })),
        count(|i| matches!(i, GcItem::Session { .. })),
        count(|i| matches!(i, GcItem::Staged { .. })),
        count(|i| matches!(i, GcItem::Tag { .. })),
        human_bytes(report.bytes()),
        grace.as_secs(),
        report.repositories,
        report.manifests,
        report.blobs_seen,
        report.kept_recent,
        report.kept_relinked,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn each_phase_counts_from_zero_against_its_own_total() {
        let bar = Bar::new(ProgressDrawTarget::hidden());
        bar.start(Phase::Mark, None);
        bar.advance(7);
        assert_eq!((bar.bar.position(), bar.bar.length()), (7, None));
        bar.start(Phase::Sweep, Some(10));
        bar.advance(3);
        assert_eq!((bar.bar.position(), bar.bar.length()), (3, Some(10)));
        bar.start(Phase::Uploads, Some(0));
        assert_eq!((bar.bar.position(), bar.bar.length()), (0, None));
        assert_eq!(bar.bar.message(), "checking uploads");
    }

    #[test]
    fn the_progress_templates_parse() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
        assert!(ProgressStyle::with_template(COUNT_TEMPLATE).is_ok());
    }

    #[test]
    fn byte_counts_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    /// `wharf gc` and `wharf audit` beside a running `wharf serve` say who holds the database
    /// (the store reports it as its own variant; this is the message operators read).
    #[tokio::test]
    async fn commands_beside_a_running_server_say_it_holds_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let meta = dir.path().join(runtime::META_FILE);
        let _serving = wharf::storage::redb::RedbMetaStore::open(&meta).expect("open");
        let args = GcArgs {
            dry_run: true,
            grace: None,
            json: false,
        };
        let gc = format!("{:#}", run(&config, args).await.expect_err("locked"));
        assert!(
            gc.starts_with("the metadata database is in use by a running `wharf serve`, which"),
            "{gc}"
        );
        assert!(gc.contains("Database already open"), "{gc}");
        use clap::{Args, FromArgMatches};
        let command = crate::audit::AuditArgs::augment_args(clap::Command::new("audit"));
        let matches = command.get_matches_from(["audit"]);
        let args = crate::audit::AuditArgs::from_arg_matches(&matches).expect("args");
        let audit = format!(
            "{:#}",
            crate::audit::run(&config, args).await.expect_err("locked")
        );
        assert!(
            audit.starts_with("the metadata database is in use by a running `wharf serve`; read"),
            "{audit}"
        );
    }
}
