//! `wharf cp` against a local `wharf serve` (filesystem blobs: no presigning, so blobs go
//! through the registry): from a `docker save` archive built here, then registry to registry,
//! and again to show blobs already there are skipped. The direct-to-the-store path is proven
//! under the Lambda emulator in `push_paths.rs`.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use wharf_e2e::Wharf;
use wharf_e2e::cmd::Cmd;
use wharf_e2e::digest::sha256;
use wharf_e2e::image::{FileEntry, seeded_bytes, tar};
use wharf_e2e::layout::Layout;
use wharf_e2e::server::binary_path;
use wharf_e2e::skopeo::{Skopeo, oci_ref};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A `docker save`-style archive (the pre-OCI format): `manifest.json`, the config, one
/// uncompressed layer. Returns the archive's bytes and the config and layer digests.
fn docker_archive() -> Result<(Vec<u8>, String, String)> {
    let layer = tar(&[FileEntry {
        path: "opt/app/data.bin".into(),
        content: seeded_bytes(7, 300_000),
    }])?;
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!([{
        "Config": "config.json",
        "RepoTags": ["example/app:v3"],
        "Layers": ["abc123/layer.tar"],
    }]))?;
    let archive = tar(&[
        FileEntry {
            path: "manifest.json".into(),
            content: manifest,
        },
        FileEntry {
            path: "config.json".into(),
            content: config,
        },
        FileEntry {
            path: "abc123/layer.tar".into(),
            content: layer,
        },
    ])?;
    Ok((archive, config_digest, layer_digest))
}

fn cp(src: &str, dst: &str) -> Result<String> {
    let out = Cmd::new(binary_path())
        .args(["cp", src, dst])
        .timeout(TIMEOUT)
        .run()?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn wharf_cp_copies_a_docker_archive_and_a_remote_image_skipping_blobs_already_there() -> Result<()>
{
    let wharf = Wharf::start()?;
    let work = tempfile::tempdir()?;
    let (archive, config_digest, layer_digest) = docker_archive()?;
    let archive_path = work.path().join("image.tar");
    std::fs::write(&archive_path, archive)?;
    let host = wharf.host();

    let said = cp(
        &format!("docker-archive:{}", archive_path.display()),
        &format!("docker://{host}/arch/app"),
    )?;
    assert!(said.contains("2 through the registry"), "{said}");
    assert!(
        said.contains(&format!("{host}/arch/app:v3")),
        "the archive's tag: {said}"
    );

    let skopeo = Skopeo::new()?;
    let pulled = work.path().join("pulled");
    skopeo.copy(
        &format!("docker://{host}/arch/app:v3"),
        &oci_ref(&pulled, "v3"),
        &[],
        TIMEOUT,
    )?;
    let layout = Layout::open(&pulled)?;
    let manifest = layout.resolve("v3")?;
    let (config, layers) = layout.image_blobs(&manifest.digest)?;
    assert_eq!(config.digest, config_digest, "the config keeps its bytes");
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].digest, layer_digest, "the layer keeps its bytes");
    layout.verify_blob(&layers[0])?;

    // Registry to registry, then the same again: every blob is already there.
    let said = cp(
        &format!("docker://{host}/arch/app:v3"),
        &format!("docker://{host}/arch/copy:v3"),
    )?;
    assert!(said.contains("2 through the registry"), "{said}");
    let said = cp(
        &format!("docker://{host}/arch/app:v3"),
        &format!("docker://{host}/arch/copy:v3"),
    )?;
    assert!(
        said.contains("0 through the registry, 2 already there"),
        "{said}"
    );
    let original = skopeo.inspect_raw(&format!("docker://{host}/arch/app:v3"))?;
    let copied = skopeo.inspect_raw(&format!("docker://{host}/arch/copy:v3"))?;
    assert_eq!(original, copied, "the manifest is copied byte for byte");
    Ok(())
}
