//! Racing writers on `wharf serve` over S3 (s3s-fs) + DynamoDB (moto): two pushers of one tag,
//! and two clients appending to one upload session. Each race ends with one winner and nothing
//! half-written.

use std::time::Duration;

use anyhow::{Result, ensure};
use wharf_e2e::cloud::Cloud;
use wharf_e2e::curl::Request;
use wharf_e2e::digest;
use wharf_e2e::image;
use wharf_e2e::layout::{Layout, OCI_MANIFEST};
use wharf_e2e::skopeo::{Skopeo, oci_ref};

/// Upper bound on one copy of a small image.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn two_pushers_racing_on_one_tag_leave_it_on_one_complete_image() -> Result<()> {
    let cloud = Cloud::start()?;
    let work = tempfile::tempdir()?;
    let remote = format!("docker://{}/race/tag:latest", cloud.wharf.host());
    let mut pushed = Vec::new();
    for seed in [11u64, 12] {
        let layout = Layout::create(&work.path().join(format!("src-{seed}")))?;
        let manifest = image::sample_image(&layout, "v1", 3, seed)?;
        pushed.push((layout, manifest));
    }
    std::thread::scope(|s| -> Result<()> {
        let pushers: Vec<_> = pushed
            .iter()
            .map(|(layout, _)| {
                let remote = remote.clone();
                s.spawn(move || -> Result<()> {
                    Skopeo::new()?.copy(&oci_ref(layout.root(), "v1"), &remote, &[], COPY_TIMEOUT)
                })
            })
            .collect();
        for p in pushers {
            p.join().map_err(|_| anyhow::anyhow!("pusher panicked"))??;
        }
        Ok(())
    })?;

    let tagged = Request::get(format!(
        "{}/v2/race/tag/manifests/latest",
        cloud.wharf.url()
    ))
    .header("Accept", OCI_MANIFEST)
    .send()?;
    tagged.expect_status(200)?;
    let winner = digest::sha256(&tagged.body);
    ensure!(
        pushed.iter().any(|(_, m)| m.digest == winner),
        "the tag points at neither pushed manifest"
    );
    // Both pushes landed whole: each manifest is there by digest, and the tag pulls.
    for (_, m) in &pushed {
        Request::get(format!(
            "{}/v2/race/tag/manifests/{}",
            cloud.wharf.url(),
            m.digest
        ))
        .header("Accept", OCI_MANIFEST)
        .send()?
        .expect_status(200)?;
    }
    let dst = work.path().join("dst");
    Skopeo::new()?.copy(&remote, &oci_ref(&dst, "latest"), &[], COPY_TIMEOUT)?;
    let pulled = Layout::open(&dst)?;
    let (config, layers) = pulled.image_blobs(&winner)?;
    pulled.verify_blob(&config)?;
    for layer in &layers {
        pulled.verify_blob(layer)?;
    }
    Ok(())
}

#[test]
fn two_clients_racing_on_one_upload_session_leave_one_chunk() -> Result<()> {
    let cloud = Cloud::start()?;
    let base = cloud.wharf.url();
    let started = Request::new("POST", format!("{base}/v2/race/session/blobs/uploads/"))
        .body(Vec::new())
        .send()?;
    started.expect_status(202)?;
    let location = started
        .header("Location")
        .ok_or_else(|| anyhow::anyhow!("no Location"))?
        .to_owned();
    let url = format!("{base}{location}");
    let chunks = [
        image::seeded_bytes(21, 300_000),
        image::seeded_bytes(22, 200_000),
    ];
    let results: Vec<Result<u16>> = std::thread::scope(|s| {
        let racers: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let url = url.clone();
                s.spawn(move || -> Result<u16> {
                    let r = Request::new("PATCH", url)
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Range", format!("0-{}", chunk.len() - 1))
                        .body(chunk.clone())
                        .send()?;
                    Ok(r.status)
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("racer panicked")))
            })
            .collect()
    });
    let statuses: Vec<u16> = results.into_iter().collect::<Result<_>>()?;
    ensure!(
        statuses.iter().filter(|s| **s == 202).count() == 1,
        "exactly one chunk at offset 0 is accepted: {statuses:?}"
    );
    ensure!(
        statuses.iter().all(|s| [202, 409, 416].contains(s)),
        "the loser is told its range is stale: {statuses:?}"
    );
    let winner = &chunks[statuses.iter().position(|s| *s == 202).unwrap_or(0)];

    let status = Request::get(url.clone()).send()?;
    status.expect_status(204)?;
    ensure!(
        status.header("Range") == Some(format!("0-{}", winner.len() - 1).as_str()),
        "the session holds exactly the winning chunk: {:?}",
        status.header("Range")
    );
    let blob = digest::sha256(winner);
    let sep = if url.contains('?') { '&' } else { '?' };
    Request::new("PUT", format!("{url}{sep}digest={blob}"))
        .body(Vec::new())
        .send()?
        .expect_status(201)?;

    // The pull is a redirect to the object store, which serves the very bytes.
    let get = Request::get(format!("{base}/v2/race/session/blobs/{blob}")).send()?;
    get.expect_status(307)?;
    let presigned = get
        .header("Location")
        .ok_or_else(|| anyhow::anyhow!("no Location"))?;
    let fetched = Request::get(presigned).send()?;
    fetched.expect_status(200)?;
    ensure!(
        fetched.body == *winner,
        "the stored blob is the winning chunk"
    );
    Ok(())
}
