//! Load: 32 pushers and 32 pullers for a bounded time over shared and separate repositories and
//! tags, on the embedded default and on S3 + DynamoDB (through a proxy that cancels a fifth of
//! all DynamoDB transactions with `TransactionConflict`, as real DynamoDB does when transactions
//! meet on an item: `fixtures/dynamodb_conflicts.py`), with garbage collection running every
//! second (grace period 3 s) and each pusher also leaving garbage behind (a blob pushed, then
//! deleted). During the run every pulled manifest and blob must verify against its digest; at the
//! end every tag of every repository must resolve to complete content whose digests verify, no
//! blob a manifest references may be missing, and garbage collection must have removed garbage.
//!
//! This asserts behaviour under concurrency, not speed: throughput figures belong to the
//! benchmark (tests/bench), and are only printed here.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Mutex;
use wharf_e2e::cloud::{Cloud, CloudOptions, ConflictShare};
use wharf_e2e::verify::{Verifier, sha256};

const PUSHERS: usize = 32;
const PULLERS: usize = 32;
/// Tags every pusher of the shared repository moves, so tag writes really contend.
const SHARED_TAGS: [&str; 4] = ["a", "b", "c", "d"];
const SHARED_REPO: &str = "load/shared";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Debug, Default)]
struct Counts {
    pushes: AtomicU64,
    pulls: AtomicU64,
    blobs_verified: AtomicU64,
}

struct Load {
    base: String,
    http: reqwest::Client,
    verifier: Verifier,
    counts: Counts,
    /// (repository, tag) pairs that have been pushed at least once: what pullers may ask for.
    tagged: Mutex<Vec<(String, String)>>,
}

impl Load {
    async fn push_blob(&self, repo: &str, bytes: Vec<u8>) -> Result<String> {
        let digest = sha256(&bytes);
        let response = self
            .http
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={digest}",
                self.base
            ))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "blob push to {repo}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        Ok(digest)
    }

    /// Pushes a small random image and tags it; returns its manifest digest.
    async fn push_image(&self, rng: &mut rand::rngs::StdRng, repo: &str, tag: &str) -> Result<()> {
        let mut layer = vec![0u8; rng.random_range(1024..64 * 1024)];
        rng.fill(&mut layer[..]);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "nonce": rng.random::<u64>()
        }))?;
        let (layer_len, config_len) = (layer.len(), config.len());
        let layer = self.push_blob(repo, layer).await?;
        let config = self.push_blob(repo, config).await?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config, "size": config_len},
            "layers": [{"mediaType": LAYER, "digest": layer, "size": layer_len}],
        }))?;
        let response = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.base))
            .header("content-type", MANIFEST)
            .body(manifest)
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "manifest push to {repo}:{tag}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        self.counts.pushes.fetch_add(1, Ordering::Relaxed);
        let mut tagged = self.tagged.lock().await;
        let entry = (repo.to_owned(), tag.to_owned());
        if !tagged.contains(&entry) {
            tagged.push(entry);
        }
        Ok(())
    }

    /// Pushes a blob and deletes it again: garbage for the collector running meanwhile.
    async fn push_garbage(&self, rng: &mut rand::rngs::StdRng, repo: &str) -> Result<()> {
        let mut junk = vec![0u8; 4096];
        rng.fill(&mut junk[..]);
        let digest = self.push_blob(repo, junk).await?;
        let response = self
            .http
            .delete(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await?;
        ensure!(
            response.status() == 202,
            "blob delete in {repo}: {}",
            response.status()
        );
        Ok(())
    }

    /// Pulls `repo:tag` completely and verifies every digest.
    async fn pull_and_verify(&self, repo: &str, tag: &str) -> Result<()> {
        let blobs = self.verifier.pull(repo, tag).await?;
        self.counts
            .blobs_verified
            .fetch_add(blobs as u64, Ordering::Relaxed);
        self.counts.pulls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn pusher(load: Arc<Load>, id: usize, until: Instant) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(id as u64);
    let mut n = 0u64;
    while Instant::now() < until {
        let (repo, tag) = if id.is_multiple_of(2) {
            let tag = SHARED_TAGS[rng.random_range(0..SHARED_TAGS.len())];
            (SHARED_REPO.to_owned(), tag.to_owned())
        } else {
            (format!("load/own-{id}"), format!("v{}", n % 8))
        };
        load.push_image(&mut rng, &repo, &tag).await?;
        load.push_garbage(&mut rng, &repo).await?;
        n += 1;
    }
    Ok(())
}

async fn puller(load: Arc<Load>, id: usize, until: Instant) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + id as u64);
    while Instant::now() < until {
        let pick = {
            let tagged = load.tagged.lock().await;
            tagged[rng.random_range(0..tagged.len())].clone()
        };
        load.pull_and_verify(&pick.0, &pick.1).await?;
    }
    Ok(())
}

