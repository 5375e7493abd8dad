//! sha512 blobs on S3 (s3s-fs) + DynamoDB (moto) through a real `wharf serve`: chunked uploads
//! of several parts (located blobs) under sha512, a manifest naming them, and `wharf gc`
//! keeping the referenced one and reclaiming the unlinked one, bytes and all. S3 records no
//! SHA-512 checksum, so these blobs are trusted only because Wharf hashed every byte.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest as _, Sha512};
use wharf_e2e::cloud::{Cloud, backend_env};
use wharf_e2e::cmd::Cmd;
use wharf_e2e::curl::Request;
use wharf_e2e::image::seeded_bytes;
use wharf_e2e::server::binary_path;

const REPO: &str = "e2e/sha512";

fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

/// POST (with `query`), PATCH `chunk`-sized pieces, PUT `?digest=`, expecting 201.
fn push_chunked(cloud: &Cloud, query: &str, content: &[u8], chunk: usize) -> Result<String> {
    let base = cloud.wharf.url();
    let r = Request::new("POST", format!("{base}/v2/{REPO}/blobs/uploads/{query}"))
        .header("Content-Length", "0")
        .send()?;
    r.expect_status(202)?;
    let mut location = r.header("Location").context("Location")?.to_owned();
    for (i, piece) in content.chunks(chunk).enumerate() {
        let start = i * chunk;
        let r = Request::new("PATCH", format!("{base}{location}"))
            .header(
                "Content-Range",
                format!("{start}-{}", start + piece.len() - 1),
            )
            .body(piece.to_vec())
            .send()?;
        r.expect_status(202)?;
        location = r.header("Location").context("Location")?.to_owned();
    }
    let digest = sha512(content);
    let sep = if location.contains('?') { '&' } else { '?' };
    Request::new("PUT", format!("{base}{location}{sep}digest={digest}"))
        .header("Content-Length", "0")
        .send()?
        .expect_status(201)?;
    Ok(digest)
}

/// The blob's bytes, following the GET's redirect to the presigned object URL.
fn pull(cloud: &Cloud, digest: &str) -> Result<Vec<u8>> {
    let r = Request::get(format!("{}/v2/{REPO}/blobs/{digest}", cloud.wharf.url())).send()?;
    if r.status == 307 {
        let url = r.header("Location").context("redirect Location")?;
        let got = Request::get(url).send()?;
        got.expect_status(200)?;
        return Ok(got.body);
    }
    r.expect_status(200)?;
    Ok(r.body)
}

fn bucket_has(cloud: &Cloud, digest: &str) -> bool {
    let (alg, hex) = digest.split_once(':').unwrap_or_default();
    wharf_e2e_files(&cloud.s3.root())
        .iter()
        .any(|p| p.ends_with(format!("blobs/{alg}/{hex}")))
}

fn wharf_e2e_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(wharf_e2e_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn chunked_sha512_blobs_on_s3_and_dynamodb_are_served_and_collected() -> Result<()> {
    let cloud = Cloud::start()?;
    let base = cloud.wharf.url();
    let r = Request::new("POST", format!("{base}/v2/{REPO}/blobs/uploads/"))
        .header("Content-Length", "0")
        .send()?;
    let part: usize = r
        .header("OCI-Chunk-Min-Length")
        .context("the S3 store advertises its part size")?
        .parse()?;
    // Two and a half parts each: multipart uploads, published as located blobs.
    let kept = seeded_bytes(61, 2 * part + part / 2);
    let dropped = seeded_bytes(62, 2 * part + 11);
    let kept_digest = push_chunked(&cloud, "", &kept, part)?;
    let dropped_digest = push_chunked(&cloud, "?digest-algorithm=sha512", &dropped, part)?;
    let config = b"{}";
    let config_digest = sha512(config);
    Request::new(
        "POST",
        format!("{base}/v2/{REPO}/blobs/uploads/?digest={config_digest}"),
    )
    .body(config.to_vec())
    .send()?
    .expect_status(201)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": kept_digest, "size": kept.len()}]
    }))?;
    Request::new("PUT", format!("{base}/v2/{REPO}/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()?
        .expect_status(201)?;
    let tags = Request::get(format!("{base}/v2/{REPO}/tags/list")).send()?;
    assert_eq!(tags.json()?["tags"], json!(["v1"]));
    for (digest, bytes) in [(&kept_digest, &kept), (&dropped_digest, &dropped)] {
        let head = Request::new("HEAD", format!("{base}/v2/{REPO}/blobs/{digest}")).send()?;
        head.expect_status(200)?;
        assert_eq!(head.header("Docker-Content-Digest"), Some(digest.as_str()));
        assert!(pull(&cloud, digest)? == *bytes, "{digest} reads back");
        assert!(
            bucket_has(&cloud, digest),
            "{digest} is under its sha512 key"
        );
    }

    // Unlink one; garbage collection takes it and keeps what the manifest names.
    Request::new("DELETE", format!("{base}/v2/{REPO}/blobs/{dropped_digest}"))
        .send()?
        .expect_status(202)?;
    let admin = tempfile::tempdir()?;
    let mut gc = Cmd::new(binary_path())
        .args(["gc", "--grace", "0"])
        .env("WHARF_DATA_DIR", admin.path())
        .env("WHARF_LOG", "warn")
        .timeout(Duration::from_secs(120));
    for (k, v) in backend_env(&cloud.s3, &cloud.moto) {
        gc = gc.env(k, v);
    }
    let out = gc.stdout()?;
    assert!(
        out.contains(&format!("removed blob {dropped_digest}")),
        "{out}"
    );
    assert!(!out.contains(&kept_digest), "{out}");
    assert!(!bucket_has(&cloud, &dropped_digest), "its bytes are gone");
    let located_left = wharf_e2e_files(&cloud.s3.root())
        .iter()
        .filter(|p| p.to_string_lossy().contains("/objects/"))
        .filter(|p| p.ends_with("data"))
        .count();
    assert_eq!(located_left, 1, "only the kept blob's located object stays");
    assert!(
        pull(&cloud, &kept_digest)? == kept,
        "the kept blob still reads back"
    );
    let head = Request::new("HEAD", format!("{base}/v2/{REPO}/blobs/{dropped_digest}")).send()?;
    assert_eq!(head.status, 404);
    Ok(())
}
