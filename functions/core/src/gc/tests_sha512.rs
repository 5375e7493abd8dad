//! Garbage collection of sha512 blobs on the embedded stores: a sha512 blob a manifest names is
//! kept, an unreferenced one goes, and the same bytes under the other algorithm are a blob of
//! their own, collected on their own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;

use super::*;
use crate::oci::{Algorithm, Tag, media};
use crate::storage::fs::FsBlobStore;
use crate::storage::redb::RedbMetaStore;
use crate::storage::{BlobLink, ByteStream, ManifestRecord, ManifestWrite};

/// Stores `bytes` under `algorithm` the way an upload does; returns its digest.
async fn store_blob(blobs: &dyn BlobStore, algorithm: Algorithm, bytes: &[u8]) -> Digest {
    let digest = algorithm.digest(bytes);
    let id = format!("{:032x}", rand::random::<u128>());
    let state = blobs.start_upload(&id).await.expect("start");
    let body: ByteStream = Box::pin(stream::iter([Ok(Bytes::copy_from_slice(bytes))]));
    let (state, _) = blobs
        .append_upload(&id, state, 0, body)
        .await
        .expect("append");
    blobs
        .finish_upload(&id, state, &digest)
        .await
        .expect("finish");
    digest
}

#[tokio::test]
async fn gc_keeps_referenced_sha512_blobs_and_reclaims_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FsBlobStore::open(dir.path()).await.expect("fs"));
    let meta = Arc::new(RedbMetaStore::open(&dir.path().join("meta.redb")).expect("redb"));
    let (blobs, meta) = (blobs.as_ref(), meta.as_ref());
    let app = RepoName::parse("gc/sha512").expect("name");

    let layer_bytes = b"a sha512 layer";
    let layer = store_blob(blobs, Algorithm::Sha512, layer_bytes).await;
    let same_as_sha256 = store_blob(blobs, Algorithm::Sha256, layer_bytes).await;
    let orphan = store_blob(blobs, Algorithm::Sha512, b"nobody names this").await;
    meta.link_blob(&app, &layer, BlobLink { size: 14 })
        .await
        .expect("link");
    let manifest = Bytes::from(
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": layer.to_string(), "size": 14},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 14}],
        })
        .to_string(),
    );
    meta.put_manifest(ManifestWrite {
        repo: app.clone(),
        manifest: ManifestRecord {
            digest: Algorithm::Sha512.digest(&manifest),
            media_type: media::OCI_MANIFEST.into(),
            bytes: manifest,
        },
        tag: Some(Tag::parse("v1").expect("tag")),
        blobs: vec![layer.clone()],
        manifests: Vec::new(),
        referrer: None,
        pushed_ms: now_ms(),
    })
    .await
    .expect("manifest");
    // Named by the manifest only, not linked: still live.
    assert!(meta.unlink_blob(&app, &layer).await.expect("unlink"));

    tokio::time::sleep(Duration::from_millis(20)).await;
    let options = GcOptions {
        grace: Duration::ZERO,
        dry_run: false,
        ..GcOptions::default()
    };
    let done = run_with_progress(blobs, meta, &options, &Quiet)
        .await
        .expect("run");
    let mut removed: Vec<Digest> = done
        .removed
        .iter()
        .filter_map(|i| match i {
            GcItem::Blob { digest, .. } => Some(digest.clone()),
            _ => None,
        })
        .collect();
    removed.sort();
    let mut expected = vec![same_as_sha256.clone(), orphan.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(blobs.stat(&layer).await.expect("stat"), Some(14));
    for d in [&same_as_sha256, &orphan] {
        assert_eq!(blobs.stat(d).await.expect("stat"), None, "{d}");
    }
    assert!(
        dir.path().join("blobs/sha512").join(layer.hex()).is_file(),
        "the live blob's file stays"
    );
}
