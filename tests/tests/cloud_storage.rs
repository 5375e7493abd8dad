//! The storage contract suites of `wharf::storage::contract` against real servers: the S3
//! blob store on s3s-fs (which checks SigV4 and presigned URLs) and on moto (multipart copy),
//! the DynamoDB metadata store on moto (transactions, conditional writes). Plus what only the
//! cloud backends have: re-cut multipart parts, presigned URLs, spilled manifests, more
//! references than one transaction holds, and racing writers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use wharf::oci::{Algorithm, Digest, RepoName, Tag, media};
use wharf::storage::dynamodb::{DynamoConfig, DynamoMetaStore};
use wharf::storage::s3::{S3BlobStore, S3Config, parts::MIN_PART_SIZE};
use wharf::storage::{
    BlobLink, BlobStore, ByteRange, ByteStream, ManifestRecord, ManifestWrite, MetaStore,
    PutManifestError, StorageError, UploadSession, contract,
};
use wharf_e2e::cloud::{Moto, S3Spy, S3sFs, endpoint};
use wharf_e2e::curl::Request;

async fn s3_store(url: String, tweak: impl FnOnce(&mut S3Config)) -> Result<S3BlobStore> {
    let mut config = S3Config::new("wharf-test", endpoint(url));
    tweak(&mut config);
    let store = S3BlobStore::connect(config).await;
    wharf::storage::s3::admin::create_bucket(&store).await?;
    Ok(store)
}

async fn dynamo_store(moto: &Moto) -> Result<DynamoMetaStore> {
    let blobs = s3_store(moto.endpoint(), |_| {}).await?;
    let config = DynamoConfig {
        table: "wharf-test".to_owned(),
        endpoint: endpoint(moto.endpoint()),
    };
    let store = DynamoMetaStore::connect(config, Arc::new(blobs)).await;
    wharf::storage::dynamodb::admin::create_table(&store).await?;
    Ok(store)
}

fn body(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(stream::iter(chunks.into_iter().map(Ok)))
}

async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u64::from(seed)) as u8
        })
        .collect()
}

/// Uploads `bytes` as one blob through `appends` append calls of the given chunkings.
async fn upload(store: &dyn BlobStore, id: &str, appends: &[Vec<usize>], bytes: &[u8]) -> Digest {
    let digest = Algorithm::Sha256.digest(bytes);
    let mut state = store.start_upload(id).await.expect("start");
    let mut offset = 0usize;
    for chunking in appends {
        let chunks: Vec<Bytes> = chunking
            .iter()
            .map(|len| {
                let c = Bytes::copy_from_slice(&bytes[offset..offset + len]);
                offset += len;
                c
            })
            .collect();
        let start = (offset - chunking.iter().sum::<usize>()) as u64;
        let (next, n) = store
            .append_upload(id, state, start, body(chunks))
            .await
            .expect("append");
        assert_eq!(n, chunking.iter().sum::<usize>() as u64);
        state = next;
    }
    assert_eq!(offset, bytes.len(), "chunkings cover the data");
    store
        .finish_upload(id, state, &digest)
        .await
        .expect("finish");
    digest
}

/// Files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn s3_blob_store_meets_the_contract_on_s3s_fs() -> Result<()> {
    let server = S3sFs::start()?;
    let store = s3_store(server.endpoint(), |_| {}).await?;
    contract::blob_store(&store).await;
    Ok(())
}

#[tokio::test]
async fn s3_blob_store_meets_the_contract_on_moto() -> Result<()> {
    let server = Moto::start()?;
    let store = s3_store(server.endpoint(), |_| {}).await?;
    contract::blob_store(&store).await;
    Ok(())
}

#[tokio::test]
async fn dynamodb_meta_store_meets_the_contract_on_moto() -> Result<()> {
    let server = Moto::start()?;
    let store = dynamo_store(&server).await?;
    contract::meta_store(&store).await;
    Ok(())
}

