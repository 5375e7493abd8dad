//! The contract every backend must meet, as one suite per trait. Each backend's tests call
//! [`blob_store`] and [`meta_store`] on a fresh, empty store; a backend is done when both pass.
//! Compiled for tests and with the `contract` feature, so backends tested elsewhere (against
//! real S3- or DynamoDB-compatible servers) run the very same checks.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::{StreamExt, stream};

use super::{
    BlobLink, BlobStore, ByteRange, ByteStream, Deleted, ManifestRecord, ManifestWrite, MetaStore,
    Page, PutManifestError, ReferrerEntry, StorageError, TagRecord, UploadSession,
};
use crate::oci::{Algorithm, Digest, RepoName, Tag, media};

pub mod audit;
pub mod gc;
pub mod immutable;
pub mod large;
pub mod sha512;

fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(stream::iter(
        chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
    ))
}

async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("stream chunk"));
    }
    out
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("valid name")
}

fn tag(t: &str) -> Tag {
    Tag::parse(t).expect("valid tag")
}

/// The `BlobStore` contract: staged uploads become visible only when finished, appends resume
/// at the committed offset, ranges and deletes behave, and finishing twice is harmless.
pub async fn blob_store(store: &dyn BlobStore) {
    let data: &'static [u8] = b"hello, wharf blob store";
    let digest = Algorithm::Sha256.digest(data);
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    assert!(store.get(&digest, None).await.expect("get").is_none());

    let id = "00112233445566778899aabbccddeeff";
    let state = store.start_upload(id).await.expect("start");
    let (state, n) = store
        .append_upload(id, state, 0, body(vec![&data[..5]]))
        .await
        .expect("a1");
    assert_eq!(n, 5);
    // A failed attempt past the committed offset is discarded by the next append at offset 5.
    let failing: ByteStream = Box::pin(stream::iter(vec![
        Ok(Bytes::from_static(b"GARBAGE")),
        Err(std::io::Error::other("client went away")),
    ]));
    let err = store
        .append_upload(id, state.clone(), 5, failing)
        .await
        .expect_err("body error");
    assert!(
        matches!(err, StorageError::Body(_)),
        "body errors map to StorageError::Body"
    );
    let (state, n) = store
        .append_upload(id, state, 5, body(vec![&data[5..12], &data[12..]]))
        .await
        .expect("a2");
    assert_eq!(n, data.len() as u64 - 5);
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        None,
        "staged bytes are not visible"
    );
    store
        .finish_upload(id, state.clone(), &digest)
        .await
        .expect("finish");
    store
        .finish_upload(id, state, &digest)
        .await
        .expect("finishing again is harmless");
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        Some(data.len() as u64)
    );

    let whole = store
        .get(&digest, None)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(whole.size, data.len() as u64);
    assert_eq!(collect(whole.body).await, data);
    let part = store
        .get(&digest, Some(ByteRange { start: 7, end: 11 }))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(collect(part.body).await, &data[7..=11]);

    // The same content uploaded again is stored once, and the second finish succeeds.
    let id2 = "ffeeddccbbaa99887766554433221100";
    let s2 = store.start_upload(id2).await.expect("start");
    let (s2, _) = store
        .append_upload(id2, s2, 0, body(vec![data]))
        .await
        .expect("append");
    store
        .finish_upload(id2, s2, &digest)
        .await
        .expect("dedup finish");

    // Aborted uploads leave nothing visible.
    let id3 = "0123456789abcdef0123456789abcdef";
    let other: &'static [u8] = b"never finished";
    let s3 = store.start_upload(id3).await.expect("start");
    let (s3, _) = store
        .append_upload(id3, s3, 0, body(vec![other]))
        .await
        .expect("append");
    store.abort_upload(id3, s3).await.expect("abort");
    assert_eq!(
        store
            .stat(&Algorithm::Sha256.digest(other))
            .await
            .expect("stat"),
        None
    );

    store.delete(&digest).await.expect("delete");
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    store
        .delete(&digest)
        .await
        .expect("deleting a missing blob is fine");

    large::blob_store(store).await;
    gc::blob_store(store).await;
    sha512::blob_store(store).await;
}

