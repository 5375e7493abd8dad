//! Concurrent pushes into one repository, and the cleanup of everything the doctor pushed.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use reqwest::Method;
use reqwest::StatusCode;
use wharf::oci::Algorithm;

use super::blobs::random_file;
use super::probes::answer;
use super::report::{Check, Line};
use super::{Doctor, meter};
use crate::cp::registry::MANIFEST_ACCEPT;

/// Pushes at once: Docker pushes several layers of one repository at once, and a registry on
/// DynamoDB must not answer any of them with a transaction conflict.
pub const CONCURRENT_PUSHES: usize = 10;

/// Size of each concurrent push's layer: small, the point is the metadata writes.
const LAYER_BYTES: usize = 4_099;

/// The OCI empty descriptor's content, the config of every doctor artifact.
const EMPTY_CONFIG: &[u8] = b"{}";

/// Media type of the doctor's artifacts.
const ARTIFACT_TYPE: &str = "application/vnd.wharf.doctor.v1";

/// A blob the doctor pushed.
#[derive(Debug, Clone)]
pub(super) struct Blob {
    pub(super) digest: String,
    pub(super) size: u64,
}

/// What the doctor pushed into its repository, for cleanup.
#[derive(Debug, Default)]
pub(super) struct Pushed {
    pub(super) tags: Vec<String>,
    pub(super) manifests: Vec<String>,
    pub(super) blobs: BTreeSet<String>,
    /// The blob the HEAD and GET checks read.
    pub(super) probe: Option<Blob>,
}

impl Doctor {
    /// Notes something pushed.
    pub(super) fn record(&self, f: impl FnOnce(&mut Pushed)) {
        if let Ok(mut p) = self.pushed.lock() {
            f(&mut p);
        }
    }
}

/// One push: the shared config, its own layer, a manifest by tag. Returns the manifest digest.
async fn push_one(
    d: &Doctor,
    i: usize,
    config: &std::path::Path,
    bar: &ProgressBar,
) -> Result<String> {
    let config_digest = Algorithm::Sha256.digest(EMPTY_CONFIG).to_string();
    let (layer, layer_digest) = random_file(d, &format!("layer-{i}"), LAYER_BYTES)?;
    let m = meter(bar);
    d.main
        .push_blob(config, &config_digest, EMPTY_CONFIG.len() as u64, &m)
        .await
        .context("pushing the config")?;
    d.record(|p| {
        p.blobs.insert(config_digest.clone());
    });
    d.main
        .push_blob(&layer, &layer_digest, LAYER_BYTES as u64, &m)
        .await
        .context("pushing the layer")?;
    d.record(|p| {
        p.blobs.insert(layer_digest.clone());
    });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": config_digest,
            "size": EMPTY_CONFIG.len(),
        },
        "layers": [{
            "mediaType": "application/octet-stream",
            "digest": layer_digest,
            "size": LAYER_BYTES,
        }],
        "annotations": { "org.opencontainers.image.title": format!("wharf doctor push {i}") },
    });
    let bytes = serde_json::to_vec(&manifest)?;
    let digest = Algorithm::Sha256.digest(&bytes).to_string();
    let tag = format!("doctor-{i}");
    d.main
        .put_manifest(&tag, "application/vnd.oci.image.manifest.v1+json", &bytes)
        .await?;
    d.record(|p| {
        p.tags.push(tag);
        p.manifests.push(digest.clone());
    });
    Ok(digest)
}

