//! Building the registry's state from configuration: the one path shared by `wharf serve` and
//! every Lambda function, so both run the same stores and the same authentication.
//!
//! The environment contract of a function (all optional but the stores):
//! - `WHARF_BLOBS`, `WHARF_META`: the stores (see [`crate::config`]);
//! - `WHARF_MAX_UPLOAD_BODY`, `WHARF_UPLOAD_LANE_URL`: the uploads group's body limit (default
//!   [`LAMBDA_MAX_UPLOAD_BODY`] in a function) and the upload lane;
//! - `WHARF_AUTH`: the `[auth]` table as TOML text, with the policy inline (`policy = "…"`);
//! - `WHARF_CONFIG`: a configuration file, read before the variables;
//! - [`SECRET_ID_ENV`]: a Secrets Manager secret holding what must never sit in a template or an
//!   environment variable: the object store's credentials and the registry's public keys
//!   ([`Secrets`]);
//! - [`SIGNING_SECRET_ID_ENV`]: the secret holding the private signing keys, given only to the
//!   functions that sign ([`keys`]).
//!
//! Layer rule: this module picks backends and reads secrets; it never handles a request. Secret
//! values are never logged: [`Secrets`] redacts them in `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

use crate::api::AppState;
use crate::api::lane::UploadRouting;
use crate::auth::{Auth, LivePolicy, POLICY_CACHE_TTL, Policy, PolicySource, SetupError};
use crate::config::{AuthConfig, BlobBackend, Config, ConfigError, LogFormat, MetaBackend};
use crate::storage::aws::{Endpoint, StaticCredentials, sdk_config};
use crate::storage::dynamodb::DynamoMetaStore;
use crate::storage::fs::FsBlobStore;
use crate::storage::redb::RedbMetaStore;
use crate::storage::s3::S3BlobStore;
use crate::storage::{BlobStore, MetaStore, StorageError};

mod keys;

pub use keys::{KeyUse, SIGNING_SECRET_ID_ENV, registry_keys};

/// File name of the embedded metadata database inside the data directory.
pub const META_FILE: &str = "meta.redb";

/// Names the Secrets Manager secret (ARN or name) a function reads at cold start.
pub const SECRET_ID_ENV: &str = "WHARF_SECRET_ID";

/// Body limit of a Lambda function's uploads group when none is configured: a function gets at
/// most 6 MB of event, and binary bodies arrive base64-encoded in it (4/3 larger), so ≈4.4 MB
/// of raw body is the most that can arrive; 4 MB leaves room for headers and the event's JSON.
pub const LAMBDA_MAX_UPLOAD_BODY: u64 = 4_000_000;

/// Names the configuration file.
pub const CONFIG_ENV: &str = "WHARF_CONFIG";

/// What a deployment keeps in its secret: a JSON object with these (all optional) fields.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// PKCS#8 PEM texts of the registry's ES256 keys; the first signs, all verify. They replace
    /// `[auth] signing_keys`. In a deployment only the signing secret holds them.
    #[serde(default)]
    pub signing_keys: Vec<String>,
    /// SPKI PEM texts of the registry's public keys (`openssl pkey -pubout`): what a function
    /// that only verifies tokens needs.
    #[serde(default)]
    pub verify_keys: Vec<String>,
    /// Access key id for the blob store (an R2 API token's id).
    #[serde(default)]
    pub blobs_access_key_id: Option<String>,
    /// Secret access key for the blob store.
    #[serde(default)]
    pub blobs_secret_access_key: Option<String>,
    /// Access key id for the public catalog bucket (an R2 token with write rights on that
    /// bucket only); without it the catalog function writes with the blob store's.
    #[serde(default)]
    pub catalog_access_key_id: Option<String>,
    /// Secret access key for the public catalog bucket.
    #[serde(default)]
    pub catalog_secret_access_key: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field(
                "signing_keys",
                &format!("<{} redacted>", self.signing_keys.len()),
            )
            .field("verify_keys", &self.verify_keys.len())
            .field("blobs_access_key_id", &self.blobs_access_key_id)
            .field("blobs_secret_access_key", &"<redacted>")
            .field("catalog_access_key_id", &self.catalog_access_key_id)
            .field("catalog_secret_access_key", &"<redacted>")
            .finish()
    }
}

