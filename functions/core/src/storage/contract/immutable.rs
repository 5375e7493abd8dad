//! The pin contract ([`crate::storage::pins`]): content reachable from an immutable tag — the
//! manifest, an index's children, their blob links — cannot be deleted, and a refused delete
//! changes nothing; the same content held only by mutable tags can; a pin whose tag moved away
//! protects no more; an immutable release must be complete when pushed.
//!
//! On DynamoDB the refusal rests on a `ConditionCheck` with `attribute_not_exists(pk)` on a pin
//! item that usually does not exist: DynamoDB evaluates a condition on a missing item against no
//! attributes, so it holds ("Condition expressions" and "TransactWriteItems", Amazon DynamoDB
//! developer guide), and moto 5 evaluates it the same way; neither is more lenient here.

use bytes::Bytes;
use serde_json::json;

use crate::oci::{Algorithm, Digest, RepoName, Tag, media};
use crate::storage::{
    BlobLink, DeleteError, Deleted, ManifestRecord, ManifestWrite, MetaStore, PutManifestError,
    TagGuard, now_ms,
};

fn record(value: &serde_json::Value, media_type: &str) -> ManifestRecord {
    let bytes = Bytes::from(serde_json::to_vec(value).expect("json"));
    ManifestRecord {
        digest: Algorithm::Sha256.digest(&bytes),
        media_type: media_type.into(),
        bytes,
    }
}

fn descriptor(media_type: &str, digest: &Digest) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": 1})
}

/// One platform image of a release: its manifest, config and layer.
struct Image {
    manifest: ManifestRecord,
    config: Digest,
    layer: Digest,
}

/// Links a config and a layer named after `seed` in `repo` and stores an image manifest over
/// them (under no tag).
async fn image(store: &dyn MetaStore, repo: &RepoName, seed: &str) -> Image {
    let config = Algorithm::Sha256.digest(format!("config {seed}").as_bytes());
    let layer = Algorithm::Sha256.digest(format!("layer {seed}").as_bytes());
    for d in [&config, &layer] {
        store
            .link_blob(repo, d, BlobLink { size: 1 })
            .await
            .expect("link");
    }
    let manifest = record(
        &json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
        }),
        media::OCI_MANIFEST,
    );
    let w = ManifestWrite {
        repo: repo.clone(),
        manifest: manifest.clone(),
        tag: None,
        blobs: vec![config.clone(), layer.clone()],
        manifests: Vec::new(),
        referrer: None,
        pushed_ms: now_ms(),
    };
    store.put_manifest(w).await.expect("image manifest");
    Image {
        manifest,
        config,
        layer,
    }
}

/// An index over `children`, written under `tag` with `guard`.
async fn index(
    store: &dyn MetaStore,
    repo: &RepoName,
    children: &[&Image],
    tag: &str,
    guard: TagGuard,
) -> Result<ManifestRecord, PutManifestError> {
    let index = record(
        &json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": children
                .iter()
                .map(|c| descriptor(media::OCI_MANIFEST, &c.manifest.digest))
                .collect::<Vec<_>>(),
        }),
        media::OCI_INDEX,
    );
    let w = ManifestWrite {
        repo: repo.clone(),
        manifest: index.clone(),
        tag: Some(Tag::parse(tag).expect("tag")),
        blobs: Vec::new(),
        manifests: children.iter().map(|c| c.manifest.digest.clone()).collect(),
        referrer: None,
        pushed_ms: now_ms(),
    };
    store.put_manifest_guarded(w, guard, None).await?;
    Ok(index)
}

fn pinned_by<T: std::fmt::Debug>(r: Result<T, DeleteError>, digest: &Digest, tag: &str) {
    assert!(
        matches!(&r, Err(DeleteError::Pinned { digest: d, tag: t }) if d == digest && t.as_str() == tag),
        "the delete of {digest} is refused naming tag {tag}: {r:?}"
    );
}

