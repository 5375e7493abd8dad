//! Tests of the embedded store beyond the contract suite.

use super::*;
use crate::oci::Algorithm;

#[tokio::test]
async fn tags_stored_before_push_times_stay_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbMetaStore::open(&dir.path().join("meta.redb")).expect("open");
    let repo = RepoName::parse("old/one").expect("name");
    let tag = Tag::parse("v1").expect("tag");
    let digest = Algorithm::Sha256.digest(b"manifest");
    // The value format before push times: the digest alone, as a JSON string.
    let legacy = json(&digest).expect("json");
    let (r, t) = (repo.clone(), tag.clone());
    store
        .write(move |table| put_raw(table, Key::Tag(&r, &t), &legacy))
        .await
        .expect("write legacy tag");

    assert_eq!(
        store.tag(&repo, &tag).await.expect("tag"),
        Some(digest.clone())
    );
    let records = store
        .list_tag_records(&repo, &Page { last: None, n: 10 })
        .await
        .expect("records");
    assert_eq!(
        records,
        [TagRecord {
            tag,
            digest,
            pushed_ms: None
        }]
    );
}