/// [`CONCURRENT_PUSHES`] pushes at once, then the end state: every tag listed and resolving to
/// its manifest.
pub(super) async fn concurrent(d: &Doctor, bar: &ProgressBar) -> Line {
    let check = Check::ConcurrentPushes;
    let config = d.scratch.path().join("config");
    if let Err(e) = std::fs::write(&config, EMPTY_CONFIG) {
        return Line::fail(check, format!("writing the config: {e}"));
    }
    bar.set_length((CONCURRENT_PUSHES * (LAYER_BYTES + EMPTY_CONFIG.len())) as u64);
    let started = Instant::now();
    let results = futures_util::future::join_all(
        (0..CONCURRENT_PUSHES).map(|i| push_one(d, i, &config, bar)),
    )
    .await;
    let elapsed = started.elapsed();
    let failed: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("push {i}: {e:#}")))
        .collect();
    if !failed.is_empty() {
        return Line::fail(
            check,
            format!(
                "{} of {CONCURRENT_PUSHES} failed: {}",
                failed.len(),
                failed.join("; ")
            ),
        );
    }
    let digests: Vec<String> = results.into_iter().filter_map(Result::ok).collect();
    match verify_tags(d, &digests).await {
        Ok(()) => Line::ok(
            check,
            format!(
                "{CONCURRENT_PUSHES} of {CONCURRENT_PUSHES} pushes (blob, manifest, tag) into one \
                 repository succeeded in {:.1} s; every tag is listed and resolves",
                elapsed.as_secs_f64()
            ),
        ),
        Err(e) => Line::fail(check, format!("all pushes answered success, but {e:#}")),
    }
}

/// Every `doctor-<i>` tag is in the tag list and resolves to the digest pushed under it.
async fn verify_tags(d: &Doctor, digests: &[String]) -> Result<()> {
    let res = d
        .main
        .request(Method::GET, &d.main.url("tags/list?n=1000"))
        .send()
        .await?;
    if res.status() != StatusCode::OK {
        bail!("the tag list answered {}", answer(res).await);
    }
    let list: serde_json::Value = res.json().await?;
    let tags: BTreeSet<&str> = list["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .collect();
    for (i, digest) in digests.iter().enumerate() {
        let tag = format!("doctor-{i}");
        if !tags.contains(tag.as_str()) {
            bail!("the tag list lacks {tag}");
        }
        let res = d
            .main
            .request(Method::HEAD, &d.main.url(&format!("manifests/{tag}")))
            .header("accept", MANIFEST_ACCEPT)
            .send()
            .await?;
        let got = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        if got != Some(digest.as_str()) {
            bail!("{tag} resolves to {got:?}, not the manifest pushed under it");
        }
    }
    Ok(())
}

/// Deletes the tags, then the manifests, then the blob links the doctor pushed.
pub(super) async fn cleanup(d: &Doctor) -> Line {
    let check = Check::Cleanup;
    let (tags, manifests, blobs) = match d.pushed.lock() {
        Ok(p) => (p.tags.clone(), p.manifests.clone(), p.blobs.clone()),
        Err(_) => return Line::fail(check, "internal: the record of pushes is poisoned"),
    };
    let mut failures = Vec::new();
    let targets = tags
        .iter()
        .chain(&manifests)
        .map(|r| format!("manifests/{r}"))
        .chain(blobs.iter().map(|b| format!("blobs/{b}")));
    let mut deleted = 0usize;
    for tail in targets {
        match d
            .main
            .request(Method::DELETE, &d.main.url(&tail))
            .send()
            .await
        {
            Ok(res) if res.status().is_success() => deleted += 1,
            Ok(res) => failures.push(format!("DELETE {tail}: {}", answer(res).await)),
            Err(e) => failures.push(format!("DELETE {tail}: {e}")),
        }
    }
    let repo = &d.names.main;
    if failures.is_empty() {
        Line::ok(
            check,
            format!(
                "deleted {} tags, {} manifests and {} blob links in {repo}",
                tags.len(),
                manifests.len(),
                blobs.len()
            ),
        )
    } else {
        let denied = failures
            .iter()
            .any(|f| f.contains(": 401") || f.contains(": 403"));
        let hint = if denied {
            format!(" (does the identity have delete on {repo}?)")
        } else {
            String::new()
        };
        Line::fail(
            check,
            format!(
                "{} of {} deletes failed{hint}, {deleted} done; first: {}",
                failures.len(),
                failures.len() + deleted,
                failures[0]
            ),
        )
    }
}
