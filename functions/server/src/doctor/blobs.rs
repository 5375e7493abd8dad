//! Checks on one blob: push, HEAD, GET (307 to the store, bytes hashed), and a direct upload
//! of wrong bytes.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_LENGTH, LOCATION};
use reqwest::{Method, StatusCode};
use wharf::oci::Algorithm;

use super::probes::answer;
use super::pushes::Blob;
use super::report::{Check, Line};
use super::{Doctor, meter};
use crate::cp::registry::Pushed;

/// Size of the probe blob: big enough that a `Content-Length` of a small body or of a
/// truncated one cannot pass for it, an odd number so no default or power of two matches, and
/// small enough for a slow uplink.
const PROBE_BYTES: u64 = 1_048_583;

/// Size of the direct-upload probe: any size works, the store binds it.
const DIRECT_BYTES: usize = 65_537;

/// Random bytes in a scratch file, and their digest.
pub(super) fn random_file(d: &Doctor, name: &str, size: usize) -> Result<(PathBuf, String)> {
    let mut bytes = vec![0u8; size];
    rand::fill(&mut bytes[..]);
    let path = d.scratch.path().join(name);
    std::fs::write(&path, &bytes)?;
    Ok((path, Algorithm::Sha256.digest(&bytes).to_string()))
}

/// Pushes the probe blob the way `wharf cp` does (direct to the store when offered).
pub(super) async fn push(d: &Doctor, bar: &ProgressBar) -> Line {
    let check = Check::BlobPush;
    let size = usize::try_from(PROBE_BYTES).unwrap_or(usize::MAX);
    let (file, digest) = match random_file(d, "probe", size) {
        Ok(f) => f,
        Err(e) => return Line::fail(check, format!("writing the probe blob: {e:#}")),
    };
    bar.set_length(PROBE_BYTES);
    match d
        .main
        .push_blob(&file, &digest, PROBE_BYTES, &meter(bar))
        .await
    {
        Ok(how) => {
            d.record(|p| {
                p.blobs.insert(digest.clone());
                p.probe = Some(Blob {
                    digest,
                    size: PROBE_BYTES,
                });
            });
            let how = match how {
                Pushed::Direct => "direct to the object store",
                Pushed::Through => "through the registry",
                Pushed::Present => "already there",
            };
            Line::ok(check, format!("{PROBE_BYTES} bytes, {how}"))
        }
        Err(e) => Line::fail(check, format!("{e:#}")),
    }
}

fn probe(d: &Doctor) -> Option<Blob> {
    d.pushed.lock().ok().and_then(|p| p.probe.clone())
}

/// `HEAD` of the probe blob: 200, its exact size in `Content-Length`, an empty body.
pub(super) async fn head(d: &Doctor) -> Line {
    let check = Check::BlobHead;
    let Some(blob) = probe(d) else {
        return Line::skipped(check, "no blob was pushed");
    };
    let url = d.main.url(&format!("blobs/{}", blob.digest));
    let res = match d.main.request(Method::HEAD, &url).send().await {
        Ok(res) => res,
        Err(e) => return Line::fail(check, e.to_string()),
    };
    if res.status() != StatusCode::OK {
        return Line::fail(check, format!("HEAD answered {}", res.status().as_u16()));
    }
    let length = res
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let digest = res
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.bytes().await.map(|b| b.len()).unwrap_or_default();
    let want = blob.size.to_string();
    if length.as_deref() != Some(want.as_str()) {
        return Line::fail(
            check,
            format!(
                "Content-Length {} for a blob of {want} bytes: the gateway or the function \
                 rewrote it",
                length.as_deref().unwrap_or("missing")
            ),
        );
    }
    if body != 0 {
        return Line::fail(check, format!("HEAD answered a body of {body} bytes"));
    }
    if digest.as_deref().is_some_and(|g| g != blob.digest) {
        return Line::fail(check, "Docker-Content-Digest names another digest");
    }
    Line::ok(check, format!("Content-Length: {want}, empty body"))
}

