//! The ambient identity: an OIDC ID token the environment already holds, fetched fresh.
//!
//! In order: GitHub Actions (`ACTIONS_ID_TOKEN_REQUEST_URL` + `ACTIONS_ID_TOKEN_REQUEST_TOKEN`,
//! which a workflow gets with `permissions: id-token: write`), then a token file
//! (`WHARF_TOKEN_FILE`: a Kubernetes projected service-account token, a cloud workload identity
//! token, …), re-read at every use because such files are rotated.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Audience asked of GitHub when `WHARF_AUDIENCE` is not set; the registry's issuer
/// configuration must list it.
pub const DEFAULT_AUDIENCE: &str = "wharf";

/// Timeout for the GitHub token request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Where an ambient token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// GitHub Actions' OIDC endpoint.
    GithubActions,
    /// A token file.
    TokenFile,
}

/// Finds the ambient OIDC ID token, if the environment has one.
pub async fn id_token() -> Result<Option<(Source, String)>> {
    if let (Ok(url), Ok(bearer)) = (
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) {
        let audience =
            std::env::var("WHARF_AUDIENCE").unwrap_or_else(|_| DEFAULT_AUDIENCE.to_owned());
        return Ok(Some((
            Source::GithubActions,
            github_token(&url, &bearer, &audience).await?,
        )));
    }
    if let Some(path) = std::env::var_os("WHARF_TOKEN_FILE") {
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("reading WHARF_TOKEN_FILE {}", path.to_string_lossy()))?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            bail!("WHARF_TOKEN_FILE {} is empty", path.to_string_lossy());
        }
        return Ok(Some((Source::TokenFile, token)));
    }
    Ok(None)
}

/// Asks the GitHub Actions runtime for an ID token with `audience`.
async fn github_token(url: &str, bearer: &str, audience: &str) -> Result<String> {
    #[derive(Deserialize)]
    struct Reply {
        value: String,
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let reply: Reply = client
        .get(url)
        .query(&[("audience", audience)])
        .bearer_auth(bearer)
        .send()
        .await
        .context("requesting the GitHub Actions ID token")?
        .error_for_status()
        .context(
            "GitHub Actions refused the ID token request (does the job have `id-token: write`?)",
        )?
        .json()
        .await?;
    Ok(reply.value)
}
