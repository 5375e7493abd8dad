//! Faults in the middle of a push: Wharf killed (SIGKILL) during a blob upload, during a chunk
//! and during a manifest PUT; the S3 server killed between chunks; the DynamoDB server frozen
//! during a manifest PUT. After each, the client's retry succeeds and no tag points at missing
//! content (every tag of every repository is pulled and verified by digest).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use wharf_e2e::curl::{Request, Response};
use wharf_e2e::image::seeded_bytes;
use wharf_e2e::verify::{every_tag_resolves, sha256};
use wharf_e2e::{Wharf, cloud::Cloud};

const REPO: &str = "faults/app";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn push_blob(base: &str, bytes: &[u8]) -> Result<String> {
    let digest = sha256(bytes);
    Request::new(
        "POST",
        format!("{base}/v2/{REPO}/blobs/uploads/?digest={digest}"),
    )
    .header("Content-Type", "application/octet-stream")
    .body(bytes.to_vec())
    .send()?
    .expect_status(201)?;
    Ok(digest)
}

/// A manifest over a config and a layer that are already pushed.
fn manifest(config: &(String, usize), layer: &(String, usize)) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.0, "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.0, "size": layer.1}],
    }))
    .unwrap_or_default()
}

fn put_manifest(base: &str, tag: &str, bytes: &[u8]) -> Result<Response> {
    Request::new("PUT", format!("{base}/v2/{REPO}/manifests/{tag}"))
        .header("Content-Type", MANIFEST)
        .body(bytes.to_vec())
        .send()
}

/// Pushes a config and a layer of `layer_bytes` seeded by `seed`; returns the manifest bytes.
fn push_image(base: &str, seed: u64, layer_bytes: usize, tag: &str) -> Result<Vec<u8>> {
    let config_bytes = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
    let layer = seeded_bytes(seed, layer_bytes);
    let config = (
        push_blob(base, config_bytes.as_bytes())?,
        config_bytes.len(),
    );
    let layer = (push_blob(base, &layer)?, layer.len());
    let bytes = manifest(&config, &layer);
    put_manifest(base, tag, &bytes)?.expect_status(201)?;
    Ok(bytes)
}

/// Sends a request head announcing `len` body bytes and only `sent` of them; keeps the
/// connection open (returned) so the server is still reading when it is killed.
fn start_request(wharf: &Wharf, head: &str, body: &[u8], sent: usize) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(wharf.host())?;
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body[..sent])?;
    stream.flush()?;
    // Let the server take the head and the first bytes into the handler.
    std::thread::sleep(Duration::from_millis(300));
    Ok(stream)
}

fn head_of(method: &str, path: &str, wharf: &Wharf, len: usize, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\n{extra}\r\n",
        wharf.host()
    )
}

fn digest_of_tag(base: &str, tag: &str) -> Result<String> {
    let r = Request::get(format!("{base}/v2/{REPO}/manifests/{tag}"))
        .header("Accept", MANIFEST)
        .send()?;
    r.expect_status(200)?;
    r.header("Docker-Content-Digest")
        .map(str::to_owned)
        .context("no Docker-Content-Digest")
}

