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

/// The commands that open the stores tell the operator a `wharf serve` holds the database: the
/// store says so in a variant of its own (not in text to match), with redb's error as the source.
#[test]
fn a_second_open_of_the_database_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    let _serving = RedbMetaStore::open(&path).expect("first open");
    let err = RedbMetaStore::open(&path).expect_err("second open");
    let text = err.to_string();
    let StorageError::Locked {
        path: locked,
        source,
    } = err
    else {
        panic!("not Locked: {text}");
    };
    assert_eq!(locked, path);
    assert!(matches!(
        source.downcast_ref::<redb::DatabaseError>(),
        Some(redb::DatabaseError::DatabaseAlreadyOpen)
    ));
    assert!(text.contains("Database already open"), "{text}");
}
