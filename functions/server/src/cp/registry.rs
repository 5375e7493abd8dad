//! A small OCI distribution client for `wharf cp`: Docker token auth, manifests, blob reads,
//! and blob pushes that prefer Wharf's direct uploads (presigned PUTs bound to the digest) and
//! fall back to chunked or monolithic pushes through the registry.

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use wharf_server::client::realm;

use super::progress::Meter;

/// Media types asked for when reading manifests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Chunk size for registries that advertise no `OCI-Chunk-Min-Length` but refuse a body as too
/// large: under the ≈4.4 MB a Lambda function can take.
const FALLBACK_CHUNK: u64 = 4_000_000;

/// Credentials for the token endpoint.
#[derive(Clone)]
pub enum Credentials {
    /// No credentials: anonymous tokens only.
    Anonymous,
    /// A username and secret sent as Basic (an OIDC ID token as the secret, for Wharf).
    Basic(String, String),
    /// A refresh (identity) token, traded with the OAuth2 `refresh_token` grant.
    Refresh(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Anonymous => "Anonymous",
            Credentials::Basic(..) => "Basic(<redacted>)",
            Credentials::Refresh(_) => "Refresh(<redacted>)",
        })
    }
}

/// One repository on one registry.
#[derive(Debug)]
pub struct Repository {
    http: reqwest::Client,
    base: String,
    name: String,
    token: Option<String>,
}

/// The presigned request a Wharf registry hands out for a direct upload (the HTTP API's
/// `Wharf-Direct-Upload: 1` body).
#[derive(Debug, Deserialize)]
pub(crate) struct DirectUpload {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
}

/// How a blob got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// It was already in the repository.
    Present,
    /// Straight to the object store.
    Direct,
    /// Through the registry.
    Through,
}

