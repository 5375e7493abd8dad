//! Garbage collection on the embedded stores (redb + files): exactly the unreferenced,
//! old-enough things go, and a blob linked while a run goes on is kept.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream;

use super::*;
use crate::oci::{Algorithm, Tag, media};
use crate::storage::fs::FsBlobStore;
use crate::storage::redb::RedbMetaStore;
use crate::storage::{BlobLink, ByteStream, ManifestRecord, ManifestWrite, UploadSession};

struct Stores {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    blobs: Arc<FsBlobStore>,
    meta: Arc<RedbMetaStore>,
}

async fn stores() -> Stores {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let blobs = Arc::new(FsBlobStore::open(&root).await.expect("fs"));
    let meta = Arc::new(RedbMetaStore::open(&root.join("meta.redb")).expect("redb"));
    Stores {
        _dir: dir,
        root,
        blobs,
        meta,
    }
}

fn body(bytes: &[u8]) -> ByteStream {
    Box::pin(stream::iter([Ok(Bytes::copy_from_slice(bytes))]))
}

/// Stores `bytes` as a blob the way an upload does; returns its digest.
async fn try_store_blob(blobs: &dyn BlobStore, bytes: &[u8]) -> crate::storage::Result<Digest> {
    let digest = Algorithm::Sha256.digest(bytes);
    let id = format!("{:032x}", rand::random::<u128>());
    let state = blobs.start_upload(&id).await?;
    let (state, _) = blobs.append_upload(&id, state, 0, body(bytes)).await?;
    blobs.finish_upload(&id, state, &digest).await?;
    Ok(digest)
}

async fn store_blob(blobs: &dyn BlobStore, bytes: &[u8]) -> Digest {
    try_store_blob(blobs, bytes).await.expect("store blob")
}

fn age(path: &std::path::Path, by: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open for mtime");
    file.set_modified(SystemTime::now() - by)
        .expect("set mtime");
}

