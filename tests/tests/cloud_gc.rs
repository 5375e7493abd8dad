//! Garbage collection on the cloud backends: S3 blobs on s3s-fs (and on moto, which lists
//! multipart uploads) with DynamoDB metadata on moto. Exactly the unreferenced, old-enough
//! things go — spilled manifest bytes stay — and a blob linked while a run goes on is kept.
//! Through the contending DynamoDB stand-in (`fixtures/dynamodb_conflicts.py`): the metadata
//! contract holds while writes are cancelled for contention, and no item is touched by every
//! push (the sharded epoch).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures_util::stream;
use wharf::gc::{GcItem, GcOptions, Phase, Progress, Quiet, run_with_progress};
use wharf::oci::{Algorithm, Digest, RepoName, Tag, media};
use wharf::storage::dynamodb::{DynamoConfig, DynamoMetaStore};
use wharf::storage::s3::{S3BlobStore, S3Config, parts::MIN_PART_SIZE};
use wharf::storage::{
    BlobLink, BlobStore, ByteStream, ManifestRecord, ManifestWrite, MetaStore, UploadSession,
    now_ms,
};
use wharf_e2e::cloud::{ConflictProxy, ConflictShare, Moto, S3sFs, endpoint};

/// S3 blobs at `s3_url`, DynamoDB metadata on `moto` spilling into the same blob store.
async fn stores(s3_url: String, moto: &Moto) -> Result<(Arc<S3BlobStore>, DynamoMetaStore)> {
    stores_at(s3_url, moto.endpoint()).await
}

/// S3 blobs at `s3_url`, DynamoDB metadata at `dynamodb_url` (moto, or a proxy in front of it).
async fn stores_at(
    s3_url: String,
    dynamodb_url: String,
) -> Result<(Arc<S3BlobStore>, DynamoMetaStore)> {
    let mut config = S3Config::new("wharf-gc", endpoint(s3_url));
    config.part_size = MIN_PART_SIZE;
    let blobs = Arc::new(S3BlobStore::connect(config).await);
    wharf::storage::s3::admin::create_bucket(&blobs).await?;
    let meta = DynamoMetaStore::connect(
        DynamoConfig {
            table: "wharf-gc".to_owned(),
            endpoint: endpoint(dynamodb_url),
        },
        blobs.clone(),
    )
    .await;
    wharf::storage::dynamodb::admin::create_table(&meta).await?;
    Ok((blobs, meta))
}

fn body(bytes: Vec<u8>) -> ByteStream {
    Box::pin(stream::iter([Ok(Bytes::from(bytes))]))
}

fn id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn store_blob(blobs: &dyn BlobStore, bytes: &[u8]) -> Result<Digest> {
    let digest = Algorithm::Sha256.digest(bytes);
    let id = id();
    let state = blobs.start_upload(&id).await?;
    let (state, _) = blobs
        .append_upload(&id, state, 0, body(bytes.to_vec()))
        .await?;
    blobs.finish_upload(&id, state, &digest).await?;
    Ok(digest)
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("name")
}

const HOUR: Duration = Duration::from_secs(3600);

fn opts(grace: Duration, dry_run: bool) -> GcOptions {
    GcOptions {
        grace,
        dry_run,
        ..GcOptions::default()
    }
}

