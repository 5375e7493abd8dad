//! The contract for chunked uploads of several parts, run by [`super::blob_store`] on every
//! backend: such a blob reads back, ranges, redirects and stats by its digest like any other;
//! a second upload of the same digest keeps one blob; finishing, aborting or removing the
//! staging of a finished upload never takes the blob's bytes; deleting the blob leaves nothing
//! staged. (On S3 these are the located blobs of `s3::located`; that their finish copies
//! nothing is proven by counting the store's requests, in the end-to-end tests.)

use bytes::Bytes;
use futures_util::stream;

use super::collect;
use crate::oci::{Algorithm, Digest};
use crate::storage::{BlobStore, ByteRange, ByteStream, StagingState};

/// Part size to assume for a backend that does not cut parts.
const ANY_PART: u64 = 64 * 1024;

pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u64::from(seed)) as u8
        })
        .collect()
}

/// Stages `bytes` for upload `id` in three appends of odd sizes.
pub(super) async fn stage(store: &dyn BlobStore, id: &str, bytes: &[u8]) -> StagingState {
    let mut state = store.start_upload(id).await.expect("start");
    let cuts = [0, bytes.len() / 3 + 1, 2 * bytes.len() / 3 + 7, bytes.len()];
    for w in cuts.windows(2) {
        let chunk = Bytes::copy_from_slice(&bytes[w[0]..w[1]]);
        let body: ByteStream = Box::pin(stream::iter([Ok(chunk)]));
        let (next, n) = store
            .append_upload(id, state, w[0] as u64, body)
            .await
            .expect("append");
        assert_eq!(n as usize, w[1] - w[0]);
        state = next;
    }
    state
}

async fn read(store: &dyn BlobStore, digest: &Digest, range: Option<ByteRange>) -> Vec<u8> {
    let read = store
        .get(digest, range)
        .await
        .expect("get")
        .expect("the blob is there");
    collect(read.body).await
}

/// Stat, whole and ranged reads, and the redirect (fetched) all give the blob.
pub(super) async fn reads_back(store: &dyn BlobStore, digest: &Digest, bytes: &[u8], part: usize) {
    assert_eq!(
        store.stat(digest).await.expect("stat"),
        Some(bytes.len() as u64)
    );
    assert!(read(store, digest, None).await == bytes, "whole blob");
    let across = ByteRange {
        start: part as u64 - 3,
        end: part as u64 + 3,
    };
    assert_eq!(
        read(store, digest, Some(across)).await,
        &bytes[part - 3..=part + 3]
    );
    if let Some(url) = store.redirect_url(digest).await.expect("redirect") {
        // One TLS crypto provider per process (ring, as elsewhere in Wharf).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let got = reqwest::get(&url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the redirect answers")
            .bytes()
            .await
            .expect("body");
        assert!(got == bytes, "the redirect serves the blob's bytes");
    }
}

fn staged_ids(staged: &[crate::storage::StagedUpload]) -> Vec<&str> {
    staged.iter().map(|s| s.id.as_str()).collect()
}

/// Blobs of several parts behave like any blob, and their bytes go only with the blob.
pub async fn blob_store(store: &dyn BlobStore) {
    let part = usize::try_from(store.chunk_min_length().unwrap_or(ANY_PART)).expect("part");
    let bytes = pattern(2 * part + part / 2 + 1, 7);
    let digest = Algorithm::Sha256.digest(&bytes);
    let (a, b) = (
        "1a000000000000000000000000000001",
        "1b000000000000000000000000000002",
    );

    let state = stage(store, a, &bytes).await;
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    store
        .finish_upload(a, state.clone(), &digest)
        .await
        .expect("finish");
    reads_back(store, &digest, &bytes, part).await;
    store
        .finish_upload(a, state.clone(), &digest)
        .await
        .expect("finishing again (a retry) is harmless");
    reads_back(store, &digest, &bytes, part).await;

    // What the API does when linking fails after a finish and the client cancels, and what
    // garbage collection does with staging no session owns: neither takes a published blob.
    store
        .abort_upload(a, state)
        .await
        .expect("abort after finish");
    store.remove_staged(a).await.expect("remove staged");
    reads_back(store, &digest, &bytes, part).await;

    // The same digest uploaded again: one blob, nothing left staged by either upload.
    let state = stage(store, b, &bytes).await;
    store
        .finish_upload(b, state, &digest)
        .await
        .expect("second finish");
    reads_back(store, &digest, &bytes, part).await;
    let staged = store.list_staged().await.expect("list staged");
    assert!(
        staged.iter().all(|s| s.id != a && s.id != b),
        "finished uploads leave nothing for garbage collection: {:?}",
        staged_ids(&staged)
    );
    let listed: Vec<_> = store
        .list_blobs(None, 10_000)
        .await
        .expect("list blobs")
        .into_iter()
        .filter(|i| i.digest == digest)
        .collect();
    assert_eq!(listed.len(), 1, "one blob per digest");
    assert_eq!(listed[0].size, bytes.len() as u64, "listed with its size");

    store.delete(&digest).await.expect("delete");
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    assert!(store.get(&digest, None).await.expect("get").is_none());
    let staged = store.list_staged().await.expect("list staged");
    assert!(
        staged.iter().all(|s| s.id != a && s.id != b),
        "a deleted blob leaves no bytes behind: {:?}",
        staged_ids(&staged)
    );
}