fn blob_path(root: &std::path::Path, d: &Digest) -> std::path::PathBuf {
    root.join("blobs/sha256").join(d.hex())
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("name")
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn gc_removes_exactly_the_unreferenced_old_enough_things() {
    let s = stores().await;
    let (blobs, meta) = (s.blobs.as_ref(), s.meta.as_ref());
    let app = repo("gc/app");

    // Live: linked; referenced by a manifest whose link was deleted since.
    let linked = store_blob(blobs, b"linked layer").await;
    meta.link_blob(&app, &linked, BlobLink { size: 12 })
        .await
        .expect("link");
    let config = store_blob(blobs, b"{\"config\":true}").await;
    meta.link_blob(&app, &config, BlobLink { size: 15 })
        .await
        .expect("link");
    let manifest_bytes = Bytes::from(
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 15},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": linked.to_string(), "size": 12}],
        })
        .to_string(),
    );
    meta.put_manifest(ManifestWrite {
        repo: app.clone(),
        manifest: ManifestRecord {
            digest: Algorithm::Sha256.digest(&manifest_bytes),
            media_type: media::OCI_MANIFEST.into(),
            bytes: manifest_bytes,
        },
        tag: Some(Tag::parse("v1").expect("tag")),
        blobs: vec![config.clone(), linked.clone()],
        manifests: Vec::new(),
        referrer: None,
        pushed_ms: now_ms(),
    })
    .await
    .expect("manifest");
    assert!(meta.unlink_blob(&app, &config).await.expect("unlink"));

    // Garbage: an old orphan; a fresh orphan; an old blob unlinked just now.
    let old_orphan = store_blob(blobs, b"old orphan").await;
    age(&blob_path(&s.root, &old_orphan), 2 * HOUR);
    let fresh_orphan = store_blob(blobs, b"fresh orphan").await;
    let unlinked = store_blob(blobs, b"unlinked just now").await;
    age(&blob_path(&s.root, &unlinked), 2 * HOUR);
    meta.link_blob(&app, &unlinked, BlobLink { size: 17 })
        .await
        .expect("link");
    meta.unlink_blob(&app, &unlinked).await.expect("unlink");

    // Uploads: a live session; staging without a session, one old, one fresh.
    let session = UploadSession {
        id: "aaaa0000aaaa0000aaaa0000aaaa0000".into(),
        repo: app.clone(),
        offset: 0,
        hash_state: String::new(),
        staging: blobs
            .start_upload("aaaa0000aaaa0000aaaa0000aaaa0000")
            .await
            .expect("start"),
        created: now_ms() / 1000,
        version: 0,
    };
    meta.create_upload(&session).await.expect("session");
    blobs.start_upload("bbbb").await.expect("orphan staging");
    age(&s.root.join("uploads/bbbb"), 2 * HOUR);
    blobs.start_upload("cccc").await.expect("fresh staging");

    // With an hour of grace: only the old orphan blob and the old staging may go.
    let hour = GcOptions {
        grace: HOUR,
        dry_run: true,
        ..GcOptions::default()
    };
    let dry = run_with_progress(blobs, meta, &hour, &Quiet)
        .await
        .expect("dry run");
    assert_eq!(
        dry.removed,
        [
            GcItem::Staged {
                id: "bbbb".into(),
                size: 0
            },
            GcItem::Blob {
                digest: old_orphan.clone(),
                size: 10
            },
        ]
    );
    assert_eq!(dry.bytes(), 10);
    assert!(
        blob_path(&s.root, &old_orphan).exists(),
        "a dry run removes nothing"
    );
    assert!(s.root.join("uploads/bbbb").exists());

    let real = GcOptions {
        dry_run: false,
        ..hour
    };
    let done = run_with_progress(blobs, meta, &real, &Quiet)
        .await
        .expect("run");
    assert_eq!(
        done.removed, dry.removed,
        "the run removes what the dry run showed"
    );
    assert!(!blob_path(&s.root, &old_orphan).exists());
    assert!(!s.root.join("uploads/bbbb").exists());
    assert_eq!(
        done.kept_recent, 2,
        "the fresh orphan and the recently unlinked blob"
    );
    for d in [&linked, &config, &fresh_orphan, &unlinked] {
        assert!(blobs.stat(d).await.expect("stat").is_some(), "{d} kept");
    }

    // Without grace, everything unreferenced goes; what is referenced stays.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let zero = GcOptions {
        grace: Duration::ZERO,
        dry_run: false,
        ..GcOptions::default()
    };
    let done = run_with_progress(blobs, meta, &zero, &Quiet)
        .await
        .expect("run");
    let mut gone: Vec<String> = done
        .removed
        .iter()
        .map(|i| match i {
            GcItem::Blob { digest, .. } => digest.to_string(),
            GcItem::Session { id, .. } | GcItem::Staged { id, .. } => id.clone(),
            GcItem::Tag { repo, tag, .. } => format!("{repo}:{tag}"),
        })
        .collect();
    gone.sort();
    let mut want = vec![
        fresh_orphan.to_string(),
        unlinked.to_string(),
        session.id.clone(),
        "cccc".to_owned(),
    ];
    want.sort();
    assert_eq!(gone, want);
    assert_eq!(meta.upload(&session.id).await.expect("upload"), None);
    assert!(!s.root.join("uploads").join(&session.id).exists());
    for d in [&linked, &config] {
        assert!(
            blobs.stat(d).await.expect("stat").is_some(),
            "{d} is referenced"
        );
    }
    let again = run_with_progress(blobs, meta, &zero, &Quiet)
        .await
        .expect("run");
    assert!(
        again.removed.is_empty(),
        "a second run finds nothing: {again:?}"
    );
}

/// Links a digest when the sweep starts: a push landing after the mark phase read every
/// repository, before the collector reaches the blob.
struct PushDuringSweep {
    meta: Arc<RedbMetaStore>,
    repo: RepoName,
    digest: Digest,
}