fn ids(items: &[GcItem]) -> Vec<String> {
    let mut out: Vec<String> = items
        .iter()
        .map(|i| match i {
            GcItem::Blob { digest, .. } => digest.to_string(),
            GcItem::Session { id, .. } | GcItem::Staged { id, .. } => id.clone(),
            GcItem::Tag { repo, tag, .. } => format!("{repo}:{tag}"),
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn gc_on_s3_and_dynamodb_removes_exactly_the_unreferenced_things() -> Result<()> {
    let (s3, moto) = (S3sFs::start()?, Moto::start()?);
    let (blobs, meta) = stores(s3.endpoint(), &moto).await?;
    let app = repo("gc/cloud");

    // Live: a linked layer, and a manifest over the item limit whose bytes spilled into the
    // blob store (no link names them).
    let layer = store_blob(blobs.as_ref(), b"cloud layer").await?;
    meta.link_blob(&app, &layer, BlobLink { size: 11 }).await?;
    let mut big = format!(
        "{{\"schemaVersion\":2,\"layers\":[{{\"digest\":\"{layer}\",\"size\":11}}],\"pad\":\""
    )
    .into_bytes();
    big.extend(std::iter::repeat_n(b'x', 400 * 1024));
    big.extend_from_slice(b"\"}");
    let big = ManifestRecord {
        digest: Algorithm::Sha256.digest(&big),
        media_type: media::OCI_MANIFEST.into(),
        bytes: Bytes::from(big),
    };
    meta.put_manifest(ManifestWrite {
        repo: app.clone(),
        manifest: big.clone(),
        tag: Some(Tag::parse("big")?),
        blobs: vec![layer.clone()],
        manifests: Vec::new(),
        referrer: None,
        pushed_ms: now_ms(),
    })
    .await?;
    assert!(
        blobs.stat(&big.digest).await?.is_some(),
        "the manifest spilled"
    );
    // The layer's link goes; the manifest still needs it.
    meta.unlink_blob(&app, &layer).await?;

    // Garbage: an orphan blob, a blob unlinked since, a session with staged bytes, staging
    // without a session.
    let orphan = store_blob(blobs.as_ref(), b"cloud orphan").await?;
    let unlinked = store_blob(blobs.as_ref(), b"cloud unlinked").await?;
    meta.link_blob(&app, &unlinked, BlobLink { size: 14 })
        .await?;
    meta.unlink_blob(&app, &unlinked).await?;
    let session_id = id();
    let state = blobs.start_upload(&session_id).await?;
    let (state, _) = blobs
        .append_upload(&session_id, state, 0, body(b"partial".to_vec()))
        .await?;
    meta.create_upload(&UploadSession {
        id: session_id.clone(),
        repo: app.clone(),
        offset: 7,
        hash_state: String::new(),
        staging: state,
        created: now_ms() / 1000,
        version: 0,
    })
    .await?;
    let stray = id();
    let state = blobs.start_upload(&stray).await?;
    blobs
        .append_upload(&stray, state, 0, body(b"stray".to_vec()))
        .await?;

    // Everything is younger than an hour: nothing goes.
    let young = run_with_progress(blobs.as_ref(), &meta, &opts(HOUR, false), &Quiet).await?;
    assert!(young.removed.is_empty(), "{young:?}");

    // S3 keeps times in seconds: let every object be older than the run's cutoff.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let dry = run_with_progress(blobs.as_ref(), &meta, &opts(Duration::ZERO, true), &Quiet).await?;
    let mut want = vec![
        orphan.to_string(),
        unlinked.to_string(),
        session_id.clone(),
        stray.clone(),
    ];
    want.sort();
    assert_eq!(ids(&dry.removed), want);
    assert!(
        blobs.stat(&orphan).await?.is_some(),
        "a dry run removes nothing"
    );

    let done =
        run_with_progress(blobs.as_ref(), &meta, &opts(Duration::ZERO, false), &Quiet).await?;
    assert_eq!(ids(&done.removed), want);
    assert_eq!(blobs.stat(&orphan).await?, None);
    assert_eq!(blobs.stat(&unlinked).await?, None);
    assert_eq!(meta.upload(&session_id).await?, None);
    let staged = blobs.list_staged().await?;
    assert!(staged.is_empty(), "no staging is left: {staged:?}");
    assert!(
        blobs.stat(&layer).await?.is_some(),
        "referenced by a manifest"
    );
    assert_eq!(
        meta.manifest(&app, &big.digest).await?,
        Some(big),
        "spilled manifest bytes stay"
    );
    Ok(())
}

#[tokio::test]
async fn gc_aborts_abandoned_multipart_uploads_on_moto() -> Result<()> {
    let moto = Moto::start()?;
    let (blobs, meta) = stores(moto.endpoint(), &moto).await?;
    // More than one part: a multipart upload is open, plus a tail object; no session.
    let abandoned = id();
    let state = blobs.start_upload(&abandoned).await?;
    let size = usize::try_from(MIN_PART_SIZE)? + 10;
    blobs
        .append_upload(&abandoned, state, 0, body(vec![7u8; size]))
        .await?;
    let staged = blobs.list_staged().await?;
    assert_eq!(staged.len(), 1, "{staged:?}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let done =
        run_with_progress(blobs.as_ref(), &meta, &opts(Duration::ZERO, false), &Quiet).await?;
    assert_eq!(ids(&done.removed), [abandoned]);
    assert!(
        blobs.list_staged().await?.is_empty(),
        "the multipart upload and its tail are gone"
    );
    Ok(())
}

/// Links a digest when the sweep starts: a push landing after the mark phase.
struct PushDuringSweep<'a> {
    meta: &'a DynamoMetaStore,
    repo: RepoName,
    digest: Digest,
}

impl Progress for PushDuringSweep<'_> {
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
async fn a_blob_pushed_while_gc_runs_on_dynamodb_is_kept() -> Result<()> {
    let (s3, moto) = (S3sFs::start()?, Moto::start()?);
    let (blobs, meta) = stores(s3.endpoint(), &moto).await?;
    let d = store_blob(blobs.as_ref(), b"pushed during gc").await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let push = PushDuringSweep {
        meta: &meta,
        repo: repo("gc/racer"),
        digest: d.clone(),
    };
    let report =
        run_with_progress(blobs.as_ref(), &meta, &opts(Duration::ZERO, false), &push).await?;
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.kept_recent + report.kept_relinked, 1, "{report:?}");
    assert!(blobs.stat(&d).await?.is_some());

    // A link arriving after the hold is refused instead of pointing at deleted bytes.
    let late = store_blob(blobs.as_ref(), b"held then pushed").await?;
    let epoch = meta.begin_gc().await?;
    assert!(meta.hold_blob(&late, now_ms(), epoch, now_ms()).await?);
    let r = repo("gc/late");
    assert!(
        meta.link_blob(&r, &late, BlobLink { size: 1 })
            .await
            .is_err()
    );
    assert_eq!(meta.blob_link(&r, &late).await?, None);
    Ok(())
}

/// Pushers re-upload, link and unlink shared blobs while garbage collection runs without grace,
/// over and over, on S3 + DynamoDB: at the end every link has its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_and_gc_on_dynamodb_never_leave_a_link_without_bytes() -> Result<()> {
    let (s3, moto) = (S3sFs::start()?, Moto::start()?);
    let (blobs, meta) = stores(s3.endpoint(), &moto).await?;
    let meta = Arc::new(meta);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pushers = Vec::new();
    for p in 0..3u32 {
        let (blobs, meta, stop) = (blobs.clone(), meta.clone(), stop.clone());
        pushers.push(tokio::spawn(async move {
            let r = repo(&format!("gc/pusher{p}"));
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let content = if i.is_multiple_of(2) {
                    format!("shared blob {}", i % 4)
                } else {
                    format!("pusher {p} blob {i}")
                };
                i += 1;
                // Staging of an upload in progress may be collected without grace: retry.
                let Ok(d) = store_blob(blobs.as_ref(), content.as_bytes()).await else {
                    continue;
                };
                // A refused link (a hold, a conflict) is retried by a client: nothing to check.
                if meta
                    .link_blob(
                        &r,
                        &d,
                        BlobLink {
                            size: content.len() as u64,
                        },
                    )
                    .await
                    .is_ok()
                    && !i.is_multiple_of(3)
                {
                    meta.unlink_blob(&r, &d).await.expect("unlink");
                }
            }
        }));
    }
    let mut removed = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        removed += run_with_progress(
            blobs.as_ref(),
            meta.as_ref(),
            &opts(Duration::ZERO, false),
            &Quiet,
        )
        .await?
        .blobs();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pushers {
        p.await?;
    }
    for p in 0..3u32 {
        let r = repo(&format!("gc/pusher{p}"));
        for d in meta
            .list_blob_links(
                &r,
                &wharf::storage::Page {
                    last: None,
                    n: 1000,
                },
            )
            .await?
        {
            assert!(
                blobs.stat(&d).await?.is_some(),
                "{r} links {d}, whose bytes are gone"
            );
        }
    }
    assert!(
        removed > 0,
        "garbage collection removed unlinked blobs meanwhile"
    );
    Ok(())
}

