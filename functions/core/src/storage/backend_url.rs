//! Backend URLs: `s3://bucket?endpoint=…&region=…`, `dynamodb://table?…`, `fs`, `redb`.
//!
//! A deliberately small grammar: `<scheme>://<name>[?key=value&…]`, values percent-decoded, so
//! an endpoint like `http://127.0.0.1:9000` can be written as is or encoded.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

/// A parsed backend URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl {
    /// `s3`, `dynamodb`, …
    pub scheme: String,
    /// The bucket or table.
    pub name: String,
    /// Query parameters.
    pub params: BTreeMap<String, String>,
}

/// Why a backend URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendUrlError(pub String);

impl BackendUrl {
    /// Parses `<scheme>://<name>[?query]`.
    pub fn parse(s: &str) -> Result<Self, BackendUrlError> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| BackendUrlError(format!("{s:?} is not <scheme>://<name>[?…]")))?;
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        let name = name.trim_end_matches('/');
        if name.is_empty() {
            return Err(BackendUrlError(format!("{s:?} names no bucket or table")));
        }
        let mut params = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            if params.insert(k.clone(), v).is_some() {
                return Err(BackendUrlError(format!("parameter {k:?} given twice")));
            }
        }
        Ok(BackendUrl {
            scheme: scheme.to_ascii_lowercase(),
            name: decode(name)?,
            params,
        })
    }

    /// Takes a parameter out (so that [`BackendUrl::finish`] can refuse unknown ones).
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.params.remove(key)
    }

    /// Takes a boolean parameter.
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>, BackendUrlError> {
        self.take(key)
            .map(|v| match v.as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(BackendUrlError(format!("{key}={v:?} is not a boolean"))),
            })
            .transpose()
    }

    /// Takes an unsigned integer parameter.
    pub fn take_u64(&mut self, key: &str) -> Result<Option<u64>, BackendUrlError> {
        self.take(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| BackendUrlError(format!("{key}={v:?} is not a number")))
            })
            .transpose()
    }

    /// Fails if parameters are left that nobody took.
    pub fn finish(self) -> Result<(), BackendUrlError> {
        match self.params.keys().next() {
            None => Ok(()),
            Some(k) => Err(BackendUrlError(format!(
                "unknown parameter {k:?} for {}://",
                self.scheme
            ))),
        }
    }
}

/// Percent-decodes `s` (`percent-encoding`), refusing what that crate lets through: a `%` not
/// followed by two hex digits is a typo in a configuration, not a literal `%`, and the decoded
/// bytes must be UTF-8.
fn decode(s: &str) -> Result<String, BackendUrlError> {
    let well_formed = s.split('%').skip(1).all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(BackendUrlError(format!("bad percent escape in {s:?}")));
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| BackendUrlError(format!("{s:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_decoded_params() {
        let u =
            BackendUrl::parse("s3://my-bucket?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=auto")
                .expect("valid");
        assert_eq!(u.scheme, "s3");
        assert_eq!(u.name, "my-bucket");
        assert_eq!(u.params["endpoint"], "http://127.0.0.1:9000");
        assert_eq!(u.params["region"], "auto");
        let raw = BackendUrl::parse("dynamodb://t?endpoint=http://127.0.0.1:5000").expect("valid");
        assert_eq!(raw.params["endpoint"], "http://127.0.0.1:5000");
    }

    #[test]
    fn refuses_malformed_urls() {
        assert!(BackendUrl::parse("bucket").is_err());
        assert!(BackendUrl::parse("s3://").is_err());
        assert!(BackendUrl::parse("s3://b?x=%zz").is_err());
        assert!(BackendUrl::parse("s3://b?x=1&x=2").is_err());
        let mut u = BackendUrl::parse("s3://b?flag=maybe&other=1").expect("valid");
        assert!(u.take_bool("flag").is_err());
        assert!(u.finish().is_err(), "unknown parameters are refused");
    }

    #[test]
    fn a_bad_percent_escape_is_refused_not_kept_literally() {
        for bad in ["%zz", "%4", "%", "a%+f", "%-1", "%\u{e9}9", "%%41"] {
            let e = BackendUrl::parse(&format!("s3://b?endpoint={bad}")).expect_err(bad);
            assert!(e.0.starts_with("bad percent escape in "), "{bad}: {e}");
        }
        let e = BackendUrl::parse("s3://b%2").expect_err("bad escape in the name");
        assert!(e.0.starts_with("bad percent escape in "), "{e}");
    }

    #[test]
    fn decoded_bytes_that_are_not_utf8_are_refused() {
        let e = BackendUrl::parse("s3://b?region=%ff%fe").expect_err("not UTF-8");
        assert_eq!(e.0, r#""%ff%fe" is not UTF-8"#);
        let ok = BackendUrl::parse("s3://b?region=caf%C3%A9%20%41").expect("UTF-8");
        assert_eq!(ok.params["region"], "caf\u{e9} A");
    }
}
