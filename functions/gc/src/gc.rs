//! Lambda function `gc`: garbage collection, run on a schedule (an EventBridge rule) with the
//! same stores as every other function. Its grace period is `gc_grace_secs` from the
//! configuration, overridden by `WHARF_GC_GRACE_SECS`, overridden by `grace_secs` in a manual
//! request. The reply is the report without its item list, which goes to the log.
//!
//! A run deletes, so the payload is parsed, never guessed at. Exactly two shapes start one:
//!
//! - the event the template's `Schedule` (an EventBridge rule, `AWS::Events::Rule`) sends:
//!   `"detail-type": "Scheduled Event"` and `"source": "aws.events"`, as AWS documents it
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/with-scheduled-events.html>, "Example
//!   CloudWatch Events Message Event"; SAM's `Schedule` event source generates that rule:
//!   <https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/sam-property-function-schedule.html>);
//!   it runs with the configured grace, for real;
//! - a manual request (`aws lambda invoke --payload '{"dry_run": true}'`): an object with at
//!   most `dry_run` (a boolean) and `grace_secs` (an integer).
//!
//! Anything else (`{"dry_run": "true"}`, a misspelt field, another service's event) is refused
//! with an error before a single item is read, so a typo never becomes a real run.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wharf::api::AppState;
use wharf::gc::{GcOptions, GcReport};

/// Names the grace-period override (seconds).
const GRACE_ENV: &str = "WHARF_GC_GRACE_SECS";

/// The `detail-type` and `source` of the event an EventBridge schedule rule sends.
const SCHEDULED_DETAIL_TYPE: &str = "Scheduled Event";
const SCHEDULED_SOURCE: &str = "aws.events";

/// What a manual invocation may ask for, and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    grace_secs: Option<u64>,
}

/// Why an invocation is refused (before anything is read or removed).
#[derive(Debug, thiserror::Error)]
enum InvocationError {
    /// An EventBridge-shaped event that is not the schedule's.
    #[error(
        "refusing to collect: an event with detail-type {detail_type} and source {from} is not the schedule's ({SCHEDULED_DETAIL_TYPE:?} from {SCHEDULED_SOURCE:?})"
    )]
    NotTheSchedule { detail_type: Value, from: Value },
    /// Not a JSON object (serde would read a struct from an array, and `null` as defaults).
    #[error(
        "refusing to collect: the payload is neither the scheduled event nor a request object {{\"dry_run\": true|false, \"grace_secs\": N}}"
    )]
    NotAnObject,
    /// Neither the scheduled event nor a valid request.
    #[error(
        "refusing to collect: the payload is neither the scheduled event nor a request {{\"dry_run\": true|false, \"grace_secs\": N}}: {0}"
    )]
    Invalid(#[source] serde_json::Error),
}