impl Repository {
    /// Connects to `name` on the registry at `base`, authenticating for `actions`
    /// (`pull` or `pull,push`) when the registry asks for a token.
    pub async fn connect(
        http: reqwest::Client,
        base: &str,
        name: &str,
        credentials: &Credentials,
        actions: &str,
    ) -> Result<Self> {
        let mut repo = Repository {
            http,
            base: base.trim_end_matches('/').to_owned(),
            name: name.to_owned(),
            token: None,
        };
        let probe = repo
            .http
            .get(format!("{}/v2/", repo.base))
            .send()
            .await
            .with_context(|| format!("reaching {}", repo.base))?;
        if probe.status() == StatusCode::UNAUTHORIZED
            && let Some((realm, service)) = realm::challenge(probe.headers())
        {
            let scope = format!("repository:{name}:{actions}");
            repo.token = Some(
                repo.fetch_token(&realm, &service, &scope, credentials)
                    .await?,
            );
        }
        Ok(repo)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: &str,
        scope: &str,
        credentials: &Credentials,
    ) -> Result<String> {
        #[derive(Deserialize)]
        struct Reply {
            token: Option<String>,
            access_token: Option<String>,
        }
        if !matches!(credentials, Credentials::Anonymous) {
            // A credential goes to the realm the registry names: only to its own origin,
            // over HTTPS (see `client::realm`).
            realm::check_from_env(&self.base, realm)?;
        }
        let request = match credentials {
            Credentials::Refresh(refresh) => self.http.post(realm).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", service),
                ("scope", scope),
                ("client_id", "wharf"),
            ]),
            Credentials::Basic(user, secret) => {
                let basic =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
                self.http
                    .get(realm)
                    .query(&[("service", service), ("scope", scope)])
                    .header(AUTHORIZATION, format!("Basic {basic}"))
            }
            Credentials::Anonymous => self
                .http
                .get(realm)
                .query(&[("service", service), ("scope", scope)]),
        };
        let reply: Reply = request
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("the token endpoint refused {scope}"))?
            .json()
            .await?;
        reply
            .token
            .or(reply.access_token)
            .context("the token endpoint answered no token")
    }

    pub(crate) fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    pub(crate) fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.name)
    }

    /// Resolves a `Location` header against the registry.
    pub(crate) fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Requests on an upload session carry the token only on the registry's own host: a lane
    /// URL carries its own capability, and a token is never sent to another host.
    pub(crate) fn session_request(&self, method: Method, url: &str) -> RequestBuilder {
        if url.starts_with(&format!("{}/", self.base)) {
            self.request(method, url)
        } else {
            self.http.request(method, url)
        }
    }

    /// A manifest: its media type and exact bytes.
    pub async fn manifest(&self, reference: &str) -> Result<(String, Vec<u8>)> {
        let res = self
            .request(Method::GET, &self.url(&format!("manifests/{reference}")))
            .header("accept", MANIFEST_ACCEPT)
            .send()
            .await?;
        let res = ok(res, "reading the manifest").await?;
        let media_type = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((media_type, res.bytes().await?.to_vec()))
    }

    /// Downloads a blob into `file` (following the registry's redirect to the object store).
    pub async fn download(&self, digest: &str, file: &Path, meter: &Meter) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let res = self
            .request(Method::GET, &self.url(&format!("blobs/{digest}")))
            .send()
            .await?;
        let res = ok(res, "reading a blob").await?;
        let mut out = tokio::fs::File::create(file).await?;
        let mut body = res.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            meter.inc(chunk.len() as u64);
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        Ok(())
    }

    /// True when the repository has the blob.
    pub async fn has_blob(&self, digest: &str) -> Result<bool> {
        let res = self
            .request(Method::HEAD, &self.url(&format!("blobs/{digest}")))
            .send()
            .await?;
        Ok(res.status().is_success())
    }

    /// Pushes the blob in `file` (`size` bytes, `digest`) unless the repository has it.
    pub async fn push_blob(
        &self,
        file: &Path,
        digest: &str,
        size: u64,
        meter: &Meter,
    ) -> Result<Pushed> {
        if self.has_blob(digest).await? {
            meter.inc(size);
            return Ok(Pushed::Present);
        }
        let res = self
            .request(Method::POST, &self.url("blobs/uploads/"))
            .header("wharf-direct-digest", digest)
            .header("wharf-direct-size", size.to_string())
            .header(CONTENT_LENGTH, "0")
            .send()
            .await?;
        let res = ok(res, "opening an upload").await?;
        let location = self.resolve(header(&res, LOCATION.as_str()).context("no Location")?);
        let chunk = header(&res, "oci-chunk-min-length").and_then(|v| v.parse::<u64>().ok());
        let direct = header(&res, "wharf-direct-upload") == Some("1");
        if direct {
            let upload: DirectUpload = res.json().await.context("the direct-upload request")?;
            match self.put_direct(&upload, file, size, meter).await {
                Ok(()) => {
                    self.complete(&location, digest, None).await?;
                    return Ok(Pushed::Direct);
                }
                // The session is still open and empty: push through it instead. (A store
                // answers 412 when another upload created the blob's object first.)
                Err(e) => {
                    tracing::warn!(digest, error = %e, "direct upload failed; pushing through the registry");
                    meter.reset();
                }
            }
        }
        match chunk {
            Some(chunk) if chunk > 0 && size > chunk => {
                self.push_chunks(location, file, digest, size, chunk, meter)
                    .await?
            }
            _ => {
                let pushed = self
                    .complete(&location, digest, Some((file, size, meter)))
                    .await;
                match pushed {
                    Err(e) if is_too_large(&e) && size > FALLBACK_CHUNK => {
                        meter.reset();
                        self.push_blob_chunked(file, digest, size, meter).await?
                    }
                    other => other?,
                }
            }
        }
        Ok(Pushed::Through)
    }

    /// A fresh session pushed in [`FALLBACK_CHUNK`] chunks (after a monolithic PUT was refused).
    async fn push_blob_chunked(
        &self,
        file: &Path,
        digest: &str,
        size: u64,
        meter: &Meter,
    ) -> Result<()> {
        let res = self
            .request(Method::POST, &self.url("blobs/uploads/"))
            .header(CONTENT_LENGTH, "0")
            .send()
            .await?;
        let res = ok(res, "opening an upload").await?;
        let location = self.resolve(header(&res, LOCATION.as_str()).context("no Location")?);
        self.push_chunks(location, file, digest, size, FALLBACK_CHUNK, meter)
            .await
    }

    async fn push_chunks(
        &self,
        mut location: String,
        file: &Path,
        digest: &str,
        size: u64,
        chunk: u64,
        meter: &Meter,
    ) -> Result<()> {
        let mut f = tokio::fs::File::open(file).await?;
        let mut offset = 0u64;
        while offset < size {
            let n = chunk.min(size - offset);
            let mut buf = vec![0u8; usize::try_from(n)?];
            f.read_exact(&mut buf).await?;
            let res = self
                .session_request(Method::PATCH, &location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{}", offset + n - 1))
                .body(buf)
                .send()
                .await?;
            let res = ok(res, "sending a chunk").await?;
            location = self.resolve(header(&res, LOCATION.as_str()).context("no Location")?);
            offset += n;
            meter.inc(n);
        }
        self.complete(&location, digest, None).await
    }

    /// `PUT <location>?digest=`, with the whole blob as body or none.
    async fn complete(
        &self,
        location: &str,
        digest: &str,
        body: Option<(&Path, u64, &Meter)>,
    ) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let request = self.session_request(Method::PUT, &url);
        let request = match body {
            Some((file, size, meter)) => request
                .header(CONTENT_LENGTH, size.to_string())
                .header("content-type", "application/octet-stream")
                .body(file_body(file, meter).await?),
            None => request.header(CONTENT_LENGTH, "0"),
        };
        ok(request.send().await?, "completing an upload").await?;
        Ok(())
    }

    async fn put_direct(
        &self,
        upload: &DirectUpload,
        file: &Path,
        size: u64,
        meter: &Meter,
    ) -> Result<()> {
        let method = Method::from_bytes(upload.method.as_bytes())?;
        // No token: the URL is the whole authority, and it names another host.
        let mut request = self.http.request(method, &upload.url);
        let mut has_length = false;
        for (k, v) in &upload.headers {
            has_length |= k.eq_ignore_ascii_case("content-length");
            request = request.header(k, v);
        }
        if !has_length {
            request = request.header(CONTENT_LENGTH, size.to_string());
        }
        let res = request.body(file_body(file, meter).await?).send().await?;
        if !res.status().is_success() {
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            bail!("the object store refused the blob: {status} {text}");
        }
        Ok(())
    }

    /// Pushes a manifest by tag or digest.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let res = self
            .request(Method::PUT, &self.url(&format!("manifests/{reference}")))
            .header(CONTENT_TYPE, media_type)
            .body(bytes.to_vec())
            .send()
            .await?;
        ok(res, "pushing a manifest").await?;
        Ok(())
    }
}

fn header<'a>(res: &'a Response, name: &str) -> Option<&'a str> {
    res.headers().get(name)?.to_str().ok()
}

/// An error from a registry answer, with its OCI error body.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {status} {body}")]
pub struct RegistryError {
    what: &'static str,
    status: StatusCode,
    body: String,
}

fn is_too_large(e: &anyhow::Error) -> bool {
    e.downcast_ref::<RegistryError>()
        .is_some_and(|r| r.status == StatusCode::PAYLOAD_TOO_LARGE)
}

async fn ok(res: Response, what: &'static str) -> Result<Response> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    Err(RegistryError { what, status, body }.into())
}

/// A file as a streamed request body, counted on `meter`.
async fn file_body(file: &Path, meter: &Meter) -> Result<reqwest::Body> {
    let f = tokio::fs::File::open(file).await?;
    let meter = meter.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map(move |chunk| {
        if let Ok(c) = &chunk {
            meter.inc(c.len() as u64);
        }
        chunk
    });
    Ok(reqwest::Body::wrap_stream(stream))
}
