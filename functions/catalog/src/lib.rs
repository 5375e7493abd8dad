//! The catalog function: rebuilds the static public catalog into the public bucket when the
//! registry's table says something it shows changed, and on a schedule as a safety net.
//!
//! Two event shapes reach it. A DynamoDB Streams batch (the event source mapping filters the
//! table's stream to tag, referrer and policy items and batches a burst of pushes into one
//! invocation): the build runs if any record is such an item, so a mapping whose filter was
//! lost still causes no useless rebuilds. An EventBridge scheduled event: the build always
//! runs. Builds are incremental (the state lives in the bucket), so either costs a listing of
//! the repositories plus the re-render of those that changed.
//!
//! The environment contract, besides the stores' (see [`wharf::runtime`]):
//! - [`OUT_ENV`]: where the site goes, `s3://BUCKET[/PREFIX]?endpoint=…&region=…` (or a
//!   directory, for tests);
//! - [`HOST_ENV`]: the registry host pull commands name; [`SITE_URL_ENV`] (optional): the
//!   site's public URL;
//! - the deployment secret ([`wharf::runtime::SECRET_ID_ENV`]): the blob store's credentials
//!   (read-only suffice) and the catalog bucket's (`catalog_access_key_id`, …).
//!
//! Layer rule: this crate reads events and configuration and calls [`wharf_catalog::build`]; it
//! renders nothing itself and never writes to the registry's stores.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use wharf::config::{AuthConfig, BlobBackend, Config, MetaBackend};
use wharf::runtime::{self, RuntimeError};
use wharf::storage::key::TAG_PREFIX;
use wharf::storage::{BlobStore, MetaStore};
use wharf_catalog::{FsWriter, Options, S3Target, S3Writer, SiteWriter};

/// Names where the site goes.
pub const OUT_ENV: &str = "WHARF_CATALOG_OUT";
/// Names the registry host shown in pull commands.
pub const HOST_ENV: &str = "WHARF_CATALOG_REGISTRY_HOST";
/// Names the site's public URL (default `https://<host>/`).
pub const SITE_URL_ENV: &str = "WHARF_CATALOG_SITE_URL";

/// Sort-key prefix of referrer items: a new signature or SBOM changes a manifest page.
const REFERRER_PREFIX: &str = "REF#";
/// Partition of the identity policy: a change can make a repository public or private.
const POLICY_PK: &str = "POLICY";

/// Why the function could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// Setting up stores, secret or policy.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A required variable is missing or invalid.
    #[error("{0}")]
    Env(String),
    /// The event is neither a DynamoDB Streams batch nor a scheduled event.
    #[error("unexpected event: {0}")]
    Event(String),
    /// The build failed (the invocation fails, so the stream batch is retried).
    #[error("catalog build: {0}")]
    Build(#[from] wharf_catalog::CatalogError),
}

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Records of the stream that touch what the catalog shows, with the repositories named.
    Changes {
        /// Records about tags, referrers or the policy.
        records: usize,
        /// Repositories they name.
        repos: BTreeSet<String>,
    },
    /// A stream batch with nothing the catalog shows.
    Nothing,
    /// The schedule.
    Schedule,
}

#[derive(Debug, Deserialize)]
struct StreamEvent {
    #[serde(rename = "Records")]
    records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
struct StreamRecord {
    #[serde(rename = "eventSource")]
    source: String,
    dynamodb: StreamData,
}

#[derive(Debug, Deserialize)]
struct StreamData {
    #[serde(rename = "Keys")]
    keys: Keys,
}

#[derive(Debug, Deserialize)]
struct Keys {
    pk: StringAttr,
    sk: StringAttr,
}

#[derive(Debug, Deserialize)]
struct StringAttr {
    #[serde(rename = "S")]
    s: String,
}

/// Reads an event: a DynamoDB Streams batch (`Records`) or an EventBridge scheduled event.
pub fn classify(event: &Value) -> Result<Trigger, FunctionError> {
    if event.get("Records").is_some() {
        let batch: StreamEvent = serde_json::from_value(event.clone())
            .map_err(|e| FunctionError::Event(format!("DynamoDB Streams batch: {e}")))?;
        let mut records = 0;
        let mut repos = BTreeSet::new();
        for r in &batch.records {
            if r.source != "aws:dynamodb" {
                return Err(FunctionError::Event(format!("record from {}", r.source)));
            }
            let (pk, sk) = (&r.dynamodb.keys.pk.s, &r.dynamodb.keys.sk.s);
            let shown = sk.starts_with(TAG_PREFIX) || sk.starts_with(REFERRER_PREFIX);
            if shown || pk == POLICY_PK {
                records += 1;
            }
            if let Some(repo) = pk.strip_prefix("REPO#").filter(|_| shown) {
                repos.insert(repo.to_owned());
            }
        }
        return Ok(if records == 0 {
            Trigger::Nothing
        } else {
            Trigger::Changes { records, repos }
        });
    }
    if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        return Ok(Trigger::Schedule);
    }
    Err(FunctionError::Event(
        "neither a DynamoDB Streams batch nor a scheduled event".into(),
    ))
}

