//! End to end under the Lambda runtime emulator: skopeo pushes an image through the functions
//! the template routes to (uploads, manifests-push) and pulls it back through the pull-side
//! functions, on s3s-fs + moto. Blob GETs are answered with redirects to presigned URLs: no
//! layer byte passes through a function on the way out.

use std::time::Duration;

use anyhow::Result;
use wharf_e2e::emulator::LambdaStack;
use wharf_e2e::image;
use wharf_e2e::layout::Layout;
use wharf_e2e::skopeo::{Skopeo, oci_ref};

/// skopeo on a warm emulator takes seconds; the margin covers a cold function start.
const COPY_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn skopeo_pushes_and_pulls_through_the_lambda_functions_with_redirected_blob_gets() -> Result<()> {
    let _heavy = crate::heavy();
    let stack = LambdaStack::start()?;
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let src = Layout::create(&work.path().join("src"))?;
    let manifest = image::sample_image(&src, "v1", 2, 1)?;
    let remote = format!("docker://{}/e2e/lambda/app:v1", stack.host());
    let pushed = skopeo.copy(&oci_ref(src.root(), "v1"), &remote, &[], COPY_TIMEOUT);
    if let Err(e) = pushed {
        anyhow::bail!("push failed: {e:#}\n{}", stack.logs());
    }
    let dst_dir = work.path().join("dst");
    skopeo.copy(&remote, &oci_ref(&dst_dir, "v1"), &[], COPY_TIMEOUT)?;
    let dst = Layout::open(&dst_dir)?;
    let pulled = dst.resolve("v1")?;
    assert_eq!(pulled.digest, manifest.digest, "manifest digest changed");
    let (config, layers) = dst.image_blobs(&pulled.digest)?;
    dst.verify_blob(&config)?;
    for layer in &layers {
        dst.verify_blob(layer)?;
    }
    let forwarded = stack.forwarded();
    let by = |binary: &str| forwarded.iter().filter(|f| f.binary == binary).count();
    assert!(
        by("uploads") >= 3,
        "blobs pushed through uploads: {forwarded:#?}"
    );
    assert!(by("manifests-push") >= 1, "{forwarded:#?}");
    let blob_gets: Vec<_> = forwarded
        .iter()
        .filter(|f| f.method == "GET" && f.binary == "blobs-pull")
        .collect();
    assert!(
        blob_gets.len() >= 3,
        "config + 2 layers pulled: {forwarded:#?}"
    );
    assert!(
        blob_gets.iter().all(|f| f.status == 307),
        "every blob GET redirected: {blob_gets:#?}"
    );
    Ok(())
}
