//! Wharf keeps upload sessions and pushed content across a restart (SIGTERM, start again on the
//! same data directory): a chunked upload started before the restart can be finished after it.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wharf_e2e::curl::{Request, Response};
use wharf_e2e::image::{sample_image, seeded_bytes};
use wharf_e2e::layout::Layout;
use wharf_e2e::skopeo::{Skopeo, oci_ref};
use wharf_e2e::{Wharf, digest};

const REPO: &str = "e2e/resume";
/// The blob: a little over 3 MiB.
const BLOB_BYTES: usize = 3 * 1024 * 1024 + 17;
/// Bytes sent before the restart (not a multiple of the SHA-256 block, to test the midstate).
const FIRST_CHUNK: usize = 1024 * 1024 + 5;

/// An absolute URL for a `Location` header, which may be relative.
fn absolute(wharf: &Wharf, location: &str) -> String {
    if location.starts_with("http://") {
        location.to_owned()
    } else {
        format!("{}{location}", wharf.url())
    }
}

fn location(wharf: &Wharf, response: &Response) -> Result<String> {
    let value = response
        .header("Location")
        .with_context(|| format!("no Location header in {:?}", response.headers))?;
    Ok(absolute(wharf, value))
}

/// Starts an upload session and sends the first chunk; returns the session URL.
fn start_and_send_first_chunk(wharf: &Wharf, blob: &[u8]) -> Result<String> {
    let started = Request::new("POST", format!("{}/v2/{REPO}/blobs/uploads/", wharf.url()))
        .body(Vec::new())
        .send()?;
    started.expect_status(202)?;
    let session = location(wharf, &started)?;
    let patched = Request::new("PATCH", &session)
        .header("Content-Range", format!("0-{}", FIRST_CHUNK - 1))
        .body(&blob[..FIRST_CHUNK])
        .send()?;
    patched.expect_status(202)?;
    assert_eq!(
        patched.header("Range"),
        Some(format!("0-{}", FIRST_CHUNK - 1).as_str())
    );
    location(wharf, &patched)
}

#[test]
fn chunked_upload_resumes_after_a_server_restart() -> Result<()> {
    let mut wharf = Wharf::start()?;
    let blob = seeded_bytes(6, BLOB_BYTES);
    let expected = digest::sha256(&blob);
    let session = start_and_send_first_chunk(&wharf, &blob)?;
    let old_pid = wharf.pid()?;

    wharf.restart()?;
    assert_ne!(wharf.pid()?, old_pid, "the server was not restarted");

    let status = Request::get(&session).send()?;
    status.expect_status(204)?;
    assert_eq!(
        status.header("Range"),
        Some(format!("0-{}", FIRST_CHUNK - 1).as_str()),
        "the committed range was lost in the restart"
    );
    let uuid = session.rsplit('/').next().unwrap_or_default();
    assert_eq!(status.header("Docker-Upload-UUID"), Some(uuid));
    let session = location(&wharf, &status)?;

    let patched = Request::new("PATCH", &session)
        .header("Content-Range", format!("{FIRST_CHUNK}-{}", BLOB_BYTES - 1))
        .body(&blob[FIRST_CHUNK..])
        .send()?;
    patched.expect_status(202)?;
    assert_eq!(
        patched.header("Range"),
        Some(format!("0-{}", BLOB_BYTES - 1).as_str())
    );
    let session = location(&wharf, &patched)?;

    let separator = if session.contains('?') { '&' } else { '?' };
    let finished = Request::new("PUT", format!("{session}{separator}digest={expected}"))
        .body(Vec::new())
        .send()?;
    finished.expect_status(201)?;
    assert_eq!(
        finished.header("Docker-Content-Digest"),
        Some(expected.as_str())
    );

    let fetched = Request::get(format!("{}/v2/{REPO}/blobs/{expected}", wharf.url())).send()?;
    fetched.expect_status(200)?;
    assert_eq!(digest::sha256(&fetched.body), expected);
    assert!(
        fetched.body == blob,
        "stored blob differs from the uploaded bytes"
    );

    let gone = Request::get(&session).send()?;
    gone.expect_status(404)?;
    Ok(())
}

