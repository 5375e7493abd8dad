//! One typed configuration shared by every binary: defaults, then a TOML file, then `WHARF_*`
//! environment variables (their table, one line each, is in `config/env.rs`); a binary's own
//! flags go last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod env;

use crate::storage::backend_url::BackendUrlError;
use crate::storage::dynamodb::DynamoConfig;
use crate::storage::s3::S3Config;

/// Default listen address: loopback only, the registry port clients expect.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "wharf-data";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Wharf's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address `wharf serve` binds.
    pub listen: SocketAddr,
    /// Directory holding blobs, staged uploads and the metadata database.
    pub data_dir: PathBuf,
    /// Permit binding a non-loopback address without `[auth]`: such a registry would accept
    /// pushes from anyone, so this must be asked for explicitly.
    pub allow_non_loopback: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Where blob bytes live (`blobs = "s3://…"`, `WHARF_BLOBS`); default: files under
    /// `data_dir`.
    pub blobs: BlobBackend,
    /// Where metadata lives (`meta = "dynamodb://…"`, `WHARF_META`); default: the embedded
    /// database under `data_dir`.
    pub meta: MetaBackend,
    /// Authentication. Absent: development mode, where anyone on loopback may do anything (and
    /// a non-loopback address is refused). Present: deny by default, tokens required.
    pub auth: Option<AuthConfig>,
    /// Request rate limits (`[rate_limit]`).
    pub rate_limit: RateLimitConfig,
    /// Seconds a request body may deliver no byte before the request fails
    /// (`WHARF_BODY_IDLE_TIMEOUT_SECS`).
    pub body_idle_timeout_secs: u64,
    /// Seconds `wharf serve` waits for a request's complete header block before closing the
    /// connection (`WHARF_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout_secs: u64,
    /// Largest request body the uploads group accepts, in bytes (`WHARF_MAX_UPLOAD_BODY`).
    /// Unset: no limit (the local server streams any size); a Lambda function defaults to
    /// [`crate::runtime::LAMBDA_MAX_UPLOAD_BODY`]. A body over it gets `SIZE_INVALID`/413 naming
    /// the limit.
    pub max_upload_body: Option<u64>,
    /// Base URL of an upload lane (`WHARF_UPLOAD_LANE_URL`, e.g. `https://uploads.example.com`):
    /// upload sessions then answer with `Location`s there, carrying a capability for the
    /// session. The lane is `wharf serve --only uploads` on the same bucket and table.
    pub upload_lane_url: Option<String>,
    /// Garbage collection removes only what has been idle for longer than this (seconds):
    /// unreferenced blobs, upload sessions, staging (`gc_grace_secs`; `wharf gc --grace`).
    pub gc_grace_secs: u64,
    /// `wharf serve` collects garbage in-process every this many seconds (0: never). The
    /// embedded database admits one process, so this is how a running local registry is
    /// collected; in the cloud a scheduled function does it.
    pub gc_interval_secs: u64,
}

/// Default of [`Config::header_read_timeout_secs`]: a header block is a few hundred bytes, so any
/// working client sends it at once; a client trickling it is holding the connection hostage.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;

/// Default of [`Config::body_idle_timeout_secs`]: far longer than any pause of a working client,
/// short enough that a stalled one does not hold its upload session for long.
pub const DEFAULT_BODY_IDLE_TIMEOUT_SECS: u64 = 60;

/// Request rate limits per caller (the `[rate_limit]` table). A verified identity is limited by
/// its issuer and subject; anyone else by client address (IPv6 by /64). Over the limit:
/// `TOOMANYREQUESTS` (429) with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// On or off; unset means on with `[auth]` and off in development mode.
    pub enabled: Option<bool>,
    /// Sustained requests per second of one identity.
    pub identity_per_second: u32,
    /// Requests one identity may send at once after being idle.
    pub identity_burst: u32,
    /// Sustained requests per second of one anonymous client address.
    pub anonymous_per_second: u32,
    /// Requests one anonymous address may send at once after being idle.
    pub anonymous_burst: u32,
}