/// The whole metadata contract (links, manifests, tags, the link/hold/epoch protocol, immutable
/// tags, the audit trail) holds on DynamoDB while a quarter of its transactions are cancelled with
/// `TransactionConflict` and a tenth of its single-item writes are turned down with
/// `TransactionConflictException`: every write retries contention, and a failed condition keeps
/// its meaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_contract_holds_while_writes_are_cancelled_for_contention() -> Result<()> {
    let moto = Moto::start()?;
    let share = ConflictShare {
        transactions: 0.25,
        writes: 0.1,
    };
    let proxy = ConflictProxy::start(&moto.endpoint(), share)?;
    let (_blobs, meta) = stores_at(moto.endpoint(), proxy.endpoint()).await?;
    wharf::storage::contract::meta_store(&meta).await;
    let counts = proxy.counts()?;
    eprintln!("{counts:?}");
    // About 30 transactions and 250 single writes are drawn: expected ≈8 and ≈25 turned down.
    assert!(
        counts.transact_cancelled >= 1 && counts.write_rejected >= 5,
        "too few cancellations to prove anything: {counts:?}"
    );
    Ok(())
}

/// Links of different blobs and manifest pushes, into one repository and into others, share no
/// item: each link checks only its digest's shard of the garbage-collection epoch, and the
/// repository index entry is written by a repository's first push only. (Before, every link
/// checked the one `GC`/`EPOCH` item, and every write put the repository's index entry.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_item_is_touched_by_every_push() -> Result<()> {
    const PUSHES: usize = 48;
    let moto = Moto::start()?;
    let share = ConflictShare {
        transactions: 0.0,
        writes: 0.0,
    };
    let proxy = ConflictProxy::start(&moto.endpoint(), share)?;
    let (_blobs, meta) = stores_at(moto.endpoint(), proxy.endpoint()).await?;
    meta.begin_gc().await?;
    for i in 0..PUSHES {
        let r = repo(if i % 3 == 0 { "hot/one" } else { "hot/two" });
        let layers: Vec<Digest> = (0..2)
            .map(|l| Algorithm::Sha256.digest(format!("push {i} layer {l}").as_bytes()))
            .collect();
        for d in &layers {
            meta.link_blob(&r, d, BlobLink { size: 1 }).await?;
        }
        let refs: Vec<_> = layers
            .iter()
            .map(|d| serde_json::json!({"digest": d.to_string()}))
            .collect();
        let bytes = Bytes::from(serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "layers": refs,
        }))?);
        let manifest = ManifestRecord {
            digest: Algorithm::Sha256.digest(&bytes),
            media_type: media::OCI_MANIFEST.into(),
            bytes,
        };
        meta.put_manifest(ManifestWrite {
            repo: r,
            manifest,
            tag: Some(Tag::parse(&format!("v{i}"))?),
            blobs: layers,
            manifests: Vec::new(),
            referrer: None,
            pushed_ms: now_ms(),
        })
        .await?;
    }
    let counts = proxy.counts()?;
    eprintln!("{counts:?}");
    let (key, touched) = counts.hottest.clone().expect("transactions were seen");
    // 3 transactions per push; a shard of 64 draws about 2 of the 96 links.
    assert!(
        touched * 8 <= counts.transact_seen,
        "{key} was touched by {touched} of {} transactions",
        counts.transact_seen
    );
    Ok(())
}

