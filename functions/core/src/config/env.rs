//! The `WHARF_*` environment variables: one line each in [`VARS`], in the order
//! [`Config::apply_env`] applies them, each with the parser of its value.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{AuthConfig, BlobBackend, Config, LogFormat, MetaBackend};

/// How one variable's value lands in the configuration; `Err` is the message of
/// [`super::ConfigError::Env`].
pub(super) type Apply = fn(&mut Config, String) -> Result<(), String>;

/// `"NAME" => field: parser,` for each variable: the value parsed by `parser` (a
/// `fn(String) -> Result<T, String>`) replaces `field`, so a variable overrides the file and an
/// unset one leaves it.
macro_rules! vars {
    ($($name:literal => $field:ident: $parse:ident,)*) => {
        /// Every `WHARF_*` variable of the configuration.
        pub(super) const VARS: &[(&str, Apply)] = &[$(($name, |c, v| {
            c.$field = $parse(v)?;
            Ok(())
        })),*];
    };
}

vars! {
    "WHARF_LISTEN" => listen: socket_addr,
    "WHARF_DATA_DIR" => data_dir: path,
    "WHARF_ALLOW_NON_LOOPBACK" => allow_non_loopback: boolean,
    "WHARF_BLOBS" => blobs: blob_backend,
    "WHARF_META" => meta: meta_backend,
    "WHARF_AUTH" => auth: auth_table,
    "WHARF_BODY_IDLE_TIMEOUT_SECS" => body_idle_timeout_secs: seconds,
    "WHARF_HEADER_READ_TIMEOUT_SECS" => header_read_timeout_secs: seconds,
    "WHARF_MAX_UPLOAD_BODY" => max_upload_body: byte_limit,
    "WHARF_UPLOAD_LANE_URL" => upload_lane_url: lane_url,
    "WHARF_LOG_FORMAT" => log_format: log_format,
}

fn socket_addr(v: String) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|e| format!("{v:?} is not host:port ({e})"))
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "every parser of `vars!` has this signature"
)]
fn path(v: String) -> Result<PathBuf, String> {
    Ok(PathBuf::from(v))
}

/// An empty value is false.
fn boolean(v: String) -> Result<bool, String> {
    match v.as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean")),
    }
}

fn blob_backend(v: String) -> Result<BlobBackend, String> {
    BlobBackend::try_from(v).map_err(|e| e.to_string())
}

fn meta_backend(v: String) -> Result<MetaBackend, String> {
    MetaBackend::try_from(v).map_err(|e| e.to_string())
}

/// The `[auth]` table as TOML text, with the policy inline.
fn auth_table(v: String) -> Result<Option<AuthConfig>, String> {
    toml::from_str(&v)
        .map(Some)
        .map_err(|e| format!("not a valid [auth] table: {e}"))
}

fn seconds(v: String) -> Result<u64, String> {
    v.parse()
        .map_err(|_| "expected a number of seconds".to_owned())
}

/// `""` and `none` lift the limit.
fn byte_limit(v: String) -> Result<Option<u64>, String> {
    match v.as_str() {
        "" | "none" => Ok(None),
        _ => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{v:?} is not a number of bytes")),
    }
}

/// An empty value means no lane; [`Config::apply_env`] checks the scheme of whatever URL is left.
#[expect(
    clippy::unnecessary_wraps,
    reason = "every parser of `vars!` has this signature"
)]
fn lane_url(v: String) -> Result<Option<String>, String> {
    Ok((!v.is_empty()).then_some(v))
}