impl Default for RateLimitConfig {
    /// Generous enough for a CI fleet pulling many-layer images (a pull of a 50-layer image is
    /// about 55 requests) yet bounding what one caller can make the stores do.
    fn default() -> Self {
        RateLimitConfig {
            enabled: None,
            identity_per_second: 200,
            identity_burst: 1_000,
            anonymous_per_second: 50,
            anonymous_burst: 300,
        }
    }
}

impl RateLimitConfig {
    /// Whether limits apply, given whether `[auth]` is configured.
    pub fn applies(&self, auth_configured: bool) -> bool {
        self.enabled.unwrap_or(auth_configured)
    }
}

/// Default lifetime of a registry access token, in seconds.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 300;

/// Default lifetime of a refresh token (`docker login`), in seconds: one week.
pub const DEFAULT_REFRESH_TTL_SECS: u64 = 7 * 24 * 3600;

/// Authentication settings (the `[auth]` table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The service name in challenges and tokens (`service=` of the token spec).
    #[serde(default = "default_service")]
    pub service: String,
    /// Public base URL of the registry (e.g. `https://registry.example.com`), used for the token
    /// realm. Unset: `https://` and the domain API Gateway received the request at (under
    /// Lambda), else each request's `Host` header, when it is a plain `host[:port]`, over plain
    /// HTTP (local use). Required for `wharf serve` on a non-loopback address
    /// ([`Config::check_serve_exposure`]).
    #[serde(default)]
    pub public_url: Option<String>,
    /// The policy file (identities, grants, public repositories). Exactly one of `policy_file`,
    /// `policy` and `policy_in_table` is given.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    /// The policy itself, as TOML text: for runtimes without a file system of their own (a
    /// Lambda function gets it through `WHARF_AUTH`).
    #[serde(default)]
    pub policy: Option<String>,
    /// Read the policy from the metadata store (put there by `wharf policy push FILE`), so every
    /// function and server sharing the table shares one policy.
    #[serde(default)]
    pub policy_in_table: bool,
    /// PKCS#8 PEM files of the registry's ES256 keys; the first signs, all verify. Unset: one
    /// key at `<data_dir>/keys/registry-es256.pem`, created on first start.
    #[serde(default)]
    pub signing_keys: Vec<PathBuf>,
    /// Access token lifetime in seconds (at most 900).
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// Refresh token lifetime in seconds (at most 30 days).
    #[serde(default = "default_refresh_ttl")]
    pub refresh_ttl_secs: u64,
    /// Trusted OIDC issuers.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
}

/// A trusted OIDC issuer (an `[[auth.issuer]]` entry).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer URL, exactly as in its tokens' `iss`.
    pub issuer: String,
    /// Audiences accepted from this issuer (at least one).
    pub audiences: Vec<String>,
    /// Signature algorithms accepted from this issuer: RS256, ES256, EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// People log in through this issuer (`wharf login`, `docker login` by hand), so its
    /// identities may get refresh tokens. Off by default: a CI issuer's ID token lives minutes,
    /// and a refresh token would turn one leaked job token into weeks of access.
    #[serde(default)]
    pub interactive: bool,
}

fn default_service() -> String {
    "wharf".to_owned()
}

fn default_token_ttl() -> u64 {
    DEFAULT_TOKEN_TTL_SECS
}

fn default_refresh_ttl() -> u64 {
    DEFAULT_REFRESH_TTL_SECS
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()]
}

/// The blob store: `fs` (under the data directory) or `s3://<bucket>?endpoint=&region=&…`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum BlobBackend {
    /// Files under the data directory.
    #[default]
    Fs,
    /// An S3-compatible bucket (R2, AWS S3, …).
    S3(S3Config),
}

impl TryFrom<String> for BlobBackend {
    type Error = BackendUrlError;

    fn try_from(v: String) -> Result<Self, Self::Error> {
        match v.as_str() {
            "fs" => Ok(BlobBackend::Fs),
            _ => S3Config::from_url(&v).map(BlobBackend::S3),
        }
    }
}