#[tokio::test]
async fn chunks_of_any_size_become_equal_parts_and_a_failed_append_is_retried() -> Result<()> {
    let server = S3sFs::start()?;
    let store = s3_store(server.endpoint(), |c| c.part_size = MIN_PART_SIZE).await?;
    let part = MIN_PART_SIZE as usize;
    let bytes = data(2 * part + part / 2 + 3, 1);
    let id = "0a0b0c0d0e0f00112233445566778899";
    let mut state = store.start_upload(id).await?;
    // 1 MiB + 7: only a tail.
    let first = part / 5 + 7;
    (state, _) = store
        .append_upload(
            id,
            state,
            0,
            body(vec![Bytes::copy_from_slice(&bytes[..first])]),
        )
        .await?;
    // A failing attempt that already completed a part must not corrupt the retry.
    let failing: ByteStream = Box::pin(stream::iter(vec![
        Ok(Bytes::from(vec![0xEEu8; part + 11])),
        Err(std::io::Error::other("client went away")),
    ]));
    let err = store
        .append_upload(id, state.clone(), first as u64, failing)
        .await
        .expect_err("body error");
    assert!(matches!(err, StorageError::Body(_)));
    // The retry at the same offset, in odd chunk sizes spanning two part boundaries.
    let rest = &bytes[first..];
    let chunks: Vec<Bytes> = rest
        .chunks(part / 3 + 1)
        .map(Bytes::copy_from_slice)
        .collect();
    let (state, n) = store
        .append_upload(id, state, first as u64, body(chunks))
        .await?;
    assert_eq!(n as usize, rest.len());
    let digest = Algorithm::Sha256.digest(&bytes);
    store.finish_upload(id, state, &digest).await?;

    let read = store.get(&digest, None).await?.expect("stored");
    assert_eq!(read.size, bytes.len() as u64);
    assert!(
        collect(read.body).await == bytes,
        "bytes survive the re-cut"
    );
    let across = ByteRange {
        start: part as u64 - 5,
        end: part as u64 + 5,
    };
    let read = store.get(&digest, Some(across)).await?.expect("stored");
    assert_eq!(collect(read.body).await, &bytes[part - 5..=part + 5]);
    let staged = files_under(&server.root().join("wharf-test").join("uploads"));
    assert!(staged.is_empty(), "staging left behind: {staged:?}");
    Ok(())
}

/// An upload session started before located blobs (its staging state has no `located`, as
/// sessions in flight across the upgrade have) still finishes, the old way: its multipart
/// upload went to `uploads/<id>/object` and is copied to the blob's key, part by part above
/// the single-copy limit (`UploadPartCopy`, which moto implements).
#[tokio::test]
async fn a_session_from_before_located_blobs_finishes_by_copying_part_by_part() -> Result<()> {
    let server = Moto::start()?;
    let spy = S3Spy::start(&server.endpoint()).await?;
    let store = s3_store(spy.endpoint(), |c| {
        c.part_size = MIN_PART_SIZE;
        c.single_copy_limit = MIN_PART_SIZE;
    })
    .await?;
    let part = MIN_PART_SIZE as usize;
    let bytes = data(2 * part + 1000, 2);
    let digest = Algorithm::Sha256.digest(&bytes);
    let id = "1a1b1c1d1e1f00112233445566778899";
    let mut state = store.start_upload(id).await?;
    let legacy = state.as_object_mut().expect("an object");
    assert_eq!(
        legacy.remove("located"),
        Some(serde_json::Value::Bool(true))
    );
    let mut offset = 0;
    for len in [part / 2, part, part / 2 + 1000] {
        let chunk = Bytes::copy_from_slice(&bytes[offset..offset + len]);
        (state, _) = store
            .append_upload(id, state, offset as u64, body(vec![chunk]))
            .await?;
        offset += len;
    }
    spy.take();
    store.finish_upload(id, state, &digest).await?;
    let copies = spy.take().into_iter().filter(|r| r.copies).count();
    assert_eq!(
        copies, 3,
        "two parts and 1000 bytes, copied in parts of one part size: three UploadPartCopy"
    );
    let read = store.get(&digest, None).await?.expect("stored");
    assert!(collect(read.body).await == bytes);
    Ok(())
}