/// `GET` of the probe blob: 307 to the object store, whose bytes (fetched without the token)
/// hash to the digest.
pub(super) async fn get(d: &Doctor, bar: &ProgressBar) -> Line {
    let check = Check::BlobGet;
    let Some(blob) = probe(d) else {
        return Line::skipped(check, "no blob was pushed");
    };
    let url = d.main.url(&format!("blobs/{}", blob.digest));
    let res = match d.main.request(Method::GET, &url).send().await {
        Ok(res) => res,
        Err(e) => return Line::fail(check, e.to_string()),
    };
    let status = res.status();
    if status == StatusCode::OK {
        return Line::fail(
            check,
            "200: the registry streamed the blob itself instead of answering 307 to the object \
             store, so every pull passes through a function",
        );
    }
    let location = res
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (StatusCode::TEMPORARY_REDIRECT, Some(location)) = (status, location) else {
        return Line::fail(
            check,
            format!("GET answered {}, not 307", answer(res).await),
        );
    };
    let Ok(store) = reqwest::Url::parse(&location) else {
        return Line::fail(check, "307 to a relative Location, not to the object store");
    };
    let store_host = store.host_str().unwrap_or_default().to_owned();
    if location.starts_with(&format!("{}/", d.base)) {
        return Line::fail(check, "307 back to the registry, not to the object store");
    }
    bar.set_length(blob.size);
    // No token: the URL is the whole authority, and it names another host.
    let fetched = match d.http.get(store).send().await {
        Ok(res) if res.status() == StatusCode::OK => res.bytes().await,
        Ok(res) => {
            return Line::fail(
                check,
                format!(
                    "307 to {store_host}, which answered {}",
                    res.status().as_u16()
                ),
            );
        }
        Err(e) => return Line::fail(check, format!("fetching from {store_host}: {e}")),
    };
    let bytes = match fetched {
        Ok(b) => b,
        Err(e) => return Line::fail(check, format!("reading from {store_host}: {e}")),
    };
    bar.set_position(bytes.len() as u64);
    let got = Algorithm::Sha256.digest(&bytes).to_string();
    if got != blob.digest {
        return Line::fail(
            check,
            format!(
                "307 to {store_host}, whose {} bytes hash to {got}, not the digest",
                bytes.len()
            ),
        );
    }
    Line::ok(
        check,
        format!(
            "307 to {store_host}; the {} bytes fetched there hash to the digest",
            bytes.len()
        ),
    )
}

/// A direct upload announced for one blob, then sent other bytes of the same size: the finish
/// must answer an error and the blob must stay unknown (GET 404).
pub(super) async fn direct_wrong_bytes(d: &Doctor) -> Line {
    let check = Check::DirectWrongBytes;
    match try_direct_wrong_bytes(d).await {
        Ok(line) => line,
        Err(e) => Line::fail(check, format!("{e:#}")),
    }
}

async fn try_direct_wrong_bytes(d: &Doctor) -> Result<Line> {
    let check = Check::DirectWrongBytes;
    let (file, digest) = random_file(d, "direct", DIRECT_BYTES)?;
    let mut wrong = std::fs::read(&file)?;
    for b in &mut wrong {
        *b = !*b;
    }
    let repo = &d.main;
    let res = repo
        .request(Method::POST, &repo.url("blobs/uploads/"))
        .header("wharf-direct-digest", &digest)
        .header("wharf-direct-size", DIRECT_BYTES.to_string())
        .header(CONTENT_LENGTH, "0")
        .send()
        .await?;
    if res.status() != StatusCode::ACCEPTED {
        return Ok(Line::fail(
            check,
            format!("opening the upload answered {}", answer(res).await),
        ));
    }
    let Some(location) = res
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| repo.resolve(l))
    else {
        return Ok(Line::fail(check, "202 without Location"));
    };
    let offered = res
        .headers()
        .get("wharf-direct-upload")
        .is_some_and(|v| v == "1");
    if !offered {
        let _ = repo.session_request(Method::DELETE, &location).send().await;
        return Ok(Line::skipped(check, "no direct path"));
    }
    let upload: crate::cp::registry::DirectUpload = res.json().await?;
    // No token: the presigned URL is the whole authority, and it names another host.
    let mut put = d
        .http
        .request(Method::from_bytes(upload.method.as_bytes())?, &upload.url);
    for (k, v) in &upload.headers {
        put = put.header(k, v);
    }
    if !upload
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        put = put.header(CONTENT_LENGTH, DIRECT_BYTES.to_string());
    }
    let stored = put.body(wrong).send().await?.status();
    let store_said = if stored.is_success() {
        format!("the store took the wrong bytes ({})", stored.as_u16())
    } else {
        format!("the store refused them ({})", stored.as_u16())
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let finish = repo
        .session_request(Method::PUT, &format!("{location}{sep}digest={digest}"))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await?;
    let finished = finish.status();
    let finish_said = answer(finish).await;
    let blob_url = repo.url(&format!("blobs/{digest}"));
    let after = repo.request(Method::GET, &blob_url).send().await?.status();
    let _ = repo.session_request(Method::DELETE, &location).send().await;
    if finished.is_success() || after != StatusCode::NOT_FOUND {
        d.record(|p| {
            p.blobs.insert(digest.clone());
        });
        return Ok(Line::fail(
            check,
            format!(
                "WRONG BYTES PUBLISHED: {store_said}, the finish answered {finish_said}, the \
                 blob GET answers {}",
                after.as_u16()
            ),
        ));
    }
    Ok(Line::ok(
        check,
        format!(
            "{store_said}, the finish answered {finish_said}, the blob GET answers {}",
            after.as_u16()
        ),
    ))
}