fn manifest(n: u8) -> ManifestRecord {
    let bytes = Bytes::from(format!("{{\"schemaVersion\":2,\"n\":{n}}}"));
    ManifestRecord {
        digest: Algorithm::Sha256.digest(&bytes),
        media_type: media::OCI_MANIFEST.into(),
        bytes,
    }
}

fn write(r: &RepoName, m: &ManifestRecord, t: Option<&str>, blobs: Vec<Digest>) -> ManifestWrite {
    ManifestWrite {
        repo: r.clone(),
        manifest: m.clone(),
        tag: t.map(tag),
        blobs,
        manifests: Vec::new(),
        referrer: None,
        pushed_ms: FIRST_PUSH_MS,
    }
}

/// Push time of the contract's first writes; later pushes are stamped after it.
const FIRST_PUSH_MS: u64 = 1_700_000_000_000;

/// The `MetaStore` contract: atomic manifest writes that never tag missing content, per-repository
/// links, deletes, lexical pagination, referrers and versioned upload sessions.
pub async fn meta_store(store: &dyn MetaStore) {
    let a = repo("contract/a");
    let b = repo("contract/b");
    let blob = Algorithm::Sha256.digest(b"layer");
    assert!(!store.repository_exists(&a).await.expect("exists"));

    // A manifest whose blob is missing is refused and writes nothing.
    let m1 = manifest(1);
    let err = store
        .put_manifest(write(&a, &m1, Some("v1"), vec![blob.clone()]))
        .await;
    assert!(matches!(err, Err(PutManifestError::MissingBlob(d)) if d == blob));
    assert_eq!(store.tag(&a, &tag("v1")).await.expect("tag"), None);
    assert_eq!(
        store.manifest(&a, &m1.digest).await.expect("manifest"),
        None
    );

    // Links are per repository.
    store
        .link_blob(&a, &blob, BlobLink { size: 5 })
        .await
        .expect("link");
    store
        .link_blob(&a, &blob, BlobLink { size: 5 })
        .await
        .expect("link is idempotent");
    assert_eq!(
        store.blob_link(&a, &blob).await.expect("link"),
        Some(BlobLink { size: 5 })
    );
    assert_eq!(store.blob_link(&b, &blob).await.expect("link"), None);
    assert!(store.repository_exists(&a).await.expect("exists"));

    store
        .put_manifest(write(&a, &m1, Some("v1"), vec![blob.clone()]))
        .await
        .expect("put");
    assert_eq!(
        store.tag(&a, &tag("v1")).await.expect("tag"),
        Some(m1.digest.clone())
    );
    assert_eq!(
        store.manifest(&a, &m1.digest).await.expect("get"),
        Some(m1.clone())
    );
    assert_eq!(store.manifest(&b, &m1.digest).await.expect("get"), None);

    // An index needs its children in the same repository.
    let idx = manifest(2);
    let mut w = write(&a, &idx, Some("multi"), vec![]);
    w.manifests = vec![Algorithm::Sha256.digest(b"absent")];
    assert!(matches!(
        store.put_manifest(w.clone()).await,
        Err(PutManifestError::MissingManifest(_))
    ));
    w.manifests = vec![m1.digest.clone()];
    store.put_manifest(w).await.expect("index put");

    // Tags list in lexical order, paginated after `last`.
    for (i, t) in (1..).zip(["v3", "v2", "alpha"]) {
        let mut w = write(&a, &m1, Some(t), vec![]);
        w.pushed_ms = FIRST_PUSH_MS + i;
        store.put_manifest(w).await.expect("tag put");
    }
    let all: Vec<String> = store
        .list_tags(&a, &Page { last: None, n: 100 })
        .await
        .expect("list")
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(all, ["alpha", "multi", "v1", "v2", "v3"]);
    let page: Vec<String> = store
        .list_tags(
            &a,
            &Page {
                last: Some("multi".into()),
                n: 2,
            },
        )
        .await
        .expect("list")
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(page, ["v1", "v2"]);

    // Tag records carry the digest and the time of the tag's last push, same order and pages.
    let records = store
        .list_tag_records(&a, &Page { last: None, n: 100 })
        .await
        .expect("records");
    let record = |t: &str, d: &Digest, at: u64| TagRecord {
        tag: tag(t),
        digest: d.clone(),
        pushed_ms: Some(at),
    };
    assert_eq!(
        records,
        [
            record("alpha", &m1.digest, FIRST_PUSH_MS + 3),
            record("multi", &idx.digest, FIRST_PUSH_MS),
            record("v1", &m1.digest, FIRST_PUSH_MS),
            record("v2", &m1.digest, FIRST_PUSH_MS + 2),
            record("v3", &m1.digest, FIRST_PUSH_MS + 1),
        ]
    );
    let paged = store
        .list_tag_records(
            &a,
            &Page {
                last: Some("multi".into()),
                n: 2,
            },
        )
        .await
        .expect("records");
    assert_eq!(
        paged.iter().map(|r| r.tag.to_string()).collect::<Vec<_>>(),
        ["v1", "v2"]
    );
    // Pushing a tag again moves it to the new manifest and the new time.
    let mut repush = write(&a, &idx, Some("v3"), vec![]);
    repush.pushed_ms = FIRST_PUSH_MS + 10;
    store.put_manifest(repush).await.expect("re-push");
    let v3 = store
        .list_tag_records(
            &a,
            &Page {
                last: Some("v2".into()),
                n: 1,
            },
        )
        .await
        .expect("records");
    assert_eq!(v3, [record("v3", &idx.digest, FIRST_PUSH_MS + 10)]);
    assert_eq!(
        store
            .list_tag_records(&b, &Page { last: None, n: 100 })
            .await
            .expect("records"),
        []
    );

    // Repositories list in lexical order.
    store
        .link_blob(&b, &blob, BlobLink { size: 5 })
        .await
        .expect("link");
    let repos = store
        .list_repositories(&Page { last: None, n: 100 })
        .await
        .expect("repos");
    let names: Vec<&str> = repos.iter().map(RepoName::as_str).collect();
    let pos_a = names
        .iter()
        .position(|n| *n == "contract/a")
        .expect("a listed");
    let pos_b = names
        .iter()
        .position(|n| *n == "contract/b")
        .expect("b listed");
    assert!(pos_a < pos_b);
    let after = store
        .list_repositories(&Page {
            last: Some("contract/a".into()),
            n: 1,
        })
        .await
        .expect("repos");
    assert_eq!(after.first().map(RepoName::as_str), Some("contract/b"));

    // A prefix read holds exactly the names under the prefix, after `last` wherever it falls.
    for name in ["under/a", "under/a/b", "under/z", "under-x/a", "underz"] {
        let repo = RepoName::parse(name).expect("name");
        store
            .link_blob(&repo, &blob, BlobLink { size: 5 })
            .await
            .expect("link");
    }
    let under = async |last: Option<&str>, n: usize| -> Vec<String> {
        let page = Page {
            last: last.map(str::to_owned),
            n,
        };
        let repos = store
            .list_repositories_under("under/", &page)
            .await
            .expect("repos under");
        repos.iter().map(ToString::to_string).collect()
    };
    assert_eq!(under(None, 100).await, ["under/a", "under/a/b", "under/z"]);
    assert_eq!(under(None, 2).await, ["under/a", "under/a/b"]);
    assert_eq!(under(Some("under/a"), 100).await, ["under/a/b", "under/z"]);
    assert_eq!(under(Some("contract/b"), 1).await, ["under/a"]);
    assert!(under(Some("under/z"), 100).await.is_empty());
    assert!(under(Some("underz"), 100).await.is_empty());
    // The empty prefix is the whole index, as the plain listing reads it.
    for last in [None, Some("contract/a".to_owned())] {
        let page = Page { last, n: 100 };
        assert_eq!(
            store
                .list_repositories_under("", &page)
                .await
                .expect("repos under nothing"),
            store.list_repositories(&page).await.expect("repos"),
        );
    }

    // Referrers are recorded with the manifest and removed with it.
    let art = manifest(3);
    let entry = ReferrerEntry {
        media_type: media::OCI_MANIFEST.into(),
        digest: art.digest.clone(),
        size: art.bytes.len() as u64,
        artifact_type: Some("application/vnd.example.sig".into()),
        annotations: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
    };
    let mut w = write(&a, &art, None, vec![]);
    w.referrer = Some((m1.digest.clone(), entry.clone()));
    store.put_manifest(w).await.expect("referrer put");
    assert_eq!(
        store.referrers(&a, &m1.digest).await.expect("refs"),
        vec![entry]
    );
    assert_eq!(store.referrers(&b, &m1.digest).await.expect("refs"), vec![]);
    assert_eq!(
        store.delete_manifest(&a, &art.digest).await.expect("del"),
        Deleted::Yes
    );
    assert_eq!(store.referrers(&a, &m1.digest).await.expect("refs"), vec![]);

    // Deleting a tag keeps the manifest; deleting the manifest drops every tag on it.
    assert_eq!(
        store.delete_tag(&a, &tag("v2")).await.expect("del"),
        Deleted::Yes
    );
    assert_eq!(
        store.delete_tag(&a, &tag("v2")).await.expect("del"),
        Deleted::NotFound
    );
    assert!(store.manifest(&a, &m1.digest).await.expect("get").is_some());
    assert_eq!(
        store.delete_manifest(&a, &m1.digest).await.expect("del"),
        Deleted::Yes
    );
    assert_eq!(
        store.delete_manifest(&a, &m1.digest).await.expect("del"),
        Deleted::NotFound
    );
    let left: Vec<String> = store
        .list_tags(&a, &Page { last: None, n: 100 })
        .await
        .expect("list")
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(left, ["multi", "v3"], "v3 was moved to the index");

    assert!(store.unlink_blob(&a, &blob).await.expect("unlink"));
    assert!(!store.unlink_blob(&a, &blob).await.expect("unlink"));
    assert_eq!(store.blob_link(&a, &blob).await.expect("link"), None);

    // Upload sessions: create once, update only from the version read.
    let mut s = UploadSession {
        id: "abcdef0123456789".into(),
        repo: a.clone(),
        offset: 0,
        hash_state: "0:00".into(),
        staging: serde_json::json!({"parts": []}),
        created: 1,
        version: 0,
    };
    store.create_upload(&s).await.expect("create");
    assert!(matches!(
        store.create_upload(&s).await,
        Err(StorageError::Conflict)
    ));
    assert_eq!(store.upload(&s.id).await.expect("get"), Some(s.clone()));
    s.offset = 10;
    s.version = 1;
    store
        .update_upload(&s)
        .await
        .expect("update from version 0");
    assert!(
        matches!(store.update_upload(&s).await, Err(StorageError::Conflict)),
        "stale update refused"
    );
    assert_eq!(
        store.upload(&s.id).await.expect("get").map(|s| s.offset),
        Some(10)
    );
    store.delete_upload(&s.id).await.expect("delete");

    // The identity policy document: absent, stored, replaced.
    assert_eq!(store.policy_document().await.expect("policy"), None);
    store
        .put_policy_document("public = [\"a/*\"]\n")
        .await
        .expect("put policy");
    store
        .put_policy_document("public = [\"b/*\"]\n")
        .await
        .expect("replace policy");
    assert_eq!(
        store.policy_document().await.expect("policy").as_deref(),
        Some("public = [\"b/*\"]\n")
    );
    assert_eq!(store.upload(&s.id).await.expect("get"), None);

    gc::meta_store(store).await;
    gc::immutable_tags(store).await;
    immutable::release_pins(store).await;
    audit::audit_trail(store).await;
    sha512::meta_store(store).await;
}

#[cfg(test)]
mod tests {
    use super::super::fs::FsBlobStore;
    use super::super::redb::RedbMetaStore;

    #[tokio::test]
    async fn fs_blob_store_meets_the_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).await.expect("open");
        super::blob_store(&store).await;
    }

    #[tokio::test]
    async fn redb_meta_store_meets_the_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbMetaStore::open(&dir.path().join("meta.redb")).expect("open");
        super::meta_store(&store).await;
    }
}
