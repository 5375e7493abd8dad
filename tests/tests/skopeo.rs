//! skopeo against Wharf: images go up from an OCI layout and come back down with every digest
//! intact. `--preserve-digests` makes skopeo fail rather than recompress or convert, so a digest
//! mismatch can only come from the registry.
//!
//! Every case runs twice: on the embedded default (`embedded::…`) and with `wharf serve` on S3
//! (s3s-fs) + DynamoDB (moto) (`cloud::…`), where every blob GET must answer 307 to a presigned
//! URL that skopeo follows, so no blob byte is streamed through Wharf.

use std::time::Duration;

use anyhow::Result;
use wharf_e2e::curl::Request;
use wharf_e2e::image;
use wharf_e2e::layout::{Layout, OCI_INDEX, OCI_MANIFEST, Platform};
use wharf_e2e::skopeo::{Skopeo, oci_ref};
use wharf_e2e::{Wharf, digest};

/// Upper bound on one copy of a small image.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

fn multi_layer_image_round_trips_with_identical_digests(wharf: &Wharf) -> Result<()> {
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let src = Layout::create(&work.path().join("src"))?;
    let manifest = image::sample_image(&src, "v1", 4, 1)?;
    let (config, layers) = src.image_blobs(&manifest.digest)?;
    let remote = format!("docker://{}/e2e/multi:v1", wharf.host());

    skopeo.copy(&oci_ref(src.root(), "v1"), &remote, &[], COPY_TIMEOUT)?;
    let dst_dir = work.path().join("dst");
    skopeo.copy(&remote, &oci_ref(&dst_dir, "v1"), &[], COPY_TIMEOUT)?;

    let dst = Layout::open(&dst_dir)?;
    let pulled = dst.resolve("v1")?;
    assert_eq!(pulled.digest, manifest.digest, "manifest digest changed");
    assert_eq!(pulled.media_type, OCI_MANIFEST);
    assert_eq!(pulled.size, manifest.size);
    let (pulled_config, pulled_layers) = dst.image_blobs(&pulled.digest)?;
    assert_eq!(pulled_config, config, "config descriptor changed");
    assert_eq!(pulled_layers, layers, "layer descriptors changed");
    assert_eq!(pulled_layers.len(), 4);
    dst.verify_blob(&pulled_config)?;
    for layer in &pulled_layers {
        dst.verify_blob(layer)?;
    }
    Ok(())
}

fn pushed_tag_is_listed_and_its_manifest_served_byte_for_byte(wharf: &Wharf) -> Result<()> {
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let src = Layout::create(work.path())?;
    let manifest = image::sample_image(&src, "v1", 3, 2)?;
    let original = src.read_blob(&manifest.digest)?;
    let repo = format!("docker://{}/e2e/multi", wharf.host());
    skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &format!("{repo}:v1"),
        &[],
        COPY_TIMEOUT,
    )?;

    assert_eq!(skopeo.list_tags(&repo)?, vec!["v1".to_owned()]);
    let raw = skopeo.inspect_raw(&format!("{repo}:v1"))?;
    assert!(
        raw == original,
        "inspect --raw differs from the pushed manifest"
    );

    let by_digest = Request::get(format!(
        "{}/v2/e2e/multi/manifests/{}",
        wharf.url(),
        manifest.digest
    ))
    .header("Accept", OCI_MANIFEST)
    .send()?;
    by_digest.expect_status(200)?;
    assert!(by_digest.body == original, "GET by digest differs");
    assert_eq!(
        by_digest.header("Docker-Content-Digest"),
        Some(manifest.digest.as_str())
    );
    assert_eq!(by_digest.header("Content-Type"), Some(OCI_MANIFEST));
    assert_eq!(digest::sha256(&by_digest.body), manifest.digest);
    Ok(())
}

fn multi_arch_index_round_trips_with_all_and_keeps_every_digest(wharf: &Wharf) -> Result<()> {
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let src = Layout::create(&work.path().join("src"))?;
    let (index, children) = image::sample_index(&src, "v1", 3)?;
    let remote = format!("docker://{}/e2e/multiarch:v1", wharf.host());

    skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &remote,
        &["--all"],
        COPY_TIMEOUT,
    )?;
    let dst_dir = work.path().join("dst");
    skopeo.copy(&remote, &oci_ref(&dst_dir, "v1"), &["--all"], COPY_TIMEOUT)?;

    let dst = Layout::open(&dst_dir)?;
    let pulled = dst.resolve("v1")?;
    assert_eq!(pulled.digest, index.digest, "index digest changed");
    assert_eq!(pulled.media_type, OCI_INDEX);
    let pulled_children = dst.index_children(&pulled.digest)?;
    assert_eq!(pulled_children, children, "child manifests changed");
    let platforms: Vec<_> = pulled_children
        .iter()
        .filter_map(|c| c.platform.clone())
        .collect();
    assert_eq!(
        platforms,
        vec![Platform::linux("amd64"), Platform::linux("arm64")]
    );
    for child in &pulled_children {
        let (config, layers) = dst.image_blobs(&child.digest)?;
        assert_eq!(
            (config.clone(), layers.clone()),
            src.image_blobs(&child.digest)?,
            "blobs of {} changed",
            child.digest
        );
        dst.verify_blob(&config)?;
        for layer in &layers {
            dst.verify_blob(layer)?;
        }
    }

    let served = Request::get(format!("{}/v2/e2e/multiarch/manifests/v1", wharf.url()))
        .header("Accept", OCI_INDEX)
        .send()?;
    served.expect_status(200)?;
    assert_eq!(served.header("Content-Type"), Some(OCI_INDEX));
    assert_eq!(digest::sha256(&served.body), index.digest);
    Ok(())
}

/// Fails unless every blob GET Wharf logged was answered with a redirect (no blob bytes
/// through Wharf), and, when `pulled`, there was at least one.
fn blob_gets_were_redirected(wharf: &Wharf, pulled: bool) -> Result<()> {
    let blob_gets: Vec<_> = wharf
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:"))
        .collect();
    let streamed: Vec<_> = blob_gets.iter().filter(|r| r.status != 307).collect();
    anyhow::ensure!(
        streamed.is_empty(),
        "blob GETs answered without a redirect: {streamed:?}"
    );
    anyhow::ensure!(
        !pulled || !blob_gets.is_empty(),
        "the pull fetched no blob through Wharf's redirect"
    );
    Ok(())
}

/// Runs each case on both backends; `pull` cases must have fetched blobs through redirects.
macro_rules! on_every_backend {
    ($($case:ident: $pulls:expr),* $(,)?) => {
        mod embedded {
            $(
                #[test]
                fn $case() -> anyhow::Result<()> {
                    super::$case(&wharf_e2e::Wharf::start()?)
                }
            )*
        }
        mod cloud {
            $(
                #[test]
                fn $case() -> anyhow::Result<()> {
                    let cloud = wharf_e2e::cloud::Cloud::start()?;
                    super::$case(&cloud.wharf)?;
                    super::blob_gets_were_redirected(&cloud.wharf, $pulls)
                }
            )*
        }
    };
}

on_every_backend! {
    multi_layer_image_round_trips_with_identical_digests: true,
    pushed_tag_is_listed_and_its_manifest_served_byte_for_byte: false,
    multi_arch_index_round_trips_with_all_and_keeps_every_digest: true,
}