fn log_format(v: String) -> Result<LogFormat, String> {
    match v.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{v:?} is not text or json")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apply_env` with one variable set, over `c`.
    fn with_env(mut c: Config, name: &str, value: &str) -> Result<Config, String> {
        c.apply_env(|n| (n == name).then(|| value.to_owned()))
            .map(|()| c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_variable_keeps_its_name_and_its_error() {
        let bad = |name: &str, value: &str| {
            with_env(Config::default(), name, value).expect_err("a bad value is refused")
        };
        let env = |name: &str, message: &str| format!("environment variable {name}: {message}");
        assert_eq!(
            bad("WHARF_LISTEN", "nowhere"),
            env(
                "WHARF_LISTEN",
                r#""nowhere" is not host:port (invalid socket address syntax)"#
            )
        );
        assert_eq!(
            bad("WHARF_ALLOW_NON_LOOPBACK", "maybe"),
            env("WHARF_ALLOW_NON_LOOPBACK", r#""maybe" is not a boolean"#)
        );
        assert_eq!(
            bad("WHARF_BLOBS", "s3://"),
            env("WHARF_BLOBS", r#""s3://" names no bucket or table"#)
        );
        let meta = MetaBackend::try_from("nowhere".to_owned()).expect_err("not a backend");
        assert_eq!(
            bad("WHARF_META", "nowhere"),
            env("WHARF_META", &meta.to_string())
        );
        assert!(
            bad("WHARF_AUTH", "policy = 3")
                .starts_with("environment variable WHARF_AUTH: not a valid [auth] table: ")
        );
        for name in [
            "WHARF_BODY_IDLE_TIMEOUT_SECS",
            "WHARF_HEADER_READ_TIMEOUT_SECS",
        ] {
            assert_eq!(bad(name, "soon"), env(name, "expected a number of seconds"));
        }
        assert_eq!(
            bad("WHARF_MAX_UPLOAD_BODY", "4MB"),
            env("WHARF_MAX_UPLOAD_BODY", r#""4MB" is not a number of bytes"#)
        );
        assert_eq!(
            bad("WHARF_UPLOAD_LANE_URL", "uploads.example"),
            env(
                "WHARF_UPLOAD_LANE_URL",
                r#""uploads.example" is not an http(s) URL"#
            )
        );
        assert_eq!(
            bad("WHARF_LOG_FORMAT", "xml"),
            env("WHARF_LOG_FORMAT", r#""xml" is not text or json"#)
        );
    }

    #[test]
    fn every_variable_overrides_the_file_and_an_unset_one_keeps_it() {
        let file = Config::from_toml(
            r#"
            listen = "127.0.0.1:6000"
            data_dir = "/from/file"
            allow_non_loopback = true
            body_idle_timeout_secs = 5
            header_read_timeout_secs = 6
            max_upload_body = 7
            upload_lane_url = "https://file.example"
            log_format = "json"
            "#,
        )
        .expect("valid file");
        let kept = with_env(file.clone(), "WHARF_UNRELATED", "x").expect("nothing set");
        assert_eq!(kept.listen, file.listen);
        assert_eq!(kept.data_dir, file.data_dir);
        assert_eq!(kept.upload_lane_url, file.upload_lane_url);
        assert_eq!(kept.log_format, LogFormat::Json);

        let set = |name: &str, value: &str| with_env(file.clone(), name, value).expect(name);
        assert_eq!(set("WHARF_LISTEN", "127.0.0.1:7000").listen.port(), 7000);
        assert_eq!(
            set("WHARF_DATA_DIR", "/from/env").data_dir,
            PathBuf::from("/from/env")
        );
        assert!(!set("WHARF_ALLOW_NON_LOOPBACK", "").allow_non_loopback);
        assert!(!set("WHARF_ALLOW_NON_LOOPBACK", "no").allow_non_loopback);
        assert!(set("WHARF_ALLOW_NON_LOOPBACK", "yes").allow_non_loopback);
        assert_eq!(set("WHARF_BLOBS", "fs").blobs, BlobBackend::Fs);
        assert_eq!(set("WHARF_META", "redb").meta, MetaBackend::Redb);
        assert!(set("WHARF_AUTH", "").auth.is_some());
        assert_eq!(
            set("WHARF_BODY_IDLE_TIMEOUT_SECS", "50").body_idle_timeout_secs,
            50
        );
        assert_eq!(
            set("WHARF_HEADER_READ_TIMEOUT_SECS", "60").header_read_timeout_secs,
            60
        );
        assert_eq!(set("WHARF_MAX_UPLOAD_BODY", "none").max_upload_body, None);
        assert_eq!(set("WHARF_MAX_UPLOAD_BODY", "").max_upload_body, None);
        assert_eq!(set("WHARF_MAX_UPLOAD_BODY", "70").max_upload_body, Some(70));
        assert_eq!(set("WHARF_UPLOAD_LANE_URL", "").upload_lane_url, None);
        assert_eq!(set("WHARF_LOG_FORMAT", "text").log_format, LogFormat::Text);

        // The lane URL is checked whichever source gave it.
        let bad_file = Config {
            upload_lane_url: Some("ftp://lane".to_owned()),
            ..Config::default()
        };
        assert_eq!(
            with_env(bad_file, "WHARF_UNRELATED", "x").expect_err("not http(s)"),
            r#"environment variable WHARF_UPLOAD_LANE_URL: "ftp://lane" is not an http(s) URL"#
        );
    }
}