/// Stores `bytes` through a chunked upload of several parts (a located blob on S3: its bytes
/// at `objects/<id>/data`, a pointer at the blob's key); returns its digest and upload id.
async fn store_located(blobs: &dyn BlobStore, seed: u8) -> Result<(Digest, String)> {
    let part = MIN_PART_SIZE as usize;
    let bytes: Vec<u8> = (0..2 * part + 9)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u64::from(seed)) as u8
        })
        .collect();
    let digest = Algorithm::Sha256.digest(&bytes);
    let id = id();
    let state = blobs.start_upload(&id).await?;
    let (state, _) = blobs.append_upload(&id, state, 0, body(bytes)).await?;
    blobs.finish_upload(&id, state, &digest).await?;
    Ok((digest, id))
}

/// The upload ids with a located object left in the bucket.
fn located_ids(s3: &S3sFs, bucket: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(s3.root().join(bucket).join("objects"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.path().join("data").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Garbage collection takes a located blob's bytes with the blob, sweeps located objects no
/// pointer names (what a crash between deleting a pointer and its bytes leaves) under the
/// grace period it keeps for staging, and never takes the bytes of a blob still in use, though
/// they live outside the blob keys.
#[tokio::test]
async fn gc_reclaims_located_blobs_and_orphans_and_keeps_live_ones() -> Result<()> {
    let (s3, moto) = (S3sFs::start()?, Moto::start()?);
    let (blobs, meta) = stores(s3.endpoint(), &moto).await?;
    let app = repo("gc/located");
    let (live, live_id) = store_located(blobs.as_ref(), 1).await?;
    let size = blobs.stat(&live).await?.expect("stored");
    meta.link_blob(&app, &live, BlobLink { size }).await?;
    let (unlinked, unlinked_id) = store_located(blobs.as_ref(), 2).await?;
    let (lost, orphan_id) = store_located(blobs.as_ref(), 3).await?;
    // A delete that crashed after removing the pointer: the bytes stay, named by nobody.
    let pointer = s3
        .root()
        .join("wharf-gc")
        .join("blobs/sha256")
        .join(lost.hex());
    std::fs::remove_file(&pointer)?;
    assert_eq!(blobs.stat(&lost).await?, None);
    let mut all = vec![live_id.clone(), unlinked_id.clone(), orphan_id.clone()];
    all.sort();
    assert_eq!(located_ids(&s3, "wharf-gc"), all);

    let young = run_with_progress(blobs.as_ref(), &meta, &opts(HOUR, false), &Quiet).await?;
    assert!(
        young.removed.is_empty(),
        "all younger than the grace: {young:?}"
    );
    assert_eq!(located_ids(&s3, "wharf-gc"), all);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let done =
        run_with_progress(blobs.as_ref(), &meta, &opts(Duration::ZERO, false), &Quiet).await?;
    let mut want = vec![unlinked.to_string(), orphan_id.clone()];
    want.sort();
    assert_eq!(ids(&done.removed), want);
    assert_eq!(
        located_ids(&s3, "wharf-gc"),
        [live_id],
        "only the live blob keeps its located object"
    );
    assert_eq!(blobs.stat(&unlinked).await?, None);
    let read = blobs.get(&live, None).await?.expect("the live blob stays");
    assert_eq!(read.size, size);
    let again =
        run_with_progress(blobs.as_ref(), &meta, &opts(Duration::ZERO, false), &Quiet).await?;
    assert!(again.removed.is_empty(), "{again:?}");
    Ok(())
}