/// Runs the pin contract on an empty store.
pub async fn release_pins(store: &dyn MetaStore) {
    let repo = RepoName::parse("contract/pins").expect("name");
    let (amd, arm) = (
        image(store, &repo, "amd64").await,
        image(store, &repo, "arm64").await,
    );
    let v1 = index(store, &repo, &[&amd, &arm], "v1", TagGuard::Immutable)
        .await
        .expect("an immutable release");
    // A mutable tag on the same index: a refused delete must not take it either.
    index(store, &repo, &[&amd, &arm], "latest", TagGuard::Mutable)
        .await
        .expect("a mutable tag on it");

    // Nothing the release reaches can be deleted by digest.
    pinned_by(
        store.delete_manifest(&repo, &amd.manifest.digest).await,
        &amd.manifest.digest,
        "v1",
    );
    pinned_by(store.unlink_blob(&repo, &arm.layer).await, &arm.layer, "v1");
    pinned_by(
        store.unlink_blob(&repo, &amd.config).await,
        &amd.config,
        "v1",
    );
    pinned_by(
        store.delete_manifest(&repo, &v1.digest).await,
        &v1.digest,
        "v1",
    );
    // ... and the refusals changed nothing.
    let tag = |t: &str| Tag::parse(t).expect("tag");
    for t in ["v1", "latest"] {
        assert_eq!(
            store.tag(&repo, &tag(t)).await.expect("tag"),
            Some(v1.digest.clone()),
            "tag {t} still points at the release"
        );
    }
    for m in [&v1.digest, &amd.manifest.digest, &arm.manifest.digest] {
        assert!(store.manifest(&repo, m).await.expect("manifest").is_some());
    }
    for b in [&amd.config, &amd.layer, &arm.config, &arm.layer] {
        assert!(store.blob_link(&repo, b).await.expect("link").is_some());
    }

    // The same content held only by mutable tags, in another repository, can be deleted: pins
    // are per repository.
    let other = RepoName::parse("contract/pins-mutable").expect("name");
    let (amd2, arm2) = (
        image(store, &other, "amd64").await,
        image(store, &other, "arm64").await,
    );
    assert_eq!(
        amd2.manifest.digest, amd.manifest.digest,
        "the same content"
    );
    index(store, &other, &[&amd2, &arm2], "v1", TagGuard::Mutable)
        .await
        .expect("a mutable release");
    assert_eq!(
        store
            .delete_manifest(&other, &amd2.manifest.digest)
            .await
            .expect("delete a child held by a mutable tag"),
        Deleted::Yes
    );
    assert!(
        store
            .unlink_blob(&other, &arm2.layer)
            .await
            .expect("unlink a blob held by a mutable tag")
    );

    // A release whose immutable tag moved away (a policy change made it mutable) holds nothing
    // any more: its stale pins go with the first delete that meets them.
    let rc = image(store, &repo, "rc").await;
    index(store, &repo, &[&rc], "rc1", TagGuard::Immutable)
        .await
        .expect("a release");
    pinned_by(store.unlink_blob(&repo, &rc.layer).await, &rc.layer, "rc1");
    index(store, &repo, &[&amd], "rc1", TagGuard::Mutable)
        .await
        .expect("the tag, mutable now, moves");
    assert!(
        store
            .unlink_blob(&repo, &rc.layer)
            .await
            .expect("the moved tag's old content is deletable")
    );
    assert_eq!(
        store
            .delete_manifest(&repo, &rc.manifest.digest)
            .await
            .expect("and so is its old child"),
        Deleted::Yes
    );
    // Content both releases share stays held by the one that still holds it.
    pinned_by(store.unlink_blob(&repo, &amd.layer).await, &amd.layer, "v1");

    // An immutable release must be complete: a child whose layer is gone refuses the push, and
    // the tag is not written.
    let broken = image(store, &repo, "broken").await;
    assert!(
        store
            .unlink_blob(&repo, &broken.layer)
            .await
            .expect("unlink")
    );
    let refused = index(store, &repo, &[&broken], "v2", TagGuard::Immutable).await;
    assert!(
        matches!(&refused, Err(PutManifestError::MissingBlob(d)) if *d == broken.layer),
        "{refused:?}"
    );
    assert_eq!(store.tag(&repo, &tag("v2")).await.expect("tag"), None);

    // An image (no index) under an immutable tag holds its own config and layers.
    let solo = image(store, &repo, "solo").await;
    let w = ManifestWrite {
        repo: repo.clone(),
        manifest: solo.manifest.clone(),
        tag: Some(tag("v3")),
        blobs: vec![solo.config.clone(), solo.layer.clone()],
        manifests: Vec::new(),
        referrer: None,
        pushed_ms: now_ms(),
    };
    store
        .put_manifest_guarded(w, TagGuard::Immutable, None)
        .await
        .expect("an immutable image");
    pinned_by(
        store.unlink_blob(&repo, &solo.layer).await,
        &solo.layer,
        "v3",
    );
    pinned_by(
        store.delete_manifest(&repo, &solo.manifest.digest).await,
        &solo.manifest.digest,
        "v3",
    );
}