#[tokio::test]
async fn presigned_urls_serve_the_blob_and_refuse_tampering_and_expiry() -> Result<()> {
    let server = S3sFs::start()?;
    let store = s3_store(server.endpoint(), |_| {}).await?;
    let bytes = data(70_000, 3);
    let digest = upload(&store, "2a2b2c2d", &[vec![70_000]], &bytes).await;
    let url = store.redirect_url(&digest).await?.expect("presigned");
    let ok = Request::get(url.clone()).send()?;
    ok.expect_status(200)?;
    assert!(ok.body == bytes, "the presigned URL serves the blob");

    let tampered_signature = {
        let (head, sig) = url.split_once("X-Amz-Signature=").expect("signed");
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        format!("{head}X-Amz-Signature={flipped}{}", &sig[1..])
    };
    assert_eq!(Request::get(tampered_signature).send()?.status, 403);
    let other = upload(&store, "3a3b3c3d", &[vec![10]], b"other blob").await;
    let tampered_key = url.replace(digest.hex(), other.hex());
    assert_eq!(Request::get(tampered_key).send()?.status, 403);

    let short = s3_store(server.endpoint(), |c| {
        c.presign_expiry = Duration::from_secs(1)
    })
    .await?;
    let expiring = short.redirect_url(&digest).await?.expect("presigned");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(Request::get(expiring).send()?.status, 403);
    Ok(())
}

fn manifest(bytes: Vec<u8>) -> ManifestRecord {
    let bytes = Bytes::from(bytes);
    ManifestRecord {
        digest: Algorithm::Sha256.digest(&bytes),
        media_type: media::OCI_MANIFEST.into(),
        bytes,
    }
}

fn write(
    repo: &RepoName,
    m: &ManifestRecord,
    tag: Option<&str>,
    blobs: Vec<Digest>,
) -> ManifestWrite {
    ManifestWrite {
        repo: repo.clone(),
        manifest: m.clone(),
        tag: tag.map(|t| Tag::parse(t).expect("tag")),
        blobs,
        manifests: Vec::new(),
        referrer: None,
        pushed_ms: 0,
    }
}

#[tokio::test]
async fn large_manifests_and_many_references_on_dynamodb() -> Result<()> {
    let server = Moto::start()?;
    let store = dynamo_store(&server).await?;
    let repo = RepoName::parse("big/one")?;

    // Over the item limit: bytes spill into the blob store, and come back byte for byte.
    let mut big = b"{\"schemaVersion\":2,\"pad\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 450 * 1024));
    big.extend_from_slice(b"\"}");
    let big = manifest(big);
    store
        .put_manifest(write(&repo, &big, Some("big"), vec![]))
        .await?;
    assert_eq!(store.manifest(&repo, &big.digest).await?, Some(big.clone()));

    // 150 references: more than one transaction holds.
    let blobs: Vec<Digest> = (0..150u32)
        .map(|i| Algorithm::Sha256.digest(&i.to_be_bytes()))
        .collect();
    for b in &blobs[..149] {
        store.link_blob(&repo, b, BlobLink { size: 4 }).await?;
    }
    let many = manifest(b"{\"schemaVersion\":2,\"many\":1}".to_vec());
    let missing_last = store
        .put_manifest(write(&repo, &many, Some("many"), blobs.clone()))
        .await;
    assert!(
        matches!(&missing_last, Err(PutManifestError::MissingBlob(d)) if *d == blobs[149]),
        "a missing reference beyond the transaction is found: {missing_last:?}"
    );
    let mut reordered = blobs.clone();
    reordered.rotate_right(1);
    let missing_first = store
        .put_manifest(write(&repo, &many, Some("many"), reordered))
        .await;
    assert!(
        matches!(&missing_first, Err(PutManifestError::MissingBlob(d)) if *d == blobs[149]),
        "a failed ConditionCheck names its blob: {missing_first:?}"
    );
    assert_eq!(store.tag(&repo, &Tag::parse("many")?).await?, None);
    store
        .link_blob(&repo, &blobs[149], BlobLink { size: 4 })
        .await?;
    store
        .put_manifest(write(&repo, &many, Some("many"), blobs))
        .await?;
    assert_eq!(
        store.tag(&repo, &Tag::parse("many")?).await?,
        Some(many.digest)
    );
    Ok(())
}

