//! oras-py, the Python ORAS library, driven through `fixtures/oras_client.py`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::cmd::Cmd;
use crate::layout::Descriptor;

/// What to push besides the file.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Config media type (the artifact type the referrers API reports).
    pub config_media_type: Option<String>,
    /// The manifest this artifact refers to.
    pub subject: Option<Descriptor>,
    /// Manifest annotations.
    pub annotations: Vec<(String, String)>,
    /// Upload with POST, PATCH chunks of this size, PUT (instead of one monolithic PUT).
    pub chunk_size: Option<usize>,
}

/// What the registry answered to the manifest push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `Docker-Content-Digest` of the manifest.
    pub digest: String,
    /// `OCI-Subject`, if the registry sent it.
    pub subject: Option<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oras_client.py")
}

fn run(cmd: Cmd) -> Result<Value> {
    let out = cmd.stdout()?;
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| anyhow!("oras_client.py printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("oras_client.py printed {line:?}"))
}

/// Pushes `file` as an artifact to `target` (`host/repo:tag`).
pub fn push(host: &str, target: &str, file: &Path, options: &PushOptions) -> Result<Pushed> {
    let mut cmd = Cmd::new("python3")
        .arg(script())
        .arg("push")
        .args(["--host", host, "--target", target])
        .arg("--file")
        .arg(file);
    if let Some(t) = &options.config_media_type {
        cmd = cmd.args(["--config-media-type", t]);
    }
    if let Some(s) = &options.subject {
        let subject = json!({ "mediaType": s.media_type, "digest": s.digest, "size": s.size });
        cmd = cmd.arg("--subject").arg(subject.to_string());
    }
    for (k, v) in &options.annotations {
        cmd = cmd.arg("--annotation").arg(format!("{k}={v}"));
    }
    if let Some(n) = options.chunk_size {
        cmd = cmd.arg("--chunk-size").arg(n.to_string());
    }
    let v = run(cmd)?;
    let status = v["status"].as_u64().unwrap_or_default();
    if status != 201 {
        bail!("manifest push answered {status}, not 201: {v}");
    }
    Ok(Pushed {
        digest: v["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("no Docker-Content-Digest on the manifest push: {v}"))?
            .to_owned(),
        subject: v["subject"].as_str().map(str::to_owned),
    })
}

/// Pulls `target` into `outdir`; returns the files written.
pub fn pull(host: &str, target: &str, outdir: &Path) -> Result<Vec<PathBuf>> {
    let cmd = Cmd::new("python3")
        .arg(script())
        .arg("pull")
        .args(["--host", host, "--target", target])
        .arg("--outdir")
        .arg(outdir);
    let v = run(cmd)?;
    Ok(v["files"]
        .as_array()
        .ok_or_else(|| anyhow!("no files in {v}"))?
        .iter()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .collect())
}
