//! The contract for sha512 content, run by [`super::blob_store`] and [`super::meta_store`] on
//! every backend: a blob finished under a sha512 digest is kept, read, listed and deleted like
//! a sha256 one, under its own key (the same bytes under both algorithms are two blobs, and
//! deleting one leaves the other); blobs list sha256 before sha512; links, manifests, tags,
//! garbage-collection records and upload sessions holding both midstates take sha512 digests.
//! (S3 records no SHA-512 checksum: these blobs are trusted because Wharf hashed them, which
//! the staged path marks, never because the store vouched.)

use bytes::Bytes;

use super::large::{pattern, reads_back, stage};
use super::{body, collect, repo, tag, write};
use crate::oci::{Algorithm, DigestStream, media};
use crate::storage::{BlobLink, BlobStore, ManifestRecord, MetaStore, Page, UploadSession};

/// sha512 blobs in the `BlobStore`: small and of several parts, next to the same bytes as sha256.
pub async fn blob_store(store: &dyn BlobStore) {
    let part = usize::try_from(store.chunk_min_length().unwrap_or(64 * 1024)).expect("part");
    let big = pattern(2 * part + 17, 51);
    let big512 = Algorithm::Sha512.digest(&big);
    let big256 = Algorithm::Sha256.digest(&big);
    let (a, b, c) = (
        "5a000000000000000000000000000001",
        "5b000000000000000000000000000002",
        "5c000000000000000000000000000003",
    );

    // Several parts, finished as sha512, then the same bytes as sha256: two blobs.
    let state = stage(store, a, &big).await;
    store
        .finish_upload(a, state, &big512)
        .await
        .expect("finish sha512");
    assert_eq!(store.stat(&big256).await.expect("stat"), None);
    reads_back(store, &big512, &big, part).await;
    let state = stage(store, b, &big).await;
    store
        .finish_upload(b, state, &big256)
        .await
        .expect("finish sha256");
    reads_back(store, &big256, &big, part).await;
    reads_back(store, &big512, &big, part).await;

    // A small one in one append.
    let small: &'static [u8] = b"a small sha512 blob";
    let small512 = Algorithm::Sha512.digest(small);
    let state = store.start_upload(c).await.expect("start");
    let (state, _) = store
        .append_upload(c, state, 0, body(vec![small]))
        .await
        .expect("append");
    store
        .finish_upload(c, state, &small512)
        .await
        .expect("finish small");
    assert_eq!(
        store.stat(&small512).await.expect("stat"),
        Some(small.len() as u64)
    );
    let read = store
        .get(&small512, None)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(collect(read.body).await, small);

    // Listed in digest order: every sha256 before every sha512, each with its size.
    let listed = store.list_blobs(None, 10_000).await.expect("list");
    let ours: Vec<_> = listed
        .iter()
        .filter(|i| [&big256, &big512, &small512].contains(&&i.digest))
        .map(|i| (i.digest.clone(), i.size))
        .collect();
    let mut expected = vec![
        (big512.clone(), big.len() as u64),
        (small512.clone(), small.len() as u64),
    ];
    expected.sort();
    expected.insert(0, (big256.clone(), big.len() as u64));
    assert_eq!(ours, expected);
    let after: Vec<_> = store
        .list_blobs(Some(&big256), 10_000)
        .await
        .expect("list after")
        .into_iter()
        .map(|i| i.digest)
        .collect();
    assert!(after.contains(&big512) && after.contains(&small512) && !after.contains(&big256));

    // Deleting the sha512 blob keeps the sha256 one of the same bytes, and leaves nothing staged.
    store.delete(&big512).await.expect("delete");
    assert_eq!(store.stat(&big512).await.expect("stat"), None);
    reads_back(store, &big256, &big, part).await;
    let staged = store.list_staged().await.expect("staged");
    assert!(
        staged.iter().all(|s| ![a, b, c].contains(&s.id.as_str())),
        "{staged:?}"
    );
    for d in [&big256, &small512] {
        store.delete(d).await.expect("delete");
    }
}

/// sha512 digests in the `MetaStore`.
pub async fn meta_store(store: &dyn MetaStore) {
    let r = repo("contract/sha512");
    let layer = Algorithm::Sha512.digest(b"sha512 layer");
    let config = Algorithm::Sha512.digest(b"{}");
    for d in [&layer, &config] {
        store
            .link_blob(&r, d, BlobLink { size: 12 })
            .await
            .expect("link");
    }
    assert_eq!(
        store.blob_link(&r, &layer).await.expect("link"),
        Some(BlobLink { size: 12 })
    );
    assert!(
        store
            .blob_activity(&layer)
            .await
            .expect("activity")
            .is_some(),
        "garbage collection sees the link"
    );
    let links = store
        .list_blob_links(&r, &Page { last: None, n: 10 })
        .await
        .expect("links");
    let mut expected = vec![layer.clone(), config.clone()];
    expected.sort();
    assert_eq!(links, expected);

    let bytes = Bytes::from_static(b"{\"schemaVersion\":2,\"sha512\":true}");
    let m = ManifestRecord {
        digest: Algorithm::Sha512.digest(&bytes),
        media_type: media::OCI_MANIFEST.into(),
        bytes,
    };
    store
        .put_manifest(write(&r, &m, Some("v512"), vec![layer.clone(), config]))
        .await
        .expect("put");
    assert_eq!(
        store.tag(&r, &tag("v512")).await.expect("tag"),
        Some(m.digest.clone())
    );
    assert_eq!(
        store.manifest(&r, &m.digest).await.expect("manifest"),
        Some(m.clone())
    );
    let tags = store
        .list_tags(&r, &Page { last: None, n: 10 })
        .await
        .expect("tags");
    assert_eq!(tags, vec![tag("v512")]);

    // A session hashing both algorithms keeps both midstates, byte for byte.
    let mut hasher = DigestStream::new(None);
    hasher.update(&pattern(300, 3));
    let session = UploadSession {
        id: "5e5e5e5e5e5e5e5e".into(),
        repo: r.clone(),
        offset: 300,
        hash_state: hasher.save(),
        staging: serde_json::json!({"parts": []}),
        created: 1,
        version: 0,
    };
    store.create_upload(&session).await.expect("create");
    let back = store
        .upload(&session.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(back, session);
    let resumed = DigestStream::restore(&back.hash_state).expect("restores");
    assert_eq!(
        resumed.digest(Algorithm::Sha512),
        Some(Algorithm::Sha512.digest(&pattern(300, 3)))
    );
    store.delete_upload(&session.id).await.expect("delete");

    assert!(store.unlink_blob(&r, &layer).await.expect("unlink"));
    assert_eq!(store.blob_link(&r, &layer).await.expect("link"), None);
}
