//! The audit-trail contract: events come back oldest first, filtered by time and repository.

use crate::oci::{Algorithm, RepoName};
use crate::storage::MetaStore;
use crate::storage::audit::{AuditAction, AuditEvent, AuditQuery};

/// Recorded events are read back in order, by time and by repository.
pub async fn audit_trail(store: &dyn MetaStore) {
    let a = RepoName::parse("contract/audit-a").expect("name");
    let b = RepoName::parse("contract/audit-b").expect("name");
    let base = crate::storage::now_ms() - 2 * crate::storage::key::AUDIT_DAY_MS;
    let event = |ms: u64, repo: &RepoName, action| AuditEvent {
        time_ms: base + ms,
        action,
        repo: repo.clone(),
        digest: Some(Algorithm::Sha256.digest(repo.as_str().as_bytes())),
        tag: Some("v1".into()),
        previous: None,
        issuer: Some("https://issuer.test".into()),
        subject: Some("repo:acme/app:ref:refs/heads/main".into()),
    };
    // Two days apart, so a cloud backend spreads them over partitions.
    let events = [
        event(0, &a, AuditAction::Push),
        event(1, &b, AuditAction::TagMove),
        event(
            crate::storage::key::AUDIT_DAY_MS + 5,
            &a,
            AuditAction::TagDelete,
        ),
    ];
    for e in &events {
        store.record_audit(e).await.expect("record");
    }
    let all = store
        .list_audit(&AuditQuery {
            since_ms: base,
            repo: None,
            n: 100,
        })
        .await
        .expect("list");
    assert_eq!(all, events, "every event, oldest first");
    let of_a = store
        .list_audit(&AuditQuery {
            since_ms: base + 1,
            repo: Some(a.clone()),
            n: 100,
        })
        .await
        .expect("list");
    assert_eq!(of_a, [events[2].clone()], "by time and repository");

    // A manifest write records its event with it.
    let bytes = bytes::Bytes::from_static(b"{\"schemaVersion\":2,\"audited\":true}");
    let m = crate::storage::ManifestRecord {
        digest: Algorithm::Sha256.digest(&bytes),
        media_type: crate::oci::media::OCI_MANIFEST.into(),
        bytes,
    };
    let pushed = AuditEvent {
        time_ms: crate::storage::now_ms(),
        digest: Some(m.digest.clone()),
        ..event(0, &b, AuditAction::Push)
    };
    store
        .put_manifest_guarded(
            crate::storage::ManifestWrite {
                repo: b.clone(),
                manifest: m,
                tag: Some(crate::oci::Tag::parse("v1").expect("tag")),
                blobs: Vec::new(),
                manifests: Vec::new(),
                referrer: None,
                pushed_ms: pushed.time_ms,
            },
            crate::storage::TagGuard::Mutable,
            Some(&pushed),
        )
        .await
        .expect("audited write");
    let recent = store
        .list_audit(&AuditQuery {
            since_ms: pushed.time_ms,
            repo: Some(b.clone()),
            n: 100,
        })
        .await
        .expect("list");
    assert_eq!(recent, [pushed]);
}
