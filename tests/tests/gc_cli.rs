//! `wharf gc` on the embedded storage, end to end: images pushed with skopeo, one of them
//! deleted through the API (manifest and blob links), then `wharf gc --dry-run` reports exactly
//! that image's blobs and bytes, `wharf gc` removes them, and the other image still pulls.

use std::time::Duration;

use anyhow::{Context, Result};
use wharf_e2e::Wharf;
use wharf_e2e::cmd::Cmd;
use wharf_e2e::curl::Request;
use wharf_e2e::image::sample_image;
use wharf_e2e::layout::Layout;
use wharf_e2e::server::binary_path;
use wharf_e2e::skopeo::{Skopeo, oci_ref};

const REPO: &str = "e2e/gc";

/// Digests and sizes of a manifest's config and layers, from the layout it was built in.
fn blobs_of(layout: &Layout, manifest: &str) -> Result<Vec<(String, u64)>> {
    let m: serde_json::Value = serde_json::from_slice(&layout.read_blob(manifest)?)?;
    let mut out = vec![(
        m["config"]["digest"].as_str().context("config")?.to_owned(),
        m["config"]["size"].as_u64().context("size")?,
    )];
    for l in m["layers"].as_array().context("layers")? {
        out.push((
            l["digest"].as_str().context("layer")?.to_owned(),
            l["size"].as_u64().context("size")?,
        ));
    }
    Ok(out)
}

fn gc(wharf: &Wharf, args: &[&str]) -> Result<String> {
    Cmd::new(binary_path())
        .arg("gc")
        .args(args)
        .env("WHARF_DATA_DIR", wharf.data_dir())
        .env("WHARF_LOG", "warn")
        .timeout(Duration::from_secs(60))
        .stdout()
}

#[test]
fn wharf_gc_removes_a_deleted_images_blobs_and_nothing_else() -> Result<()> {
    let mut wharf = Wharf::start()?;
    let skopeo = Skopeo::new()?;
    let dir = tempfile::tempdir()?;
    let layout = Layout::create(dir.path())?;
    let keep = sample_image(&layout, "keep", 2, 1)?;
    let drop = sample_image(&layout, "drop", 2, 2)?;
    for tag in ["keep", "drop"] {
        skopeo.copy(
            &oci_ref(dir.path(), tag),
            &format!("docker://{}/{REPO}:{tag}", wharf.host()),
            &["--dest-tls-verify=false"],
            Duration::from_secs(60),
        )?;
    }
    // Delete the image: its manifest, then its blob links.
    let base = format!("{}/v2/{REPO}", wharf.url());
    Request::new("DELETE", format!("{base}/manifests/{}", drop.digest))
        .send()?
        .expect_status(202)?;
    let dropped = blobs_of(&layout, &drop.digest)?;
    for (digest, _) in &dropped {
        Request::new("DELETE", format!("{base}/blobs/{digest}"))
            .send()?
            .expect_status(202)?;
    }
    // The embedded database admits one process: collect with the server stopped.
    wharf.stop()?;

    let dry = gc(&wharf, &["--dry-run", "--grace", "0s"])?;
    let bytes: u64 = dropped.iter().map(|(_, s)| s).sum();
    for (digest, _) in &dropped {
        assert!(
            dry.contains(&format!("would remove blob {digest}")),
            "{dry}"
        );
    }
    assert!(
        dry.contains(&format!(
            "would remove {} blobs, 0 upload sessions",
            dropped.len()
        )),
        "{dry}"
    );
    let json: serde_json::Value = serde_json::from_str(&gc(&wharf, &["--grace", "0", "--json"])?)?;
    let removed = json["removed"].as_array().context("removed")?;
    assert_eq!(removed.len(), dropped.len(), "{json}");
    let total: u64 = removed.iter().filter_map(|i| i["size"].as_u64()).sum();
    assert_eq!(total, bytes, "the summary counts the blobs' bytes");
    for (digest, _) in &dropped {
        let hex = digest.trim_start_matches("sha256:");
        assert!(!wharf.data_dir().join("blobs/sha256").join(hex).exists());
    }
    let again = gc(&wharf, &["--grace", "0"])?;
    assert!(again.contains("removed 0 blobs"), "{again}");

    // With the default grace period (a day) nothing young goes.
    wharf.start_again()?;
    let back = tempfile::tempdir()?;
    skopeo.copy(
        &format!("docker://{}/{REPO}:keep", wharf.host()),
        &oci_ref(back.path(), "keep"),
        &["--src-tls-verify=false"],
        Duration::from_secs(60),
    )?;
    let pulled = Layout::open(back.path())?;
    assert_eq!(
        blobs_of(&pulled, &keep.digest)?,
        blobs_of(&layout, &keep.digest)?
    );
    Ok(())
}