/// What rebuilds the catalog: the stores, where the policy comes from, and the site.
#[derive(Debug)]
pub struct Catalog {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    auth: AuthConfig,
    out: Box<dyn SiteWriter>,
    options: Options,
}

impl Catalog {
    /// A catalog over these stores. The policy is read from `auth` at every build, because it
    /// may live in the table and change between invocations.
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        auth: AuthConfig,
        out: Box<dyn SiteWriter>,
        options: Options,
    ) -> Catalog {
        Catalog {
            meta,
            blobs,
            auth,
            out,
            options,
        }
    }

    /// Cold start: configuration, secret, stores and the site's destination from the
    /// environment.
    pub async fn from_env() -> Result<(Config, Catalog), FunctionError> {
        let file = std::env::var_os(runtime::CONFIG_ENV).map(PathBuf::from);
        let mut config = Config::load(file.as_deref()).map_err(RuntimeError::from)?;
        let secrets = match std::env::var(runtime::SECRET_ID_ENV) {
            Ok(id) => Some(runtime::fetch_secret(&id).await?),
            Err(_) => None,
        };
        if let (Some(s), BlobBackend::S3(s3)) = (&secrets, &mut config.blobs)
            && let Some(credentials) = s.blob_credentials()?
        {
            s3.endpoint.credentials = Some(credentials);
        }
        let auth = config.auth.clone().ok_or_else(|| {
            FunctionError::Env(
                "no [auth] (WHARF_AUTH): without a policy nothing is public and the catalog \
                 would be empty"
                    .into(),
            )
        })?;
        let local = config.blobs == BlobBackend::Fs || config.meta == MetaBackend::Redb;
        let data_dir = if local {
            Some(runtime::data_dir(&config)?)
        } else {
            None
        };
        let (blobs, meta) = runtime::open_stores(&config, data_dir.as_deref()).await?;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let target =
            var(OUT_ENV).ok_or_else(|| FunctionError::Env(format!("{OUT_ENV} is not set")))?;
        let out: Box<dyn SiteWriter> = if target.starts_with("s3://") {
            let credentials = match &secrets {
                Some(s) => s.catalog_credentials()?,
                None => None,
            };
            let t = S3Target::from_url(&target)
                .map_err(|e| FunctionError::Env(e.to_string()))?
                .with_credentials(credentials);
            Box::new(S3Writer::connect(t).await)
        } else {
            Box::new(FsWriter::new(target))
        };
        let host =
            var(HOST_ENV).ok_or_else(|| FunctionError::Env(format!("{HOST_ENV} is not set")))?;
        let options = Options::new(host, var(SITE_URL_ENV));
        Ok((config, Catalog::new(meta, blobs, auth, out, options)))
    }

    /// Handles one event; returns what was done (logged, and the invocation's result).
    pub async fn handle(&self, event: &Value) -> Result<Value, FunctionError> {
        let trigger = classify(event)?;
        let why = match &trigger {
            Trigger::Nothing => {
                tracing::info!("no tag, referrer or policy change in the batch: nothing to do");
                return Ok(json!({ "built": false }));
            }
            Trigger::Changes { records, repos } => {
                tracing::info!(records, repos = ?repos, "rebuilding after changes");
                "changes"
            }
            Trigger::Schedule => {
                tracing::info!("scheduled rebuild");
                "schedule"
            }
        };
        let policy = runtime::load_policy(&self.auth, self.meta.as_ref()).await?;
        let started = std::time::Instant::now();
        // The scheduled build also lists the bucket and deletes repository files no state
        // names: a stream batch and the schedule may overlap, and the state of one build can
        // overwrite the other's.
        let options = Options {
            sweep: trigger == Trigger::Schedule,
            ..self.options.clone()
        };
        let report = wharf_catalog::build(
            self.meta.as_ref(),
            self.blobs.as_ref(),
            &policy,
            self.out.as_ref(),
            &options,
            &|_| {},
        )
        .await?;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            repositories = report.repositories,
            rendered = ?report.rendered,
            removed = ?report.removed,
            ms,
            "catalog built"
        );
        Ok(json!({
            "built": true,
            "trigger": why,
            "repositories": report.repositories,
            "rendered": report.rendered,
            "removed": report.removed,
        }))
    }
}