/// The metadata store: `redb` (embedded, under the data directory) or
/// `dynamodb://<table>?endpoint=&region=`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum MetaBackend {
    /// The embedded database file under the data directory.
    #[default]
    Redb,
    /// A DynamoDB table.
    DynamoDb(DynamoConfig),
}

impl TryFrom<String> for MetaBackend {
    type Error = BackendUrlError;

    fn try_from(v: String) -> Result<Self, Self::Error> {
        match v.as_str() {
            "redb" => Ok(MetaBackend::Redb),
            _ => DynamoConfig::from_url(&v).map(MetaBackend::DynamoDb),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5000))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            allow_non_loopback: false,
            log_format: LogFormat::Text,
            blobs: BlobBackend::Fs,
            meta: MetaBackend::Redb,
            auth: None,
            rate_limit: RateLimitConfig::default(),
            body_idle_timeout_secs: DEFAULT_BODY_IDLE_TIMEOUT_SECS,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            max_upload_body: None,
            upload_lane_url: None,
            gc_grace_secs: crate::gc::DEFAULT_GRACE.as_secs(),
            gc_interval_secs: crate::gc::DEFAULT_INTERVAL.as_secs(),
        }
    }
}

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// An environment variable has an invalid value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// `wharf serve` would listen beyond loopback with `[auth]` but no `public_url`.
    #[error(
        "refusing to listen on {0} with [auth] but no auth.public_url: the token realm would \
         be built from each request's Host header over plain http, so clients would send their \
         credentials wherever a Host header points. Set auth.public_url to the https URL \
         clients reach this registry at (e.g. public_url = \"https://registry.example.com\")"
    )]
    NoPublicUrl(SocketAddr),
}

impl Config {
    /// What `wharf serve` checks about exposure before it binds: an address beyond loopback
    /// with `[auth]` needs `public_url`, the one trustworthy source of the token realm there
    /// (a proxy's forwarded headers are not read: any client could write them).
    pub fn check_serve_exposure(&self) -> Result<(), ConfigError> {
        match &self.auth {
            Some(auth) if !self.listen.ip().is_loopback() && auth.public_url.is_none() => {
                Err(ConfigError::NoPublicUrl(self.listen))
            }
            _ => Ok(()),
        }
    }