#[tokio::test]
async fn racing_writers_on_dynamodb_leave_one_consistent_winner() -> Result<()> {
    let server = Moto::start()?;
    let store = Arc::new(dynamo_store(&server).await?);
    let repo = RepoName::parse("race/tag")?;
    let layer = Algorithm::Sha256.digest(b"layer");
    store.link_blob(&repo, &layer, BlobLink { size: 5 }).await?;

    for round in 0..5u8 {
        let a = manifest(format!("{{\"schemaVersion\":2,\"a\":{round}}}").into_bytes());
        let b = manifest(format!("{{\"schemaVersion\":2,\"b\":{round}}}").into_bytes());
        let (ra, rb) = tokio::join!(
            store.put_manifest(write(&repo, &a, Some("latest"), vec![layer.clone()])),
            store.put_manifest(write(&repo, &b, Some("latest"), vec![layer.clone()])),
        );
        let won: Vec<&ManifestRecord> = [(&ra, &a), (&rb, &b)]
            .into_iter()
            .filter_map(|(r, m)| r.is_ok().then_some(m))
            .collect();
        assert!(!won.is_empty(), "at least one push lands: {ra:?} {rb:?}");
        let tagged = store
            .tag(&repo, &Tag::parse("latest")?)
            .await?
            .expect("tagged");
        assert!(
            won.iter().any(|m| m.digest == tagged),
            "the tag names a winner"
        );
        assert!(
            store.manifest(&repo, &tagged).await?.is_some(),
            "and its manifest exists"
        );
    }

    let session = UploadSession {
        id: "feedfacefeedface".into(),
        repo: repo.clone(),
        offset: 0,
        hash_state: "0:00".into(),
        staging: serde_json::Value::Null,
        created: u64::MAX / 4,
        version: 0,
    };
    store.create_upload(&session).await?;
    let mut one = session.clone();
    one.offset = 10;
    one.version = 1;
    let mut two = session.clone();
    two.offset = 20;
    two.version = 1;
    let (r1, r2) = tokio::join!(store.update_upload(&one), store.update_upload(&two));
    assert!(
        r1.is_ok() != r2.is_ok(),
        "exactly one update from version 0 wins: {r1:?} {r2:?}"
    );
    assert!(matches!(
        r1.err().or(r2.err()),
        Some(StorageError::Conflict)
    ));
    let stored = store.upload(&session.id).await?.expect("session");
    assert!(stored.offset == 10 || stored.offset == 20);
    assert_eq!(stored.version, 1);
    Ok(())
}

/// Stages `bytes` for upload `id` in one append, without finishing.
async fn stage(
    store: &dyn BlobStore,
    id: &str,
    bytes: &[u8],
) -> Result<wharf::storage::StagingState> {
    let state = store.start_upload(id).await?;
    let (state, _) = store
        .append_upload(id, state, 0, body(vec![Bytes::copy_from_slice(bytes)]))
        .await?;
    Ok(state)
}

