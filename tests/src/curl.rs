//! Raw HTTP requests through curl, for the checks no registry client makes on its own
//! (referrers filters, upload status, chunk by chunk uploads, streaming a blob to disk).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::cmd::Cmd;

/// One HTTP request, sent with [`Request::send`] or [`Request::download`].
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Bytes(Vec<u8>),
    /// Streamed by curl from the file, never held in memory.
    File(PathBuf),
}

/// A complete response: status, final headers (after any `100 Continue`) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes (empty for [`Request::download`], whose body went to a file).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Fails unless the status is `expected`, showing the body (an OCI error, usually).
    pub fn expect_status(&self, expected: u16) -> Result<&Self> {
        if self.status != expected {
            bail!(
                "expected status {expected}, got {}; headers {:?}; body {}",
                self.status,
                self.headers,
                String::from_utf8_lossy(&self.body)
            );
        }
        Ok(self)
    }
}

impl Request {
    /// A request with `method` (e.g. `PATCH`) to `url`.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            method: method.to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: Body::None,
        }
    }

    /// A `GET`.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new("GET", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sends `bytes` as the body (with a `Content-Length`, even when empty).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(bytes.into());
        self
    }

    /// Streams the file at `path` as the body.
    pub fn body_file(mut self, path: &Path) -> Self {
        self.body = Body::File(path.to_owned());
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(&self) -> Result<Response> {
        let scratch = tempfile::Builder::new().prefix("wharf-curl-").tempdir()?;
        let body_path = scratch.path().join("response.body");
        let mut response = self.exchange(scratch.path(), &body_path)?;
        response.body = match std::fs::read(&body_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).context("reading the response body"),
        };
        Ok(response)
    }

    /// Sends the request and streams the response body into `path`.
    pub fn download(&self, path: &Path) -> Result<Response> {
        let scratch = tempfile::Builder::new().prefix("wharf-curl-").tempdir()?;
        self.exchange(scratch.path(), path)
    }

    fn exchange(&self, scratch: &Path, body_out: &Path) -> Result<Response> {
        let headers_path = scratch.join("response.headers");
        let mut cmd = Cmd::new("curl")
            .args(["--silent", "--show-error", "--globoff"])
            .arg("--dump-header")
            .arg(&headers_path)
            .arg("--output")
            .arg(body_out)
            .args(["--write-out", "%{http_code}"])
            // No `Expect: 100-continue` round trip: the registry answers directly.
            .args(["--header", "Expect:"]);
        cmd = if self.method == "HEAD" {
            cmd.arg("--head")
        } else {
            cmd.args(["--request", &self.method])
        };
        for (name, value) in &self.headers {
            cmd = cmd.arg("--header").arg(format!("{name}: {value}"));
        }
        let typed = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if !typed && !matches!(self.body, Body::None) {
            // curl would otherwise label raw bytes as a form.
            cmd = cmd.args(["--header", "Content-Type: application/octet-stream"]);
        }
        match &self.body {
            Body::None => {}
            Body::Bytes(bytes) => {
                let path = scratch.join("request.body");
                std::fs::write(&path, bytes)?;
                let mut arg = std::ffi::OsString::from("@");
                arg.push(&path);
                cmd = cmd.arg("--data-binary").arg(arg);
            }
            Body::File(path) => cmd = cmd.arg("--upload-file").arg(path),
        }
        let out = cmd.arg(&self.url).stdout()?;
        let status = out
            .trim()
            .parse()
            .with_context(|| format!("curl wrote no status code: {out:?}"))?;
        let raw = std::fs::read_to_string(&headers_path).context("reading response headers")?;
        Ok(Response {
            status,
            headers: final_headers(&raw)?,
            body: Vec::new(),
        })
    }
}

/// The header fields of the last response in a `--dump-header` file (which holds interim
/// `1xx` responses too).
fn final_headers(raw: &str) -> Result<Vec<(String, String)>> {
    let block = raw
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .ok_or_else(|| anyhow!("no HTTP response in curl's header dump: {raw:?}"))?;
    Ok(block
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_headers_skip_interim_responses() -> Result<()> {
        let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nRange: 0-9\r\n\
                   location: /v2/a/blobs/uploads/1\r\n\r\n";
        let headers = final_headers(raw)?;
        assert_eq!(
            headers,
            vec![
                ("Range".to_owned(), "0-9".to_owned()),
                ("location".to_owned(), "/v2/a/blobs/uploads/1".to_owned()),
            ]
        );
        Ok(())
    }
}
