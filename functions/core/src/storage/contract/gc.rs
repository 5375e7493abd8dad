//! The contract of the garbage-collection methods, run by [`super::blob_store`] and
//! [`super::meta_store`] on every backend: listings with times, conditional upload deletes,
//! and the link/hold/epoch protocol of [`crate::storage::BlobActivity`].

use bytes::Bytes;
use futures_util::stream;

use crate::oci::{Algorithm, RepoName};
use crate::storage::{
    BlobLink, BlobStore, ByteStream, ManifestRecord, ManifestWrite, MetaStore, Page, StorageError,
    UploadSession, now_ms,
};

/// Slack for comparing a backend's timestamps with ours (object stores keep seconds).
const CLOCK_SLACK_MS: u64 = 5_000;

fn all() -> Page {
    Page {
        last: None,
        n: 10_000,
    }
}

fn body(bytes: &'static [u8]) -> ByteStream {
    Box::pin(stream::iter([Ok(Bytes::from_static(bytes))]))
}

/// Stored blobs are listed in order with size and time; staged uploads are listed by id until
/// removed.
pub async fn blob_store(store: &dyn BlobStore) {
    let data: &'static [u8] = b"listed by garbage collection";
    let digest = Algorithm::Sha256.digest(data);
    let id = "0a0b0c0d0e0f00000000000000000001";
    let state = store.start_upload(id).await.expect("start");
    let (state, _) = store
        .append_upload(id, state, 0, body(data))
        .await
        .expect("append");
    let staged = store.list_staged().await.expect("list staged");
    let mine = staged
        .iter()
        .find(|s| s.id == id)
        .expect("an upload in progress is listed as staged");
    assert!(mine.modified_ms + CLOCK_SLACK_MS >= now_ms(), "{mine:?}");
    store
        .finish_upload(id, state, &digest)
        .await
        .expect("finish");
    assert!(
        store
            .list_staged()
            .await
            .expect("list staged")
            .iter()
            .all(|s| s.id != id),
        "a finished upload leaves nothing staged"
    );

    let listed = store.list_blobs(None, 10_000).await.expect("list blobs");
    let info = listed
        .iter()
        .find(|b| b.digest == digest)
        .expect("the blob is listed");
    assert_eq!(info.size, data.len() as u64);
    assert!(info.modified_ms + CLOCK_SLACK_MS >= now_ms());
    let names: Vec<String> = listed.iter().map(|b| b.digest.to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "blobs are listed in digest order");
    let after = store
        .list_blobs(Some(&digest), 10_000)
        .await
        .expect("list after");
    assert!(
        after
            .iter()
            .all(|b| b.digest.to_string() > digest.to_string())
    );
    assert_eq!(store.list_blobs(None, 1).await.expect("list 1").len(), 1);

    // Staging whose session is gone is removed by id.
    let orphan = "0a0b0c0d0e0f00000000000000000002";
    let state = store.start_upload(orphan).await.expect("start");
    store
        .append_upload(orphan, state, 0, body(b"abandoned"))
        .await
        .expect("append");
    store.remove_staged(orphan).await.expect("remove staged");
    store
        .remove_staged(orphan)
        .await
        .expect("removing twice is fine");
    assert!(
        store
            .list_staged()
            .await
            .expect("list staged")
            .iter()
            .all(|s| s.id != orphan)
    );
}

