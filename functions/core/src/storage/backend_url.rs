//! Backend URLs: `s3://bucket?endpoint=…&region=…`, `dynamodb://table?…`, `fs`, `redb`.
//!
//! A deliberately small grammar: `<scheme>://<name>[?key=value&…]`, values percent-decoded, so
//! an endpoint like `http://127.0.0.1:9000` can be written as is or encoded.

use std::collections::BTreeMap;

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

fn decode(s: &str) -> Result<String, BackendUrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| BackendUrlError(format!("bad percent escape in {s:?}")))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| BackendUrlError(format!("{s:?} is not UTF-8")))
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
}