impl Secrets {
    /// Parses the secret's JSON text.
    pub fn parse(text: &str) -> Result<Secrets, RuntimeError> {
        // serde_json's message quotes no input beyond a line/column, so no secret leaks here.
        serde_json::from_str(text).map_err(|e| RuntimeError::Secret(e.to_string()))
    }

    /// The blob store's credentials, if the secret holds them.
    pub fn blob_credentials(&self) -> Result<Option<StaticCredentials>, RuntimeError> {
        pair(
            "blobs",
            &self.blobs_access_key_id,
            &self.blobs_secret_access_key,
        )
    }

    /// The public catalog bucket's credentials: its own if the secret holds them, else the
    /// blob store's.
    pub fn catalog_credentials(&self) -> Result<Option<StaticCredentials>, RuntimeError> {
        match pair(
            "catalog",
            &self.catalog_access_key_id,
            &self.catalog_secret_access_key,
        )? {
            Some(own) => Ok(Some(own)),
            None => self.blob_credentials(),
        }
    }
}

fn pair(
    what: &str,
    id: &Option<String>,
    secret: &Option<String>,
) -> Result<Option<StaticCredentials>, RuntimeError> {
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some(StaticCredentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
        })),
        (None, None) => Ok(None),
        _ => Err(RuntimeError::Secret(format!(
            "{what}_access_key_id and {what}_secret_access_key go together"
        ))),
    }
}

/// Why the registry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory (needed by the local backends and a generated key).
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, #[source] std::io::Error),
    /// A local store needs the data directory, and there is none.
    #[error("opening the {0} store: no data directory")]
    NoDataDir(&'static str),
    /// A local store could not be opened (a locked database is [`StorageError::Locked`]). Not
    /// marked as the source: the storage error's text is already in this one, and a CLI error
    /// chain would print it twice.
    #[error("opening the {0} store: {1}")]
    Store(&'static str, StorageError),
    /// Authentication.
    #[error("setting up authentication: {0}")]
    Auth(#[from] SetupError),
    /// The secret could not be read or is malformed (the message never holds its value).
    #[error("the deployment secret: {0}")]
    Secret(String),
    /// `policy_in_table` is set but the metadata store holds no policy, or it is unreadable.
    #[error("the policy in the metadata store: {0}")]
    TablePolicy(String),
}

impl RuntimeError {
    /// True when a store could not be opened because its embedded database is held open
    /// elsewhere (a running `wharf serve`).
    pub fn is_locked(&self) -> bool {
        matches!(self, RuntimeError::Store(_, StorageError::Locked { .. }))
    }
}

/// The identity policy `config` names: a file, inline text, or (`policy_in_table`) the document
/// `wharf policy push` stored in `meta`.
pub async fn load_policy(
    config: &AuthConfig,
    meta: &dyn MetaStore,
) -> Result<Policy, RuntimeError> {
    match Auth::policy_from_config(config) {
        Err(SetupError::PolicyInTable) => {
            let text = meta
                .policy_document()
                .await
                .map_err(|e| RuntimeError::TablePolicy(e.to_string()))?
                .ok_or_else(|| {
                    RuntimeError::TablePolicy(
                        "none is stored yet: run `wharf policy push FILE` first".into(),
                    )
                })?;
            Policy::parse(&text).map_err(|e| RuntimeError::TablePolicy(e.to_string()))
        }
        other => Ok(other?),
    }
}

/// The policy document `wharf policy push` stored in the metadata store, as a source re-read
/// every [`POLICY_CACHE_TTL`] by every process sharing the table, Lambda instances included.
pub struct TablePolicy(pub Arc<dyn MetaStore>);

impl fmt::Debug for TablePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the metadata store's policy document")
    }
}