impl Progress for PushDuringSweep {
    fn start(&self, phase: Phase, _total: Option<u64>) {
        if phase == Phase::Sweep {
            let link = self
                .meta
                .link_blob(&self.repo, &self.digest, BlobLink { size: 1 });
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(link))
                .expect("link during the sweep");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_linked_while_gc_runs_is_kept() {
    let s = stores().await;
    let orphan = store_blob(s.blobs.as_ref(), b"pushed again during gc").await;
    age(&blob_path(&s.root, &orphan), 2 * HOUR);
    let push = PushDuringSweep {
        meta: s.meta.clone(),
        repo: repo("gc/racer"),
        digest: orphan.clone(),
    };
    let options = GcOptions {
        grace: HOUR,
        dry_run: false,
        ..GcOptions::default()
    };
    let report = run_with_progress(s.blobs.as_ref(), s.meta.as_ref(), &options, &push)
        .await
        .expect("run");
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.kept_recent, 1, "its link is newer than the cutoff");
    assert!(s.blobs.stat(&orphan).await.expect("stat").is_some());
}

#[tokio::test]
async fn a_link_after_the_hold_is_refused_so_no_link_dangles() {
    let s = stores().await;
    let d = store_blob(s.blobs.as_ref(), b"held").await;
    let r = repo("gc/late");
    let epoch = s.meta.begin_gc().await.expect("epoch");
    assert!(
        s.meta
            .hold_blob(&d, now_ms(), epoch, now_ms())
            .await
            .expect("hold")
    );
    let err = s.meta.link_blob(&r, &d, BlobLink { size: 4 }).await;
    assert!(matches!(err, Err(StorageError::Conflict)), "{err:?}");
    assert_eq!(s.meta.blob_link(&r, &d).await.expect("link"), None);
}

/// Pushers re-upload and link a shared set of blobs (and unlink them again) while garbage
/// collection runs without grace, over and over: at the end every link has its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_and_gc_never_leave_a_link_without_bytes() {
    let s = stores().await;
    let blobs: Arc<dyn BlobStore> = s.blobs.clone();
    let meta: Arc<dyn MetaStore> = s.meta.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pushers = Vec::new();
    for p in 0..4u8 {
        let (blobs, meta, stop) = (blobs.clone(), meta.clone(), stop.clone());
        pushers.push(tokio::spawn(async move {
            let r = repo(&format!("gc/pusher{p}"));
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Shared contents are re-pushed and unlinked again and again; the others are
                // pushed once and unlinked, garbage for the next run.
                let content = if i.is_multiple_of(2) {
                    format!("shared blob {}", i % 6)
                } else {
                    format!("pusher {p} blob {i}")
                };
                i += 1;
                // Without grace, the collector may take the staging of an upload in progress:
                // that upload fails, as a client's would, and is retried.
                let Ok(d) = try_store_blob(blobs.as_ref(), content.as_bytes()).await else {
                    continue;
                };
                match meta
                    .link_blob(
                        &r,
                        &d,
                        BlobLink {
                            size: content.len() as u64,
                        },
                    )
                    .await
                {
                    Ok(()) | Err(StorageError::Conflict) => {}
                    Err(e) => panic!("link: {e}"),
                }
                if !i.is_multiple_of(3) {
                    meta.unlink_blob(&r, &d).await.expect("unlink");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    let zero = GcOptions {
        grace: Duration::ZERO,
        dry_run: false,
        ..GcOptions::default()
    };
    let mut removed = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        removed += run_with_progress(blobs.as_ref(), meta.as_ref(), &zero, &Quiet)
            .await
            .expect("gc")
            .blobs();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pushers {
        p.await.expect("pusher");
    }
    for p in 0..4u8 {
        let r = repo(&format!("gc/pusher{p}"));
        let links = meta
            .list_blob_links(&r, &Page { last: None, n: 100 })
            .await
            .expect("links");
        for d in links {
            let activity = meta.blob_activity(&d).await.expect("activity");
            assert!(
                blobs.stat(&d).await.expect("stat").is_some(),
                "{r} links {d}, whose bytes are gone ({activity:?}, now {})",
                now_ms()
            );
        }
    }
    assert!(
        removed > 0,
        "garbage collection did remove unlinked blobs meanwhile"
    );
}

#[tokio::test]
async fn retention_keeps_the_newest_matching_tags_and_dry_run_shows_the_rest() {
    let s = stores().await;
    let r = repo("ci/app");
    for (i, tag) in ["pr-1", "pr-2", "pr-3", "main"].iter().enumerate() {
        let bytes = Bytes::from(format!("{{\"schemaVersion\":2,\"n\":{i}}}"));
        s.meta
            .put_manifest(ManifestWrite {
                repo: r.clone(),
                manifest: ManifestRecord {
                    digest: Algorithm::Sha256.digest(&bytes),
                    media_type: media::OCI_MANIFEST.into(),
                    bytes,
                },
                tag: Some(Tag::parse(tag).expect("tag")),
                blobs: Vec::new(),
                manifests: Vec::new(),
                referrer: None,
                pushed_ms: 1_000 + i as u64,
            })
            .await
            .expect("push");
    }
    let policy = crate::auth::Policy::parse(
        "[[retention]]\nrepositories = [\"ci/*\"]\ntags = [\"pr-*\"]\nkeep = 1\n",
    )
    .expect("policy");
    let mut options = GcOptions {
        grace: HOUR,
        dry_run: true,
        policy: Some(Arc::new(policy)),
    };
    let tags_now = || async {
        s.meta
            .list_tags(&r, &Page { last: None, n: 10 })
            .await
            .expect("tags")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    let dry = run_with_progress(s.blobs.as_ref(), s.meta.as_ref(), &options, &Quiet)
        .await
        .expect("dry run");
    let pruned: Vec<String> = dry
        .removed
        .iter()
        .filter_map(|i| match i {
            GcItem::Tag { tag, .. } => Some(tag.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pruned, ["pr-2", "pr-1"]);
    assert_eq!(tags_now().await.len(), 4, "a dry run deletes no tag");
    options.dry_run = false;
    run_with_progress(s.blobs.as_ref(), s.meta.as_ref(), &options, &Quiet)
        .await
        .expect("run");
    assert_eq!(tags_now().await, ["main", "pr-3"]);
}
