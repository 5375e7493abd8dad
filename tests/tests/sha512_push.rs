//! sha512 content against a real `wharf serve`: oras-py pushing a chunked sha512 blob and a
//! manifest naming it, and a regctl-style chunked sha512 upload (POST, PATCHes with
//! `Content-Range`, PUT) driven over HTTP, with and without the `digest-algorithm` hint of the
//! distribution spec's main branch (end-4c), resumed across a server restart.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;
use sha2::{Digest as _, Sha512};
use wharf_e2e::Wharf;
use wharf_e2e::cmd::Cmd;
use wharf_e2e::curl::Request;
use wharf_e2e::image::seeded_bytes;

fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

/// Size of the pushed blob: several chunks and a partial one.
const BLOB_BYTES: usize = 3 * 1024 * 1024 + 4321;
/// Chunk size of the pushes.
const CHUNK_BYTES: usize = 1024 * 1024;

#[test]
fn oras_py_pushes_a_chunked_sha512_blob_and_a_manifest_naming_it() -> Result<()> {
    let wharf = Wharf::start()?;
    let work = tempfile::tempdir()?;
    let file = work.path().join("layer.bin");
    let content = seeded_bytes(51, BLOB_BYTES);
    std::fs::write(&file, &content)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oras_sha512.py");
    let out = Cmd::new("python3")
        .arg(script)
        .args(["--host", &wharf.host()])
        .args(["--target", &format!("{}/e2e/sha512:v1", wharf.host())])
        .arg("--file")
        .arg(&file)
        .args(["--chunk-size", &CHUNK_BYTES.to_string()])
        .stdout()?;
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| anyhow!("oras_sha512.py printed nothing"))?;
    let v: Value = serde_json::from_str(line).with_context(|| line.to_owned())?;
    assert_eq!(v["statuses"]["layer"], 201, "{v}");
    assert_eq!(v["statuses"]["config"], 201, "{v}");
    assert_eq!(v["statuses"]["again"], 200, "HEAD by sha512 finds it: {v}");
    assert_eq!(v["statuses"]["manifest"], 201, "{v}");
    assert_eq!(v["layer"], sha512(&content));
    assert_eq!(v["tags"], serde_json::json!(["v1"]));
    assert_eq!(v["pulled_back"], true);

    let patches = wharf
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == 202)
        .count();
    assert_eq!(patches, BLOB_BYTES.div_ceil(CHUNK_BYTES), "oras chunked it");
    let blob = Request::get(format!(
        "{}/v2/e2e/sha512/blobs/{}",
        wharf.url(),
        sha512(&content)
    ))
    .send()?;
    blob.expect_status(200)?;
    assert!(blob.body == content);
    assert!(
        wharf
            .data_dir()
            .join("blobs/sha512")
            .join(&sha512(&content)["sha512:".len()..])
            .is_file()
    );
    Ok(())
}

/// POST (with `query`), PATCH every chunk with its `Content-Range` (restarting the server after
/// the first, so another process resumes the midstates), PUT `?digest=`; returns the answer.
fn regctl_style_push(
    wharf: &mut Wharf,
    repo: &str,
    query: &str,
    content: &[u8],
    digest: &str,
) -> Result<wharf_e2e::curl::Response> {
    let r = Request::new(
        "POST",
        format!("{}/v2/{repo}/blobs/uploads/{query}", wharf.url()),
    )
    .header("Content-Length", "0")
    .send()?;
    r.expect_status(202)?;
    let mut location = r.header("Location").context("no Location")?.to_owned();
    for (i, chunk) in content.chunks(CHUNK_BYTES).enumerate() {
        let start = i * CHUNK_BYTES;
        let r = Request::new("PATCH", format!("{}{location}", wharf.url()))
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()?;
        r.expect_status(202)?;
        assert_eq!(
            r.header("Range"),
            Some(format!("0-{}", start + chunk.len() - 1).as_str())
        );
        location = r.header("Location").context("no Location")?.to_owned();
        if i == 0 {
            wharf.restart()?;
        }
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    Request::new(
        "PUT",
        format!("{}{location}{sep}digest={digest}", wharf.url()),
    )
    .header("Content-Length", "0")
    .send()
}

#[test]
fn regctl_style_chunked_sha512_uploads_resume_across_a_restart() -> Result<()> {
    let mut wharf = Wharf::start()?;
    let content = seeded_bytes(52, BLOB_BYTES);
    let digest = sha512(&content);
    for (repo, query) in [
        ("e2e/hinted", "?digest-algorithm=sha512"),
        ("e2e/unhinted", ""),
    ] {
        let r = regctl_style_push(&mut wharf, repo, query, &content, &digest)?;
        r.expect_status(201)?;
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
        let head =
            Request::new("HEAD", format!("{}/v2/{repo}/blobs/{digest}", wharf.url())).send()?;
        head.expect_status(200)?;
        assert_eq!(
            head.header("Content-Length"),
            Some(BLOB_BYTES.to_string().as_str())
        );
        let get = Request::get(format!("{}/v2/{repo}/blobs/{digest}", wharf.url())).send()?;
        assert!(get.body == content, "{repo}: pulled bytes differ");
    }

    // Opened for sha256, closed as sha512: refused, and the session is still there.
    let r = regctl_style_push(
        &mut wharf,
        "e2e/mismatch",
        "?digest-algorithm=sha256",
        &content,
        &digest,
    )?;
    r.expect_status(400)?;
    assert_eq!(r.json()?["errors"][0]["code"], "DIGEST_INVALID");
    let head = Request::new(
        "HEAD",
        format!("{}/v2/e2e/mismatch/blobs/{digest}", wharf.url()),
    )
    .send()?;
    assert_eq!(head.status, 404);
    Ok(())
}