#[async_trait::async_trait]
impl PolicySource for TablePolicy {
    async fn read(&self) -> Result<String, String> {
        match self.0.policy_document().await {
            Ok(Some(text)) => Ok(text),
            Ok(None) => Err("none is stored yet: run `wharf policy push FILE` first".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn ttl(&self) -> std::time::Duration {
        POLICY_CACHE_TTL
    }
}

/// The policy `config` names, following its source: a file or the metadata store's document is
/// re-read within its bound ([`crate::auth::live`]); an inline policy is fixed.
pub async fn load_live_policy(
    config: &AuthConfig,
    meta: &Arc<dyn MetaStore>,
) -> Result<LivePolicy, RuntimeError> {
    match (&config.policy_file, &config.policy, config.policy_in_table) {
        (Some(path), None, false) => Ok(LivePolicy::from_file(path).map_err(SetupError::from)?),
        (None, None, true) => {
            let source = TablePolicy(meta.clone());
            let text = source.read().await.map_err(RuntimeError::TablePolicy)?;
            let policy =
                Policy::parse(&text).map_err(|e| RuntimeError::TablePolicy(e.to_string()))?;
            Ok(LivePolicy::reloading(policy, text, Arc::new(source)))
        }
        _ => Ok(LivePolicy::fixed(load_policy(config, meta.as_ref()).await?)),
    }
}

/// Sets up logging to stderr: `WHARF_LOG` filters (default `info`), `format` shapes lines.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Starts logging for a function whose cold start produced `ready`: in the configured format,
/// or, when the start failed before a configuration was known, as JSON with the error logged
/// (its text never holds a secret value). Hands `ready` back for the caller to use or return.
pub fn start_logging<T, E: std::fmt::Display>(
    ready: Result<(Config, T), E>,
) -> Result<(Config, T), E> {
    match &ready {
        Ok((config, _)) => init_logging(config.log_format),
        Err(e) => {
            init_logging(LogFormat::Json);
            tracing::error!(error = %e, "cold start failed");
        }
    }
    ready
}

/// Reads the configuration (`WHARF_CONFIG`, then `WHARF_*`) and the secrets, and builds the
/// state: what a Lambda function does at cold start. `key_use` says whether the function
/// mints tokens; one that does not keeps no private key.
pub async fn state_from_env(key_use: KeyUse) -> Result<(Config, AppState), RuntimeError> {
    let file = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
    let mut config = Config::load(file.as_deref())?;
    config.max_upload_body.get_or_insert(LAMBDA_MAX_UPLOAD_BODY);
    let secrets = secrets_from_env().await?;
    let state = build_state(&config, secrets.as_ref(), key_use).await?;
    Ok((config, state))
}

/// The deployment's secrets named by [`SECRET_ID_ENV`] and [`SIGNING_SECRET_ID_ENV`] (either,
/// both or none), merged; `None` when neither is set.
pub async fn secrets_from_env() -> Result<Option<Secrets>, RuntimeError> {
    let mut secrets = match std::env::var(SECRET_ID_ENV) {
        Ok(id) => Some(fetch_secret(&id).await?),
        Err(_) => None,
    };
    if let Ok(id) = std::env::var(SIGNING_SECRET_ID_ENV) {
        let signing = fetch_secret(&id).await?;
        secrets
            .get_or_insert_with(Secrets::default)
            .merge_signing(signing)?;
    }
    Ok(secrets)
}

/// Reads a deployment secret from Secrets Manager (region and credentials from the standard
/// chain: the function's role).
pub async fn fetch_secret(id: &str) -> Result<Secrets, RuntimeError> {
    let sdk = sdk_config(&Endpoint::default()).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            RuntimeError::Secret(format!(
                "reading {id}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| RuntimeError::Secret(format!("{id} holds no SecretString")))?;
    Secrets::parse(text)
}

/// Builds the state `config` describes, with `secrets` (if any) supplying registry keys and the
/// blob store's credentials. The data directory is created only when something lives in it.
pub async fn build_state(
    config: &Config,
    secrets: Option<&Secrets>,
    key_use: KeyUse,
) -> Result<AppState, RuntimeError> {
    let mut config = config.clone();
    if let (Some(s), BlobBackend::S3(s3)) = (secrets, &mut config.blobs)
        && let Some(credentials) = s.blob_credentials()?
    {
        s3.endpoint.credentials = Some(credentials);
    }
    let keys_from_secret = secrets.is_some_and(Secrets::has_keys);
    let needs_dir = config.blobs == BlobBackend::Fs
        || config.meta == MetaBackend::Redb
        || config.auth.as_ref().is_some_and(|a| {
            a.signing_keys.is_empty() && !keys_from_secret && key_use == KeyUse::Sign
        });
    let data_dir = if needs_dir {
        Some(data_dir(&config)?)
    } else {
        None
    };
    let (blobs, meta) = open_stores(&config, data_dir.as_deref()).await?;
    let mut state = AppState::new(blobs, meta);
    state.body_idle_timeout = std::time::Duration::from_secs(config.body_idle_timeout_secs.max(1));
    if config.rate_limit.applies(config.auth.is_some()) {
        state = state.with_rate_limits(&config.rate_limit);
    }
    state.max_upload_body = config.max_upload_body;
    state.upload_routing = UploadRouting {
        lane_url: config.upload_lane_url.clone(),
        capabilities: config.upload_lane_url.is_some(),
    };
    let Some(auth) = &config.auth else {
        tracing::warn!("development mode: no [auth] configured, every request is allowed");
        return Ok(state);
    };
    let policy = load_live_policy(auth, &state.meta).await?;
    let keys = registry_keys(auth, secrets, data_dir.as_deref(), key_use)?;
    let loaded = Auth::new(auth, Policy::default(), keys)?.with_live_policy(policy);
    tracing::info!(
        issuers = auth.issuers.len(),
        "authentication enabled: deny by default"
    );
    Ok(state.with_auth(Arc::new(loaded)))
}

/// Creates the configured data directory and returns its canonical path.
pub fn data_dir(config: &Config) -> Result<PathBuf, RuntimeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| RuntimeError::DataDir(dir.clone(), e))?;
    dir.canonicalize()
        .map_err(|e| RuntimeError::DataDir(dir.clone(), e))
}

/// Opens the blob store `config` names; `data_dir` is needed by the filesystem store.
pub async fn open_blobs(
    config: &Config,
    data_dir: Option<&Path>,
) -> Result<Arc<dyn BlobStore>, RuntimeError> {
    Ok(match &config.blobs {
        BlobBackend::Fs => {
            let dir = data_dir.ok_or(RuntimeError::NoDataDir("blob"))?;
            let store = FsBlobStore::open(dir)
                .await
                .map_err(|e| RuntimeError::Store("blob", e))?;
            tracing::info!(blobs = %format!("fs:{}", dir.display()), "blob store");
            Arc::new(store)
        }
        BlobBackend::S3(s3) => {
            tracing::info!(blobs = %format!("s3:{}", s3.bucket), "blob store");
            Arc::new(S3BlobStore::connect(s3.clone()).await)
        }
    })
}

/// Opens the blob and metadata stores `config` names (any mix of embedded and cloud).
pub async fn open_stores(
    config: &Config,
    data_dir: Option<&Path>,
) -> Result<(Arc<dyn BlobStore>, Arc<dyn MetaStore>), RuntimeError> {
    let blobs = open_blobs(config, data_dir).await?;
    let meta: Arc<dyn MetaStore> = match &config.meta {
        MetaBackend::Redb => {
            let dir = data_dir.ok_or(RuntimeError::NoDataDir("metadata"))?;
            let path = dir.join(META_FILE);
            let store =
                RedbMetaStore::open(&path).map_err(|e| RuntimeError::Store("metadata", e))?;
            tracing::info!(meta = %format!("redb:{}", path.display()), "metadata store");
            Arc::new(store)
        }
        MetaBackend::DynamoDb(d) => {
            tracing::info!(meta = %format!("dynamodb:{}", d.table), "metadata store");
            Arc::new(DynamoMetaStore::connect(d.clone(), blobs.clone()).await)
        }
    };
    Ok((blobs, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_their_values_in_debug() {
        let s = Secrets::parse(
            r#"{"signing_keys":["-----BEGIN PRIVATE KEY-----sekrit"],
                "blobs_access_key_id":"AKID","blobs_secret_access_key":"hunter2"}"#,
        )
        .expect("valid secret");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("sekrit") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("AKID"), "the key id is not secret: {shown}");
    }

    #[test]
    fn the_catalog_writes_with_its_own_token_else_the_blob_store_s() {
        let blobs_only =
            Secrets::parse(r#"{"blobs_access_key_id":"B","blobs_secret_access_key":"b"}"#)
                .expect("valid");
        let c = blobs_only.catalog_credentials().expect("ok").expect("some");
        assert_eq!(c.access_key_id, "B");
        let both = Secrets::parse(
            r#"{"blobs_access_key_id":"B","blobs_secret_access_key":"b",
                "catalog_access_key_id":"C","catalog_secret_access_key":"topsecret"}"#,
        )
        .expect("valid");
        let c = both.catalog_credentials().expect("ok").expect("some");
        assert_eq!(c.access_key_id, "C");
        assert!(!format!("{both:?}").contains("topsecret"));
        let half = Secrets::parse(r#"{"catalog_access_key_id":"C"}"#).expect("valid");
        assert!(half.catalog_credentials().is_err());
    }

    #[test]
    fn a_half_credential_in_the_secret_is_refused() {
        let s = Secrets::parse(r#"{"blobs_access_key_id":"AKID"}"#).expect("valid json");
        assert!(s.blob_credentials().is_err());
        assert!(Secrets::parse(r#"{"signing_key":"typo"}"#).is_err());
    }

    #[tokio::test]
    async fn signing_keys_from_the_secret_need_no_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().join("never-created"),
            blobs: BlobBackend::S3(
                crate::storage::s3::S3Config::from_url("s3://b?endpoint=http://127.0.0.1:1")
                    .expect("url"),
            ),
            meta: MetaBackend::DynamoDb(
                crate::storage::dynamodb::DynamoConfig::from_url(
                    "dynamodb://t?endpoint=http://127.0.0.1:1",
                )
                .expect("url"),
            ),
            auth: Some(toml::from_str("policy = \"\"").expect("auth table, empty policy")),
            ..Config::default()
        };
        let pem = crate::auth::token::generate_pem().expect("key");
        let secrets = Secrets {
            signing_keys: vec![pem],
            ..Secrets::default()
        };
        let state = build_state(&config, Some(&secrets), KeyUse::Sign)
            .await
            .expect("state");
        assert!(state.auth.is_some());
        assert!(!config.data_dir.exists(), "nothing local was needed");
    }

    #[test]
    fn readme_deployment_auth_example_is_a_valid_auth_table() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("cat > auth.toml <<'TOML'\n")
            .expect("the README's auth.toml example");
        let body = &readme[start..];
        let body = &body[body.find('\n').expect("line") + 1..body.find("   TOML\n").expect("end")];
        let text: String = body
            .lines()
            .map(|l| l.strip_prefix("   ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let mut config = Config::default();
        config
            .apply_env(|n| (n == "WHARF_AUTH").then(|| text.clone()))
            .expect("the example is a valid [auth] table");
        let auth = config.auth.expect("auth");
        assert_eq!(
            auth.issuers.len(),
            1,
            "[[issuer]] must come after the policy"
        );
        Auth::policy_from_config(&auth).expect("the inline policy is valid");
    }

    #[tokio::test]
    async fn a_policy_kept_in_the_metadata_store_is_loaded_from_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().to_owned(),
            auth: Some(toml::from_str("policy_in_table = true").expect("auth table")),
            ..Config::default()
        };
        let err = build_state(&config, None, KeyUse::Sign)
            .await
            .expect_err("nothing stored yet");
        assert!(err.to_string().contains("wharf policy push"), "{err}");
        {
            let (_, meta) = open_stores(&config, Some(dir.path()))
                .await
                .expect("stores");
            meta.put_policy_document("public = [\"shared/*\"]\n")
                .await
                .expect("push");
        }
        let state = build_state(&config, None, KeyUse::Sign)
            .await
            .expect("state");
        let auth = state.auth.expect("auth");
        let repo = crate::oci::RepoName::parse("shared/tool").expect("name");
        assert!(
            auth.policy().is_public(&repo),
            "the stored policy is in force"
        );
        // A revocation pushed later reaches this warm instance within the cache bound: not
        // before it (one table read per bound), and at the first request after it.
        state
            .meta
            .put_policy_document("public = [\"other/*\"]\n")
            .await
            .expect("push");
        assert_eq!(POLICY_CACHE_TTL, std::time::Duration::from_secs(30));
        assert_eq!(
            auth.live_policy().refresh().await,
            crate::auth::live::Reload::NotDue
        );
        assert_eq!(
            auth.live_policy().reload().await,
            crate::auth::live::Reload::Replaced,
            "what refresh() does once the bound has passed"
        );
        let other = crate::oci::RepoName::parse("other/tool").expect("name");
        assert!(auth.policy().is_public(&other) && !auth.policy().is_public(&repo));
        let both: AuthConfig =
            toml::from_str("policy_in_table = true\npolicy = \"\"").expect("toml");
        assert!(
            Auth::policy_from_config(&both).is_err(),
            "two sources are refused"
        );
    }
}