    /// Loads defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Parses a TOML document over the defaults.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Applies `WHARF_*` variables read through `get`, in the order of their table
    /// (`config/env.rs`); the first bad value stops it. An upload lane URL from any source must
    /// then be http(s).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for &(name, apply) in env::VARS {
            if let Some(value) = get(name) {
                apply(self, value).map_err(|message| ConfigError::Env { name, message })?;
            }
        }
        if let Some(url) = &self.upload_lane_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::Env {
                name: "WHARF_UPLOAD_LANE_URL",
                message: format!("{url:?} is not an http(s) URL"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback() {
        let c = Config::default();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.listen.port(), 5000);
        assert!(!c.allow_non_loopback);
    }

    #[test]
    fn file_then_env() {
        let mut c = Config::from_toml("listen = \"127.0.0.1:6000\"\ndata_dir = \"/srv/wharf\"\n")
            .expect("valid toml");
        assert_eq!(c.listen.port(), 6000);
        c.apply_env(|n| (n == "WHARF_LISTEN").then(|| "127.0.0.1:7000".to_owned()))
            .expect("valid env");
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.data_dir, PathBuf::from("/srv/wharf"));
    }

    #[test]
    fn backends_default_to_embedded_and_parse_from_file_and_env() {
        let c = Config::default();
        assert_eq!((&c.blobs, &c.meta), (&BlobBackend::Fs, &MetaBackend::Redb));
        let mut c = Config::from_toml(
            "blobs = \"s3://wharf?endpoint=https://acct.r2.cloudflarestorage.com&region=auto\"\n",
        )
        .expect("valid toml");
        let BlobBackend::S3(s3) = &c.blobs else {
            panic!("s3 backend expected, got {:?}", c.blobs);
        };
        assert_eq!(s3.bucket, "wharf");
        assert_eq!(s3.endpoint.region.as_deref(), Some("auto"));
        assert_eq!(c.meta, MetaBackend::Redb, "any mix is allowed");
        c.apply_env(|n| match n {
            "WHARF_BLOBS" => Some("fs".to_owned()),
            "WHARF_META" => Some("dynamodb://tbl?endpoint=http://127.0.0.1:8000".to_owned()),
            _ => None,
        })
        .expect("valid env");
        assert_eq!(c.blobs, BlobBackend::Fs);
        let MetaBackend::DynamoDb(d) = &c.meta else {
            panic!("dynamodb backend expected");
        };
        assert_eq!(d.table, "tbl");
        assert_eq!(d.endpoint.url.as_deref(), Some("http://127.0.0.1:8000"));
        assert!(Config::from_toml("blobs = \"gcs://b\"").is_err());
        assert!(Config::from_toml("meta = \"dynamodb://t?nope=1\"").is_err());
        assert!(
            c.apply_env(|n| (n == "WHARF_BLOBS").then(|| "s3://b?part_size=1".to_owned()))
                .is_err()
        );
    }

    #[test]
    fn serving_beyond_loopback_with_auth_needs_a_public_url() {
        let auth: AuthConfig = toml::from_str("policy = ''").expect("auth table");
        let mut c = Config {
            auth: Some(auth),
            ..Config::default()
        };
        assert!(c.check_serve_exposure().is_ok(), "loopback needs nothing");
        c.listen = "0.0.0.0:5000".parse().expect("addr");
        let err = c.check_serve_exposure().expect_err("refused");
        assert!(err.to_string().contains("public_url"), "{err}");
        if let Some(a) = c.auth.as_mut() {
            a.public_url = Some("https://registry.example.com".into());
        }
        assert!(c.check_serve_exposure().is_ok());
    }

    #[test]
    fn auth_table_with_inline_policy_comes_from_the_environment() {
        let mut c = Config::default();
        c.apply_env(|n| {
            (n == "WHARF_AUTH").then(|| {
                "service = \"registry.example.com\"\npolicy = \"public = []\"\n".to_owned()
            })
        })
        .expect("valid env");
        let auth = c.auth.expect("auth configured");
        assert_eq!(auth.service, "registry.example.com");
        assert_eq!(auth.policy.as_deref(), Some("public = []"));
        assert_eq!(auth.policy_file, None);
        let mut c = Config::default();
        assert!(
            c.apply_env(|n| (n == "WHARF_AUTH").then(|| "policy = 3".to_owned()))
                .is_err()
        );
    }

    #[test]
    fn upload_limit_and_lane_come_from_file_and_env() {
        let mut c = Config::from_toml(
            "max_upload_body = 4000000\nupload_lane_url = \"https://uploads.example.com\"\n",
        )
        .expect("valid toml");
        assert_eq!(c.max_upload_body, Some(4_000_000));
        assert_eq!(
            c.upload_lane_url.as_deref(),
            Some("https://uploads.example.com")
        );
        c.apply_env(|n| (n == "WHARF_MAX_UPLOAD_BODY").then(|| "1024".to_owned()))
            .expect("valid env");
        assert_eq!(c.max_upload_body, Some(1024));
        assert_eq!(Config::default().max_upload_body, None, "local: no limit");
        assert!(
            c.apply_env(|n| (n == "WHARF_MAX_UPLOAD_BODY").then(|| "4MB".to_owned()))
                .is_err()
        );
        assert!(
            c.apply_env(|n| (n == "WHARF_UPLOAD_LANE_URL").then(|| "uploads.example".to_owned()))
                .is_err()
        );
    }

    #[test]
    fn unknown_keys_and_bad_env_are_errors() {
        assert!(Config::from_toml("listne = \"x\"").is_err());
        let mut c = Config::default();
        assert!(
            c.apply_env(|n| (n == "WHARF_LISTEN").then(|| "nowhere".to_owned()))
                .is_err()
        );
        assert!(
            c.apply_env(|n| (n == "WHARF_LOG_FORMAT").then(|| "xml".to_owned()))
                .is_err()
        );
    }
}