/// Finishing a chunked upload of several parts costs the same few requests whatever its size,
/// and none of them copies: the multipart upload completes where it is (`objects/<id>/data`)
/// and the blob's key points at it, so nothing in the finish grows with the blob and a
/// multi-GB layer finishes within API Gateway's 29 s. Before, the finish copied the completed
/// object to the blob's key (`CopyObject`; `UploadPartCopy` above 5 GiB). A second upload of
/// the same digest keeps the one object there is.
#[tokio::test]
async fn finishing_a_chunked_upload_copies_nothing_whatever_its_size() -> Result<()> {
    let server = S3sFs::start()?;
    let spy = S3Spy::start(&server.endpoint()).await?;
    let store = s3_store(spy.endpoint(), |c| c.part_size = MIN_PART_SIZE).await?;
    let part = MIN_PART_SIZE as usize;
    let mut finishes = Vec::new();
    for (parts, seed) in [(2usize, 1u8), (6, 2)] {
        let bytes = data(parts * part + 17, seed);
        let digest = Algorithm::Sha256.digest(&bytes);
        let id = format!("{seed:032x}");
        let state = stage(&store, &id, &bytes).await?;
        spy.take();
        store.finish_upload(&id, state, &digest).await?;
        let seen = spy.take();
        let copies: Vec<_> = seen.iter().filter(|r| r.copies).collect();
        assert!(
            copies.is_empty(),
            "{parts} parts: the finish copied: {copies:?}"
        );
        finishes.push(seen);
        let read = store.get(&digest, None).await?.expect("stored");
        assert!(collect(read.body).await == bytes, "{parts} parts read back");
    }
    let counts: Vec<usize> = finishes.iter().map(Vec::len).collect();
    assert_eq!(
        counts[0], counts[1],
        "the finish of 2 and of 6 parts costs the same requests: {finishes:#?}"
    );
    assert!(
        counts[0] <= 10,
        "a handful of small requests: {:#?}",
        finishes[0]
    );

    // The same bytes again, through another upload: one object holds them.
    let bytes = data(2 * part + 17, 1);
    let digest = Algorithm::Sha256.digest(&bytes);
    let again = format!("{:032x}", 3);
    let state = stage(&store, &again, &bytes).await?;
    store.finish_upload(&again, state, &digest).await?;
    assert_eq!(store.stat(&digest).await?, Some(bytes.len() as u64));
    let bucket = server.root().join("wharf-test");
    let mut located: Vec<_> = files_under(&bucket.join("objects"))
        .into_iter()
        .filter(|p| p.ends_with("data"))
        .map(|p| {
            p.strip_prefix(&bucket)
                .expect("in the bucket")
                .display()
                .to_string()
        })
        .collect();
    located.sort();
    assert_eq!(
        located,
        [
            format!("objects/{:032x}/data", 1),
            format!("objects/{:032x}/data", 2)
        ],
        "one located object per digest, none for the second upload"
    );
    let staged = files_under(&bucket.join("uploads"));
    assert!(staged.is_empty(), "staging left behind: {staged:?}");
    Ok(())
}

/// Release-build measurement for BENCHMARKS.md: the finish of a chunked upload of
/// `WHARF_FINISH_MIB` MiB (default 1024) on s3s-fs, with 64 MiB parts, located (today's
/// finish) and the way sessions from before located blobs finish (the previous code's finish:
/// `CopyObject` to the blob's key). Run with
/// `cargo test --release -p wharf-e2e --test e2e -- --ignored --nocapture cloud_storage::finish_time`
/// (prints to stderr).
#[tokio::test]
#[ignore = "a measurement: run by hand in a release build"]
async fn finish_time_of_a_large_chunked_upload() -> Result<()> {
    let mib: usize = std::env::var("WHARF_FINISH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let server = S3sFs::start()?;
    let spy = S3Spy::start(&server.endpoint()).await?;
    let part = 64 * 1024 * 1024;
    let store = s3_store(spy.endpoint(), |c| c.part_size = part as u64).await?;
    for (copied, id) in [
        (true, "0123456789abcdef0123456789abcde0"),
        (false, "0123456789abcdef0123456789abcde1"),
    ] {
        let mut state = store.start_upload(id).await?;
        if copied {
            state.as_object_mut().expect("an object").remove("located");
        }
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let chunk = part / 2 + 12_345;
        let mut offset = 0usize;
        let total = mib * 1024 * 1024;
        while offset < total {
            let len = chunk.min(total - offset);
            let bytes = Bytes::from(data(len, (offset / chunk) as u8 ^ u8::from(copied)));
            sha2::Digest::update(&mut hasher, &bytes);
            let (next, n) = store
                .append_upload(id, state, offset as u64, body(vec![bytes]))
                .await?;
            state = next;
            offset += n as usize;
        }
        let digest = Digest::parse(&format!(
            "sha256:{}",
            hex::encode(sha2::Digest::finalize(hasher))
        ))?;
        spy.take();
        let started = std::time::Instant::now();
        store.finish_upload(id, state, &digest).await?;
        let took = started.elapsed();
        let how = if copied {
            "copied (before)"
        } else {
            "located (now)"
        };
        eprintln!("finish of a chunked {mib} MiB upload on s3s-fs, {how}: {took:?}");
        // When each request of the finish reached the store: a request's time is the gap to
        // the next one.
        for r in spy.take() {
            let at = r.at.duration_since(started);
            eprintln!("  +{at:>12.3?} {} {}", r.method, r.target);
        }
        assert_eq!(store.stat(&digest).await?, Some(total as u64));
    }
    Ok(())
}