/// Runs the load against `base` for `duration`, then checks every tag of every repository.
fn run_load(base: &str, duration: Duration) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let verifier = Verifier::new(base)?;
    runtime.block_on(async {
        let load = Arc::new(Load {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(PUSHERS + PULLERS)
                .timeout(Duration::from_secs(120))
                .build()?,
            verifier,
            counts: Counts::default(),
            tagged: Mutex::new(Vec::new()),
        });
        // Something to pull from the first moment.
        let mut rng = rand::rngs::StdRng::seed_from_u64(99);
        for tag in SHARED_TAGS {
            load.push_image(&mut rng, SHARED_REPO, tag).await?;
        }
        let started = Instant::now();
        let until = started + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..PUSHERS {
            tasks.spawn(pusher(load.clone(), id, until));
        }
        for id in 0..PULLERS {
            tasks.spawn(puller(load.clone(), id, until));
        }
        let mut errors = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done.context("task panicked").and_then(|r| r) {
                errors.push(format!("{e:#}"));
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        if !errors.is_empty() {
            bail!(
                "{} of {} workers failed:\n{}",
                errors.len(),
                PUSHERS + PULLERS,
                errors.join("\n")
            );
        }
        let (pushes, pulls) = (
            load.counts.pushes.load(Ordering::Relaxed),
            load.counts.pulls.load(Ordering::Relaxed),
        );
        eprintln!(
            "load on {base}: {pushes} image pushes and {pulls} verified pulls in {elapsed:.1} s"
        );
        ensure!(
            pushes > PUSHERS as u64 && pulls > PULLERS as u64,
            "the load did not run"
        );

        // The end state: everything tagged resolves to complete, verifying content.
        let listed = load.verifier.tags().await?;
        let listed: BTreeSet<(String, String)> = listed
            .into_iter()
            .flat_map(|(repo, tags)| tags.into_iter().map(move |t| (repo.clone(), t)))
            .collect();
        let pushed: BTreeSet<(String, String)> = load.tagged.lock().await.iter().cloned().collect();
        ensure!(
            listed == pushed,
            "listed tags differ from pushed tags: {listed:?} vs {pushed:?}"
        );
        let checked = load.verifier.every_tag().await?;
        eprintln!(
            "end state: {checked} tags verified; {} blobs verified during the run",
            load.counts.blobs_verified.load(Ordering::Relaxed)
        );
        Ok(())
    })
}

/// Wharf's configuration for the run: in-process garbage collection every second, removing what
/// has been unreferenced for 3 s. Returns the environment pointing Wharf at it.
fn gc_config(dir: &std::path::Path) -> Result<Vec<(String, String)>> {
    let file = dir.join("wharf.toml");
    std::fs::write(&file, "gc_interval_secs = 1\ngc_grace_secs = 3\n")?;
    Ok(vec![("WHARF_CONFIG".into(), file.display().to_string())])
}

/// What the scheduled collections logged: (runs, items removed).
fn collections(logs: &str) -> (u64, u64) {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["fields"]["message"] == "scheduled garbage collection")
        .fold((0, 0), |(runs, removed), v| {
            (
                runs + 1,
                removed + v["fields"]["removed"].as_u64().unwrap_or(0),
            )
        })
}

fn check_collections(logs: &str) -> Result<()> {
    let (runs, removed) = collections(logs);
    eprintln!("garbage collection: {runs} runs removed {removed} items during the load");
    ensure!(runs >= 3, "garbage collection ran {runs} times");
    ensure!(removed > 0, "garbage collection removed nothing");
    ensure!(
        !logs.contains("scheduled garbage collection failed"),
        "a garbage collection failed:\n{logs}"
    );
    Ok(())
}

#[test]
fn concurrent_pushers_pullers_and_gc_on_the_embedded_default() -> Result<()> {
    let _heavy = crate::heavy();
    let dir = tempfile::tempdir()?;
    let wharf = wharf_e2e::Wharf::start_with_env(gc_config(dir.path())?)?;
    run_load(&wharf.url(), Duration::from_secs(20))?;
    check_collections(&wharf.logs())
}

/// Share of DynamoDB transactions the proxy cancels with `TransactionConflict`, and of
/// single-item writes it rejects with `TransactionConflictException`: far more contention than
/// 32 pushers cause on real DynamoDB, so a retry that is missing anywhere shows.
const CONFLICTS: ConflictShare = ConflictShare {
    transactions: 0.2,
    writes: 0.05,
};

/// The cloud case runs through the fault-injecting proxy: moto serves one request at a time and
/// would never contend by itself, whereas real DynamoDB cancels transactions that meet.
#[test]
fn concurrent_pushers_pullers_and_gc_on_s3_and_dynamodb_under_transaction_conflicts() -> Result<()>
{
    let _heavy = crate::heavy();
    let dir = tempfile::tempdir()?;
    let cloud = Cloud::start_with(CloudOptions {
        env: gc_config(dir.path())?,
        conflicts: Some(CONFLICTS),
    })?;
    run_load(&cloud.wharf.url(), Duration::from_secs(20))?;
    check_collections(&cloud.wharf.logs())?;
    let counts = cloud.conflicts.as_ref().context("the proxy")?.counts()?;
    eprintln!("DynamoDB stand-in: {counts:?}");
    // A fifth was asked for; a tenth is far outside chance for the hundreds drawn.
    ensure!(
        counts.transact_cancelled * 10 >= counts.transact_seen && counts.transact_cancelled >= 20,
        "the proxy cancelled too few transactions to prove anything: {counts:?}"
    );
    ensure!(
        counts.write_rejected >= 5,
        "the proxy rejected too few writes: {counts:?}"
    );
    Ok(())
}