#[test]
fn wharf_killed_mid_upload_mid_chunk_and_mid_manifest_put_then_retries_succeed() -> Result<()> {
    let _heavy = crate::heavy();
    let mut wharf = Wharf::start()?;
    let base = wharf.url();
    let v1 = push_image(&base, 1, 64 * 1024, "v1")?;

    // 1. Killed while a monolithic upload streams in.
    let blob = seeded_bytes(2, 8 * 1024 * 1024);
    let digest = sha256(&blob);
    let head = head_of(
        "POST",
        &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
        &wharf,
        blob.len(),
        "Content-Type: application/octet-stream\r\n",
    );
    let stream = start_request(&wharf, &head, &blob, blob.len() / 2)?;
    wharf.crash()?;
    drop(stream);
    wharf.start_again()?;
    Request::new("HEAD", format!("{base}/v2/{REPO}/blobs/{digest}"))
        .send()?
        .expect_status(404)?;
    ensure!(push_blob(&base, &blob)? == digest);

    // 2. Killed while a chunk streams into a session: the session keeps its committed range.
    let started = Request::new("POST", format!("{base}/v2/{REPO}/blobs/uploads/")).send()?;
    started.expect_status(202)?;
    let session = started.header("Location").context("Location")?.to_owned();
    let chunked = seeded_bytes(3, 3 * 1024 * 1024);
    let first = 1024 * 1024;
    Request::new("PATCH", format!("{base}{session}"))
        .header("Content-Range", format!("0-{}", first - 1))
        .body(chunked[..first].to_vec())
        .send()?
        .expect_status(202)?;
    let rest = &chunked[first..];
    let head = head_of(
        "PATCH",
        &session,
        &wharf,
        rest.len(),
        &format!("Content-Range: {first}-{}\r\n", chunked.len() - 1),
    );
    let stream = start_request(&wharf, &head, rest, rest.len() / 2)?;
    wharf.crash()?;
    drop(stream);
    wharf.start_again()?;
    let status = Request::get(format!("{base}{session}")).send()?;
    status.expect_status(204)?;
    ensure!(
        status.header("Range") == Some(format!("0-{}", first - 1).as_str()),
        "committed range after the crash: {:?}",
        status.header("Range")
    );
    Request::new("PATCH", format!("{base}{session}"))
        .header("Content-Range", format!("{first}-{}", chunked.len() - 1))
        .body(rest.to_vec())
        .send()?
        .expect_status(202)?;
    let chunked_digest = sha256(&chunked);
    Request::new("PUT", format!("{base}{session}?digest={chunked_digest}"))
        .send()?
        .expect_status(201)?;

    // 3. Killed during a manifest PUT that moves `v1`: `v1` still names the old, complete image.
    let config = push_blob(&base, b"{\"os\":\"linux\"}")?;
    let v2 = manifest(&(config, 14), &(digest.clone(), blob.len()));
    let head = head_of(
        "PUT",
        &format!("/v2/{REPO}/manifests/v1"),
        &wharf,
        v2.len(),
        &format!("Content-Type: {MANIFEST}\r\n"),
    );
    let stream = start_request(&wharf, &head, &v2, v2.len() / 2)?;
    wharf.crash()?;
    drop(stream);
    wharf.start_again()?;
    ensure!(
        digest_of_tag(&base, "v1")? == sha256(&v1),
        "v1 moved by a half-sent PUT"
    );
    ensure!(every_tag_resolves(&base)? == 1);
    put_manifest(&base, "v1", &v2)?.expect_status(201)?;
    ensure!(digest_of_tag(&base, "v1")? == sha256(&v2));
    ensure!(every_tag_resolves(&base)? == 1);
    Ok(())
}

#[test]
fn object_store_crash_and_table_outage_mid_push_then_retries_succeed() -> Result<()> {
    let _heavy = crate::heavy();
    let mut cloud = Cloud::start()?;
    let base = cloud.wharf.url();
    push_image(&base, 10, 32 * 1024, "v1")?;

    // The S3 server dies between two chunks of an upload.
    let started = Request::new("POST", format!("{base}/v2/{REPO}/blobs/uploads/")).send()?;
    started.expect_status(202)?;
    let session = started.header("Location").context("Location")?.to_owned();
    let blob = seeded_bytes(11, 12 * 1024 * 1024);
    let first = 6 * 1024 * 1024;
    let patch = |range: (usize, usize)| {
        Request::new("PATCH", format!("{base}{session}"))
            .header("Content-Range", format!("{}-{}", range.0, range.1 - 1))
            .body(blob[range.0..range.1].to_vec())
            .send()
    };
    patch((0, first))?.expect_status(202)?;
    cloud.s3.crash()?;
    let failed = patch((first, blob.len()))?;
    ensure!(
        failed.status >= 500,
        "a chunk with the object store down must fail, got {}",
        failed.status
    );
    cloud.s3.start_again()?;
    let status = Request::get(format!("{base}{session}")).send()?;
    status.expect_status(204)?;
    ensure!(status.header("Range") == Some(format!("0-{}", first - 1).as_str()));
    patch((first, blob.len()))?.expect_status(202)?;
    let digest = sha256(&blob);
    Request::new("PUT", format!("{base}{session}?digest={digest}"))
        .send()?
        .expect_status(201)?;

    // The table stops answering during a manifest PUT, then comes back.
    let config = push_blob(&base, b"{\"os\":\"linux\"}")?;
    let v2 = manifest(&(config, 14), &(digest, blob.len()));
    cloud.moto.freeze()?;
    let during = std::thread::scope(|scope| {
        let put = scope.spawn(|| put_manifest(&base, "v2", &v2));
        std::thread::sleep(Duration::from_secs(3));
        let thawed = cloud.moto.thaw();
        (put.join(), thawed)
    });
    during.1?;
    let first_try = during
        .0
        .map_err(|_| anyhow::anyhow!("PUT thread panicked"))??;
    // Either the PUT outlived the outage or it failed cleanly; a retry must succeed.
    if first_try.status != 201 {
        ensure!(first_try.status >= 500, "unexpected {}", first_try.status);
        put_manifest(&base, "v2", &v2)?.expect_status(201)?;
    }
    ensure!(digest_of_tag(&base, "v2")? == sha256(&v2));
    ensure!(every_tag_resolves(&base)? == 2);
    Ok(())
}
