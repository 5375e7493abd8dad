//! LARGE TEST (about a minute, 2 GiB of temp disk): a 1 GiB layer of random bytes goes up with
//! skopeo and comes back down with the same digest, while the server's peak memory stays below
//! 256 MiB, i.e. blobs are streamed, never buffered whole. It runs once, and as a heavy test
//! (`crate::heavy`) never beside another heavy one.

use std::time::{Duration, Instant};

use anyhow::Result;
use wharf_e2e::curl::Request;
use wharf_e2e::image::{image, random_layer};
use wharf_e2e::layout::{Layout, Platform};
use wharf_e2e::skopeo::{Skopeo, oci_ref};
use wharf_e2e::{Wharf, digest};

/// The layer size.
const LAYER_BYTES: u64 = 1 << 30;
/// The server's peak resident memory must stay below this, in KiB (256 MiB).
const MAX_PEAK_RSS_KIB: u64 = 256 * 1024;
/// Upper bound on the push: a debug-built server takes about 40 s here.
const PUSH_TIMEOUT: Duration = Duration::from_secs(100);
/// Upper bound on the pull.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn one_gib_layer_round_trips_while_server_memory_stays_below_256_mib() -> Result<()> {
    let _heavy = crate::heavy();
    let started = Instant::now();
    let work = tempfile::tempdir()?;
    let src = Layout::create(&work.path().join("src"))?;
    let layer = random_layer(&src, LAYER_BYTES, 0x1_0000_0000)?;
    let manifest = image(
        &src,
        &Platform::linux("amd64"),
        std::slice::from_ref(&layer),
    )?;
    src.tag("v1", &manifest)?;
    eprintln!("generated 1 GiB layer in {:?}", started.elapsed());

    let wharf = Wharf::start()?;
    let skopeo = Skopeo::new()?;
    let remote = format!("docker://{}/e2e/large:v1", wharf.host());
    let step = Instant::now();
    skopeo.copy(&oci_ref(src.root(), "v1"), &remote, &[], PUSH_TIMEOUT)?;
    eprintln!("pushed in {:?}", step.elapsed());
    // The source copy is no longer needed: free a GiB of disk before pulling.
    std::fs::remove_file(src.blob_path(&layer.descriptor.digest))?;

    let head = Request::new(
        "HEAD",
        format!(
            "{}/v2/e2e/large/blobs/{}",
            wharf.url(),
            layer.descriptor.digest
        ),
    )
    .send()?;
    head.expect_status(200)?;
    assert_eq!(
        head.header("Content-Length"),
        Some(LAYER_BYTES.to_string().as_str())
    );

    let step = Instant::now();
    let dst_dir = work.path().join("dst");
    skopeo.copy(&remote, &oci_ref(&dst_dir, "v1"), &[], PULL_TIMEOUT)?;
    eprintln!("pulled in {:?}", step.elapsed());
    let dst = Layout::open(&dst_dir)?;
    let pulled = dst.resolve("v1")?;
    assert_eq!(pulled.digest, manifest.digest, "manifest digest changed");
    let (_, layers) = dst.image_blobs(&pulled.digest)?;
    assert_eq!(layers, vec![layer.descriptor.clone()]);
    let on_disk = digest::sha256_file(&dst.blob_path(&layer.descriptor.digest))?;
    assert_eq!(
        on_disk, layer.descriptor.digest,
        "pulled layer bytes differ"
    );

    let peak = wharf.peak_rss_kib()?;
    eprintln!(
        "server peak RSS {} MiB; whole test {:?}",
        peak / 1024,
        started.elapsed()
    );
    assert!(
        peak < MAX_PEAK_RSS_KIB,
        "server peak RSS {peak} KiB is not below {MAX_PEAK_RSS_KIB} KiB"
    );
    Ok(())
}