/// The options an invocation asks for.
fn options(payload: Value, default_grace: Duration) -> Result<GcOptions, InvocationError> {
    if let Some(detail_type) = payload.get("detail-type") {
        let from = payload.get("source").cloned().unwrap_or(Value::Null);
        if detail_type != SCHEDULED_DETAIL_TYPE || from != SCHEDULED_SOURCE {
            return Err(InvocationError::NotTheSchedule {
                detail_type: detail_type.clone(),
                from,
            });
        }
        return Ok(GcOptions {
            grace: default_grace,
            dry_run: false,
            ..GcOptions::default()
        });
    }
    if !payload.is_object() {
        return Err(InvocationError::NotAnObject);
    }
    let request: Request = serde_json::from_value(payload).map_err(InvocationError::Invalid)?;
    Ok(GcOptions {
        grace: request
            .grace_secs
            .map_or(default_grace, Duration::from_secs),
        dry_run: request.dry_run,
        ..GcOptions::default()
    })
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

/// One invocation: refuse the payload, or run.
async fn handle(state: &AppState, default_grace: Duration, payload: Value) -> Result<Reply, Error> {
    let options = options(payload, default_grace)?;
    let report = wharf::gc::run(state, &options).await?;
    for item in &report.removed {
        tracing::info!(dry_run = report.dry_run, item = ?item, "collected");
    }
    Ok(reply(&report, options.grace))
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
    let default_grace = Duration::from_secs(default_grace);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let state = state.clone();
        async move { handle(&state, default_grace, event.payload).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::json;
    use wharf::oci::{Algorithm, Digest};
    use wharf::storage::BlobStore;
    use wharf::storage::fs::FsBlobStore;
    use wharf::storage::redb::RedbMetaStore;

    use super::*;

    /// AWS's documented example of the event a schedule rule sends (see the module doc).
    fn scheduled_event() -> Value {
        json!({
            "version": "0",
            "account": "123456789012",
            "region": "us-east-2",
            "detail": {},
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": "2019-03-01T01:23:45Z",
            "id": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/my-schedule"]
        })
    }

    /// Embedded stores holding one orphan blob, which any real run without grace removes.
    async fn state_with_an_orphan() -> (tempfile::TempDir, AppState, Digest) {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Arc::new(FsBlobStore::open(dir.path()).await.expect("fs"));
        let meta = Arc::new(RedbMetaStore::open(&dir.path().join("meta.redb")).expect("redb"));
        let bytes = b"an orphan blob";
        let digest = Algorithm::Sha256.digest(bytes);
        let state = blobs
            .start_upload("0123456789abcdef0123456789abcdef")
            .await
            .expect("start");
        let body: wharf::storage::ByteStream =
            Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(bytes))]));
        let (state, _) = blobs
            .append_upload("0123456789abcdef0123456789abcdef", state, 0, body)
            .await
            .expect("append");
        blobs
            .finish_upload("0123456789abcdef0123456789abcdef", state, &digest)
            .await
            .expect("finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
        (dir, AppState::new(blobs, meta), digest)
    }

    async fn present(state: &AppState, digest: &Digest) -> bool {
        state.blobs.stat(digest).await.expect("stat").is_some()
    }

    #[tokio::test]
    async fn a_dry_run_spelt_as_a_string_is_refused_and_deletes_nothing() {
        let (_dir, state, orphan) = state_with_an_orphan().await;
        for payload in [
            json!({"dry_run": "true"}),
            json!({"dry_run": 1}),
            json!({"dryrun": true}),
            json!({"dry_run": true, "grace_secs": "0"}),
            json!("run"),
            json!(null),
            json!([]),
        ] {
            let err = handle(&state, Duration::ZERO, payload.clone())
                .await
                .err()
                .unwrap_or_else(|| panic!("{payload} must be refused"));
            assert!(err.to_string().contains("refusing to collect"), "{err}");
            assert!(
                present(&state, &orphan).await,
                "{payload} deleted the orphan"
            );
        }
    }

    #[tokio::test]
    async fn an_eventbridge_event_other_than_the_schedule_is_refused() {
        let (_dir, state, orphan) = state_with_an_orphan().await;
        let mut other = scheduled_event();
        other["detail-type"] = json!("Object Created");
        other["source"] = json!("aws.s3");
        let mut spoofed = scheduled_event();
        spoofed["source"] = json!("acme.custom");
        for payload in [other, spoofed] {
            let err = handle(&state, Duration::ZERO, payload)
                .await
                .expect_err("refused");
            assert!(err.to_string().contains("is not the schedule's"), "{err}");
        }
        assert!(present(&state, &orphan).await);
    }

    #[tokio::test]
    async fn a_valid_dry_run_removes_nothing_and_the_scheduled_event_runs_for_real() {
        let (_dir, state, orphan) = state_with_an_orphan().await;
        let dry = handle(&state, Duration::ZERO, json!({"dry_run": true}))
            .await
            .expect("dry run");
        assert!(dry.dry_run);
        assert_eq!(dry.blobs, 1, "the dry run sees the orphan");
        assert!(present(&state, &orphan).await, "a dry run removes nothing");

        let real = handle(&state, Duration::ZERO, scheduled_event())
            .await
            .expect("scheduled run");
        assert!(!real.dry_run);
        assert_eq!(real.blobs, 1);
        assert!(!present(&state, &orphan).await, "the schedule collects");
    }

    #[test]
    fn a_manual_request_sets_the_grace_and_the_schedule_keeps_the_configured_one() {
        let o = options(json!({"grace_secs": 5}), Duration::from_secs(86400)).expect("request");
        assert_eq!((o.grace, o.dry_run), (Duration::from_secs(5), false));
        let o = options(json!({}), Duration::from_secs(86400)).expect("empty request");
        assert_eq!(o.grace, Duration::from_secs(86400));
        let o = options(scheduled_event(), Duration::from_secs(86400)).expect("schedule");
        assert_eq!((o.grace, o.dry_run), (Duration::from_secs(86400), false));
    }
}
