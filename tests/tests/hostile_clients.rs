//! Hostile clients against a real `wharf serve`: a stalled body fails its request after the idle
//! timeout without committing a byte (the session stays usable), an oversized header block is
//! refused, and a client trickling its headers is disconnected after the header-read timeout;
//! the server keeps serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wharf_e2e::curl::Request;
use wharf_e2e::{Wharf, digest};

const REPO: &str = "e2e/hostile";

/// Reads what the server answers on `stream` until it closes or `limit` passes.
fn read_answer(stream: &mut TcpStream, limit: Duration) -> Result<String> {
    stream.set_read_timeout(Some(limit))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e).context("reading the answer"),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn a_stalled_body_times_out_and_commits_nothing() -> Result<()> {
    let wharf = Wharf::start_with_env(vec![("WHARF_BODY_IDLE_TIMEOUT_SECS".into(), "1".into())])?;
    let started = Request::new("POST", format!("{}/v2/{REPO}/blobs/uploads/", wharf.url()))
        .body(Vec::new())
        .send()?;
    started.expect_status(202)?;
    let location = started.header("Location").context("Location")?.to_owned();

    // Announce 100 bytes, send 10, then say nothing while keeping the connection open.
    let mut stream = TcpStream::connect(wharf.host())?;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 100\r\nContent-Range: 0-99\r\n\r\n",
        wharf.host()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&[7u8; 10])?;
    stream.flush()?;
    let sent_at = Instant::now();
    let answer = read_answer(&mut stream, Duration::from_secs(20))?;
    let waited = sent_at.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "a stalled body must fail its request, got {answer:?}"
    );
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    assert!(waited < Duration::from_secs(15), "took {waited:?}");

    // Nothing of the stalled chunk was committed, and the session goes on.
    let url = format!("{}{location}", wharf.url());
    let status = Request::get(&url).send()?;
    status.expect_status(204)?;
    assert_eq!(status.header("Range"), Some("0-0"));
    let blob = vec![42u8; 100];
    let expected = digest::sha256(&blob);
    let finished = Request::new("PUT", format!("{url}?digest={expected}"))
        .body(blob)
        .send()?;
    finished.expect_status(201)?;
    Ok(())
}

#[test]
fn an_oversized_header_block_is_refused_and_the_server_keeps_serving() -> Result<()> {
    let wharf = Wharf::start()?;
    let mut stream = TcpStream::connect(wharf.host())?;
    let huge = "x".repeat(1024 * 1024);
    let request = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {}\r\nX-Padding: {huge}\r\n\r\n",
        wharf.host()
    );
    // The server may close before reading everything; a write error is an acceptable refusal.
    let _ = stream.write_all(request.as_bytes());
    let answer = read_answer(&mut stream, Duration::from_secs(10)).unwrap_or_default();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "an oversized header must not be served: {answer:?}"
    );
    Request::get(format!("{}/v2/", wharf.url()))
        .send()?
        .expect_status(200)?;
    Ok(())
}

#[test]
fn a_client_trickling_its_headers_is_cut_off() -> Result<()> {
    let wharf = Wharf::start_with_env(vec![("WHARF_HEADER_READ_TIMEOUT_SECS".into(), "1".into())])?;
    let mut stream = TcpStream::connect(wharf.host())?;
    let started = Instant::now();
    // A byte every 200 ms: never a complete header block within the timeout.
    let mut closed = false;
    for byte in b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .cycle()
        .take(100)
    {
        if stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut probe = [0u8; 1];
        stream.set_read_timeout(Some(Duration::from_millis(1)))?;
        if matches!(stream.read(&mut probe), Ok(0)) {
            closed = true;
            break;
        }
    }
    let waited = started.elapsed();
    assert!(closed, "the connection was still open after {waited:?}");
    assert!(
        waited < Duration::from_secs(10),
        "cut off only after {waited:?}"
    );
    Request::get(format!("{}/v2/", wharf.url()))
        .send()?
        .expect_status(200)?;
    Ok(())
}
