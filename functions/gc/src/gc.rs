//! Lambda function `gc`: garbage collection, run on a schedule (an EventBridge rule) with the
//! same stores as every other function. Its grace period is `gc_grace_secs` from the
//! configuration, overridden by `WHARF_GC_GRACE_SECS`, overridden by `grace_secs` in the event
//! (a manual `aws lambda invoke` may also ask for `{"dry_run": true}`). The reply is the report
//! without its item list, which goes to the log.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde::{Deserialize, Serialize};
use wharf::gc::{GcOptions, GcReport};

/// Names the grace-period override (seconds).
const GRACE_ENV: &str = "WHARF_GC_GRACE_SECS";

/// What an invocation may ask for; a scheduled event's fields are ignored.
#[derive(Debug, Default, Deserialize)]
struct Request {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    grace_secs: Option<u64>,
}

/// The reply: counts and bytes.
#[derive(Debug, Serialize)]
struct Reply {
    dry_run: bool,
    grace_secs: u64,
    removed: usize,
    blobs: usize,
    bytes: u64,
    kept_recent: u64,
    kept_relinked: u64,
    repositories: u64,
}

fn reply(report: &GcReport, grace: Duration) -> Reply {
    Reply {
        dry_run: report.dry_run,
        grace_secs: grace.as_secs(),
        removed: report.removed.len(),
        blobs: report.blobs(),
        bytes: report.bytes(),
        kept_recent: report.kept_recent,
        kept_relinked: report.kept_relinked,
        repositories: report.repositories,
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, state) = wharf::runtime::start_logging(
        wharf::runtime::state_from_env(wharf::runtime::KeyUse::VerifyOnly).await,
    )?;
    let default_grace = match std::env::var(GRACE_ENV) {
        Ok(v) => v
            .parse::<u64>()
            .map_err(|e| format!("{GRACE_ENV}={v:?}: {e}"))?,
        Err(_) => config.gc_grace_secs,
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let state = state.clone();
        async move {
            let request: Request = serde_json::from_value(event.payload).unwrap_or_default();
            let grace = Duration::from_secs(request.grace_secs.unwrap_or(default_grace));
            let options = GcOptions {
                grace,
                dry_run: request.dry_run,
                ..GcOptions::default()
            };
            let report = wharf::gc::run(&state, &options).await?;
            for item in &report.removed {
                tracing::info!(dry_run = report.dry_run, item = ?item, "collected");
            }
            Ok::<_, Error>(reply(&report, grace))
        }
    }))
    .await
}
