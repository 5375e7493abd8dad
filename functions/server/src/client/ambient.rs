//! The ambient identity: an OIDC ID token the environment already holds, fetched fresh.
//!
//! In order: GitHub Actions (`ACTIONS_ID_TOKEN_REQUEST_URL` + `ACTIONS_ID_TOKEN_REQUEST_TOKEN`,
//! which a workflow gets with `permissions: id-token: write`), then a token file
//! (`WHARF_TOKEN_FILE`: a Kubernetes projected service-account token, a cloud workload identity
//! token, …), re-read at every use because such files are rotated.
//!
//! A token asked of GitHub names one registry as its audience: the registry's own URL
//! (`https://registry.example.com`), so a token minted for one deployment is refused by every
//! other (each accepts only its own URL), and a registry that logs or leaks it leaks nothing
//! another registry takes. `WHARF_AUDIENCE` overrides it, for a registry configured otherwise.
//! The credential helper hands the ambient token only to the registries [`REGISTRIES_ENV`]
//! names: docker asks it for any host its configuration sends to it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::login::registry_base;
use super::registry_host;

/// Names the audience to ask GitHub for instead of the registry's URL.
pub const AUDIENCE_ENV: &str = "WHARF_AUDIENCE";

/// Names the registry hosts (`host[:port]`, comma- or space-separated) the credential helper
/// may hand the ambient identity to.
pub const REGISTRIES_ENV: &str = "WHARF_REGISTRIES";

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

/// The audience an ambient token for `registry` (`host[:port]` or a URL) is asked with:
/// `WHARF_AUDIENCE`, else the registry's own URL (`https://host[:port]`; `http://` on loopback).
pub fn audience_for(registry: &str) -> String {
    std::env::var(AUDIENCE_ENV).unwrap_or_else(|_| default_audience(registry))
}

/// The registry's own URL, the audience a token for it carries by default.
pub fn default_audience(registry: &str) -> String {
    registry_base(&registry_host(registry))
}

/// True when [`REGISTRIES_ENV`] names `registry`'s host.
pub fn is_configured(registry: &str) -> bool {
    let host = registry_host(registry);
    !host.is_empty()
        && std::env::var(REGISTRIES_ENV)
            .unwrap_or_default()
            .split([',', ' '])
            .any(|h| !h.trim().is_empty() && registry_host(h.trim()) == host)
}

/// Finds the ambient OIDC ID token for `registry`, if the environment has one.
pub async fn id_token(registry: &str) -> Result<Option<(Source, String)>> {
    if let (Ok(url), Ok(bearer)) = (
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) {
        let audience = audience_for(registry);
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_audience_is_the_registrys_own_url() {
        for (given, audience) in [
            ("registry.example.com", "https://registry.example.com"),
            (
                "https://Registry.example.com/v2/",
                "https://registry.example.com",
            ),
            (
                "registry.example.com:8443",
                "https://registry.example.com:8443",
            ),
            ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ] {
            assert_eq!(super::default_audience(given), audience, "{given}");
        }
    }
}
