//! The end-state check of the load and fault tests: every tag of every repository resolves to a
//! manifest whose bytes match its digest, and every blob it references is served (following the
//! redirect to the object store where there is one) with the right digest and size.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Accept header for manifests: images and indexes, OCI and Docker.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Pulls and verifies content of one registry.
#[derive(Debug, Clone)]
pub struct Verifier {
    base: String,
    http: reqwest::Client,
}

impl Verifier {
    /// A verifier for the registry at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Result<Self> {
        // reqwest is built without a default TLS provider; loopback is plain HTTP, but the
        // client still wants one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Verifier {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
        })
    }

    /// Pulls `repo:reference` completely; returns how many blobs were verified.
    pub async fn pull(&self, repo: &str, reference: &str) -> Result<usize> {
        let response = self
            .http
            .get(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("accept", ACCEPT)
            .send()
            .await?;
        ensure!(
            response.status() == 200,
            "{repo}:{reference}: {}",
            response.status()
        );
        let announced = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .context("no Docker-Content-Digest")?;
        let bytes = response.bytes().await?;
        ensure!(
            sha256(&bytes) == announced,
            "{repo}:{reference}: manifest bytes do not match {announced}"
        );
        let manifest: Value = serde_json::from_slice(&bytes)?;
        let mut verified = 0;
        if let Some(children) = manifest["manifests"].as_array() {
            for child in children {
                let digest = child["digest"].as_str().context("child digest")?;
                verified += Box::pin(self.pull(repo, digest)).await?;
            }
            return Ok(verified);
        }
        let mut descriptors = vec![manifest["config"].clone()];
        descriptors.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
        for d in descriptors {
            let digest = d["digest"].as_str().context("descriptor digest")?;
            let response = self
                .http
                .get(format!("{}/v2/{repo}/blobs/{digest}", self.base))
                .send()
                .await?;
            ensure!(
                response.status() == 200,
                "{repo}:{reference} references {digest}, which answers {}",
                response.status()
            );
            let blob = response.bytes().await?;
            ensure!(
                sha256(&blob) == digest,
                "{repo}: blob {digest} does not verify"
            );
            ensure!(
                Some(blob.len() as u64) == d["size"].as_u64(),
                "{repo}: blob {digest} is {} bytes, the manifest says {}",
                blob.len(),
                d["size"]
            );
            verified += 1;
        }
        Ok(verified)
    }

    async fn list(&self, path: String, key: &str) -> Result<Vec<String>> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        ensure!(response.status() == 200, "{path}: {}", response.status());
        let body: Value = response.json().await?;
        Ok(body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Every repository of the catalog, each with its tags.
    pub async fn tags(&self) -> Result<Vec<(String, Vec<String>)>> {
        let mut out = Vec::new();
        for repo in self
            .list("/v2/_catalog?n=10000".to_owned(), "repositories")
            .await?
        {
            let tags = self
                .list(format!("/v2/{repo}/tags/list?n=10000"), "tags")
                .await?;
            out.push((repo, tags));
        }
        Ok(out)
    }

    /// Pulls every tag of every repository; returns the number of tags verified.
    pub async fn every_tag(&self) -> Result<usize> {
        let mut checked = 0;
        for (repo, tags) in self.tags().await? {
            for tag in tags {
                self.pull(&repo, &tag).await?;
                checked += 1;
            }
        }
        Ok(checked)
    }
}

/// Blocking form of [`Verifier::every_tag`], for tests that are not async.
pub fn every_tag_resolves(base: &str) -> Result<usize> {
    let verifier = Verifier::new(base)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(verifier.every_tag())
}