/// Sends a PATCH that announces `body.len()` bytes but delivers only `sent` of them, then
/// disconnects, as a client does when its connection drops mid-chunk; waits until the server
/// has logged the failed request.
fn send_truncated_patch(
    wharf: &Wharf,
    session: &str,
    start: usize,
    body: &[u8],
    sent: usize,
) -> Result<()> {
    let path = session
        .strip_prefix(&wharf.url())
        .with_context(|| format!("{session} is not on this server"))?;
    let mut stream = TcpStream::connect(wharf.host())?;
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nContent-Range: {start}-{}\r\n\r\n",
        wharf.host(),
        body.len(),
        start + body.len() - 1
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body[..sent])?;
    stream.flush()?;
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let failed = wharf
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.status >= 400);
        if failed {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the server never logged the interrupted PATCH")
}

#[test]
fn chunk_cut_off_by_a_disconnect_is_dropped_and_the_upload_still_completes() -> Result<()> {
    let mut wharf = Wharf::start()?;
    let blob = seeded_bytes(9, BLOB_BYTES);
    let expected = digest::sha256(&blob);
    let session = start_and_send_first_chunk(&wharf, &blob)?;
    let rest = &blob[FIRST_CHUNK..];
    send_truncated_patch(&wharf, &session, FIRST_CHUNK, rest, rest.len() / 3)?;
    wharf.restart()?;

    let status = Request::get(&session).send()?;
    status.expect_status(204)?;
    assert_eq!(
        status.header("Range"),
        Some(format!("0-{}", FIRST_CHUNK - 1).as_str()),
        "the partial chunk must not be committed"
    );
    let patched = Request::new("PATCH", &session)
        .header("Content-Range", format!("{FIRST_CHUNK}-{}", BLOB_BYTES - 1))
        .body(rest)
        .send()?;
    patched.expect_status(202)?;
    let session = location(&wharf, &patched)?;
    let separator = if session.contains('?') { '&' } else { '?' };
    Request::new("PUT", format!("{session}{separator}digest={expected}"))
        .body(Vec::new())
        .send()?
        .expect_status(201)?;

    let fetched = Request::get(format!("{}/v2/{REPO}/blobs/{expected}", wharf.url())).send()?;
    fetched.expect_status(200)?;
    assert!(
        fetched.body == blob,
        "stored blob differs from the uploaded bytes"
    );
    Ok(())
}

#[test]
fn out_of_order_chunk_after_restart_is_refused_with_the_committed_range() -> Result<()> {
    let mut wharf = Wharf::start()?;
    let blob = seeded_bytes(7, BLOB_BYTES);
    let session = start_and_send_first_chunk(&wharf, &blob)?;
    wharf.restart()?;

    let skipping = FIRST_CHUNK + 10;
    let refused = Request::new("PATCH", &session)
        .header("Content-Range", format!("{skipping}-{}", BLOB_BYTES - 1))
        .body(&blob[skipping..])
        .send()?;
    refused.expect_status(416)?;
    assert_eq!(
        refused.header("Range"),
        Some(format!("0-{}", FIRST_CHUNK - 1).as_str())
    );

    let status = Request::get(&session).send()?;
    status.expect_status(204)?;
    assert_eq!(
        status.header("Range"),
        Some(format!("0-{}", FIRST_CHUNK - 1).as_str()),
        "a refused chunk must not move the committed range"
    );
    Ok(())
}

#[test]
fn pushed_image_is_served_unchanged_after_a_restart() -> Result<()> {
    let mut wharf = Wharf::start()?;
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let src = Layout::create(work.path())?;
    let manifest = sample_image(&src, "v1", 3, 8)?;
    let remote = format!("docker://{}/{REPO}:v1", wharf.host());
    skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &remote,
        &[],
        Duration::from_secs(120),
    )?;

    wharf.restart()?;

    assert!(
        skopeo.inspect_raw(&remote)? == src.read_blob(&manifest.digest)?,
        "the manifest changed across the restart"
    );
    let (_, layers) = src.image_blobs(&manifest.digest)?;
    for layer in &layers {
        let fetched =
            Request::get(format!("{}/v2/{REPO}/blobs/{}", wharf.url(), layer.digest)).send()?;
        fetched.expect_status(200)?;
        assert_eq!(digest::sha256(&fetched.body), layer.digest);
    }
    Ok(())
}