/// Listings for the mark phase, conditional session deletes, and the link/hold protocol.
pub async fn meta_store(store: &dyn MetaStore) {
    let repo = RepoName::parse("contract/gc").expect("name");
    let d = Algorithm::Sha256.digest(b"gc contract blob");
    let before = now_ms();
    store
        .link_blob(&repo, &d, BlobLink { size: 16 })
        .await
        .expect("link");
    assert_eq!(
        store.list_blob_links(&repo, &all()).await.expect("links"),
        std::slice::from_ref(&d)
    );
    let bytes = Bytes::from(format!(
        "{{\"schemaVersion\":2,\"layers\":[{{\"digest\":\"{d}\"}}]}}"
    ));
    let m = ManifestRecord {
        digest: Algorithm::Sha256.digest(&bytes),
        media_type: crate::oci::media::OCI_MANIFEST.into(),
        bytes,
    };
    store
        .put_manifest(ManifestWrite {
            repo: repo.clone(),
            manifest: m.clone(),
            tag: None,
            blobs: vec![d.clone()],
            manifests: Vec::new(),
            referrer: None,
            pushed_ms: before,
        })
        .await
        .expect("manifest");
    assert_eq!(
        store
            .list_manifests(&repo, &all())
            .await
            .expect("manifests"),
        [m]
    );

    // A link stamps the digest's record with its time and epoch.
    let a = store
        .blob_activity(&d)
        .await
        .expect("activity")
        .expect("a link leaves a record");
    assert!(a.linked_ms >= before && a.gc_hold_ms.is_none(), "{a:?}");
    let e1 = store.begin_gc().await.expect("begin");
    let e2 = store.begin_gc().await.expect("begin");
    assert!(e2 > e1 && e1 > a.linked_epoch, "epochs increase");

    // A hold is refused while the last link is newer than the cutoff, or from the run's epoch.
    let future = now_ms() + 60_000;
    assert!(
        !store
            .hold_blob(&d, a.linked_ms, e2, now_ms())
            .await
            .expect("hold"),
        "linked at the cutoff"
    );
    store
        .link_blob(&repo, &d, BlobLink { size: 16 })
        .await
        .expect("relink");
    assert!(
        !store
            .hold_blob(&d, future, e2, now_ms())
            .await
            .expect("hold"),
        "linked in the run's epoch"
    );
    let e3 = store.begin_gc().await.expect("begin");
    let hold = now_ms();
    assert!(store.hold_blob(&d, future, e3, hold).await.expect("hold"));
    assert!(
        !store.hold_blob(&d, future, e3, hold).await.expect("hold"),
        "one live hold at a time"
    );
    let other = RepoName::parse("contract/gc-other").expect("name");
    let refused = store.link_blob(&other, &d, BlobLink { size: 16 }).await;
    assert!(
        matches!(refused, Err(StorageError::Conflict)),
        "a held digest cannot be linked: {refused:?}"
    );
    assert_eq!(store.blob_link(&other, &d).await.expect("link"), None);
    let listed = store.list_blob_activity(&all()).await.expect("records");
    assert!(
        listed
            .iter()
            .any(|(x, a)| *x == d && a.gc_hold_ms == Some(hold))
    );
    assert!(!store.forget_blob(&d, hold + 1).await.expect("forget"));
    assert!(store.forget_blob(&d, hold).await.expect("forget"));
    assert_eq!(store.blob_activity(&d).await.expect("activity"), None);

    // A never-linked digest can be held (bytes stored by an upload that never linked).
    let fresh = Algorithm::Sha256.digest(b"never linked");
    assert!(
        store
            .hold_blob(&fresh, 0, e3, now_ms())
            .await
            .expect("hold")
    );

    // Sessions are listed with their last write and deleted only at the version read.
    let session = UploadSession {
        id: "0a0b0c0d0e0f00000000000000000003".into(),
        repo: repo.clone(),
        offset: 0,
        hash_state: String::new(),
        staging: serde_json::Value::Null,
        created: before / 1000,
        version: 0,
    };
    store.create_upload(&session).await.expect("create");
    let mut updated = session.clone();
    updated.version = 1;
    updated.offset = 3;
    store.update_upload(&updated).await.expect("update");
    let listing = store.list_uploads(&all()).await.expect("uploads");
    let mine = listing
        .iter()
        .find(|l| l.session.id == session.id)
        .expect("the session is listed");
    assert_eq!(mine.session, updated);
    assert!(mine.touched_ms + CLOCK_SLACK_MS >= before, "{mine:?}");
    assert!(
        store
            .list_uploads(&Page {
                last: Some(session.id.clone()),
                n: 100
            })
            .await
            .expect("uploads")
            .iter()
            .all(|l| l.session.id > session.id)
    );
    assert!(!store.delete_upload_if(&session.id, 0).await.expect("stale"));
    assert!(store.upload(&session.id).await.expect("read").is_some());
    assert!(
        store
            .delete_upload_if(&session.id, 1)
            .await
            .expect("delete")
    );
    assert_eq!(store.upload(&session.id).await.expect("read"), None);
    assert!(!store.delete_upload_if(&session.id, 1).await.expect("gone"));
}

/// Immutable tags: created once, re-pushed at the same digest, never moved — checked in the
/// write's own transaction.
pub async fn immutable_tags(store: &dyn MetaStore) {
    use crate::storage::{PutManifestError, TagGuard};
    let repo = RepoName::parse("contract/immutable").expect("name");
    let tag = crate::oci::Tag::parse("v1").expect("tag");
    let manifest = |n: u8| {
        let bytes = Bytes::from(format!("{{\"schemaVersion\":2,\"immutable\":{n}}}"));
        ManifestRecord {
            digest: Algorithm::Sha256.digest(&bytes),
            media_type: crate::oci::media::OCI_MANIFEST.into(),
            bytes,
        }
    };
    let write = |m: &ManifestRecord| ManifestWrite {
        repo: repo.clone(),
        manifest: m.clone(),
        tag: Some(tag.clone()),
        blobs: Vec::new(),
        manifests: Vec::new(),
        referrer: None,
        pushed_ms: now_ms(),
    };
    let (a, b) = (manifest(1), manifest(2));
    store
        .put_manifest_guarded(write(&a), TagGuard::Immutable, None)
        .await
        .expect("a new immutable tag");
    store
        .put_manifest_guarded(write(&a), TagGuard::Immutable, None)
        .await
        .expect("re-pushing the same digest");
    let moved = store
        .put_manifest_guarded(write(&b), TagGuard::Immutable, None)
        .await;
    assert!(
        matches!(&moved, Err(PutManifestError::TagImmutable(d)) if *d == a.digest),
        "{moved:?}"
    );
    assert_eq!(
        store.tag(&repo, &tag).await.expect("tag"),
        Some(a.digest.clone())
    );
    assert_eq!(
        store.manifest(&repo, &b.digest).await.expect("manifest"),
        None,
        "a refused write writes nothing"
    );
    store
        .put_manifest_guarded(write(&b), TagGuard::Mutable, None)
        .await
        .expect("a mutable tag moves");
    assert_eq!(store.tag(&repo, &tag).await.expect("tag"), Some(b.digest));
}
