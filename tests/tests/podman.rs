//! podman against Wharf: an image loaded from an OCI layout is pushed, removed locally and pulled
//! back, and keeps its image id (the digest of its config).
//!
//! podman stores layers uncompressed and gzips them again on push, so layer digests may differ
//! from the layout's; the config, and with it the image id, must not.

use std::time::Duration;

use anyhow::Result;
use wharf_e2e::curl::Request;
use wharf_e2e::digest::hex_part;
use wharf_e2e::image;
use wharf_e2e::layout::{Descriptor, Layout};
use wharf_e2e::podman::{self, Podman};
use wharf_e2e::skopeo::oci_ref;
use wharf_e2e::{Wharf, digest};

/// Upper bound on one podman pull or push of a small image.
const PODMAN_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn podman_push_rmi_pull_keeps_the_image_id() -> Result<()> {
    let podman = Podman::new()?;
    podman.check_usable()?;
    let wharf = Wharf::start()?;
    let work = podman::lowercase_tempdir()?;
    let src = Layout::create(work.path())?;
    let manifest = image::sample_image(&src, "v1", 3, 4)?;
    let (config, _) = src.image_blobs(&manifest.digest)?;
    let image_id = hex_part(&config.digest).to_owned();

    let loaded = podman
        .cmd()
        .args(["pull", "--quiet"])
        .arg(oci_ref(src.root(), "v1"))
        .timeout(PODMAN_TIMEOUT)
        .stdout()?;
    assert_eq!(loaded.trim(), image_id, "podman read a different config");

    let remote = format!("{}/e2e/podman:v1", wharf.host());
    podman.cmd().args(["tag", &image_id, &remote]).run()?;
    let digest_file = work.path().join("pushed.digest");
    podman
        .cmd()
        .args(["push", "--tls-verify=false", "--digestfile"])
        .arg(&digest_file)
        .arg(&remote)
        .timeout(PODMAN_TIMEOUT)
        .run()?;
    let pushed_digest = std::fs::read_to_string(&digest_file)?.trim().to_owned();

    let head = Request::new(
        "HEAD",
        format!("{}/v2/e2e/podman/manifests/v1", wharf.url()),
    )
    .header(
        "Accept",
        "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
    )
    .send()?;
    head.expect_status(200)?;
    assert_eq!(
        head.header("Docker-Content-Digest"),
        Some(pushed_digest.as_str()),
        "the registry serves another manifest than podman pushed"
    );
    let served = Request::get(format!(
        "{}/v2/e2e/podman/manifests/{pushed_digest}",
        wharf.url()
    ))
    .send()?;
    served.expect_status(200)?;
    assert_eq!(digest::sha256(&served.body), pushed_digest);
    let served_config = Descriptor::from_json(&served.json()?["config"])?;
    assert_eq!(served_config.digest, config.digest);

    podman.cmd().args(["rmi", "--force", &image_id]).run()?;
    assert!(!podman.image_exists(&remote)?, "rmi left the image behind");

    let pulled = podman
        .cmd()
        .args(["pull", "--quiet", "--tls-verify=false", &remote])
        .timeout(PODMAN_TIMEOUT)
        .stdout()?;
    assert_eq!(pulled.trim(), image_id, "pulled image has another id");
    assert_eq!(podman.image_id(&remote)?, image_id);
    Ok(())
}
