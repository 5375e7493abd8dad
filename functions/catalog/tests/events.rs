//! The catalog function offline: real DynamoDB Streams and EventBridge event JSON from
//! `tests/fixtures/events/` through the handler, over embedded stores filled by pushes through
//! the registry's own router, into a directory site.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;
use wharf::api::AppState;
use wharf::config::{AuthConfig, Config};
use wharf_catalog::{FsWriter, Options};
use wharf_fn_catalog::{Catalog, Trigger, classify};

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/events")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture JSON")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn send(state: &AppState, method: &str, uri: &str, ct: &str, body: Vec<u8>) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ct)
        .body(Body::from(body))
        .expect("request");
    wharf::api::router(state.clone())
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {})
        .status()
}

/// Pushes a one-layer image to `repo:tag`; returns the manifest digest.
async fn push_image(state: &AppState, repo: &str, tag: &str, seed: &str) -> String {
    let config = serde_json::to_vec(&json!({
        "architecture": "arm64", "os": "linux",
        "config": { "Env": [format!("SEED={seed}")] },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .expect("json");
    let layer = format!("layer of {seed}").into_bytes();
    for blob in [&config, &layer] {
        let uri = format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(blob));
        let status = send(
            state,
            "POST",
            &uri,
            "application/octet-stream",
            blob.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "blob upload to {repo}");
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": sha256(&layer), "size": layer.len() }],
    }))
    .expect("json");
    let status = send(
        state,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        "application/vnd.oci.image.manifest.v1+json",
        manifest.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "manifest to {repo}:{tag}");
    sha256(&manifest)
}

struct Setup {
    _dir: tempfile::TempDir,
    site: PathBuf,
    catalog: Catalog,
    state: AppState,
}

/// Embedded stores (development mode for the pushes) and a catalog whose policy makes `pub/*`
/// public.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let state = wharf::runtime::build_state(&config, None, wharf::runtime::KeyUse::Sign)
        .await
        .expect("embedded state");
    let auth: AuthConfig =
        toml::from_str("policy = 'public = [\"pub/*\"]'").expect("auth table, inline policy");
    let site = dir.path().join("site");
    let catalog = Catalog::new(
        Arc::clone(&state.meta),
        Arc::clone(&state.blobs),
        auth,
        Box::new(FsWriter::new(&site)),
        Options::new("registry.example.test".into(), None),
    );
    Setup {
        _dir: dir,
        site,
        catalog,
        state,
    }
}

fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                pending.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn stream_batches_are_read_for_tag_referrer_and_policy_items_only() {
    let push = classify(&fixture("dynamodb-stream-push")).expect("stream batch");
    assert_eq!(
        push,
        Trigger::Changes {
            records: 3,
            repos: ["pub/app".to_owned(), "pub/tools/scanner".to_owned()].into(),
        }
    );
    let uploads = classify(&fixture("dynamodb-stream-uploads")).expect("stream batch");
    assert_eq!(
        uploads,
        Trigger::Nothing,
        "uploads and blob links change no page"
    );
    let schedule = classify(&fixture("eventbridge-schedule")).expect("schedule");
    assert_eq!(schedule, Trigger::Schedule);
    assert!(classify(&json!({"version": "2.0", "routeKey": "$default"})).is_err());
    let mut policy = fixture("dynamodb-stream-uploads");
    policy["Records"][0]["dynamodb"]["Keys"] =
        json!({"pk": {"S": "POLICY"}, "sk": {"S": "CURRENT"}});
    assert_eq!(
        classify(&policy).expect("stream batch"),
        Trigger::Changes {
            records: 1,
            repos: Default::default()
        },
        "`wharf policy push` can make repositories public or private"
    );
    let mut foreign = fixture("dynamodb-stream-push");
    foreign["Records"][0]["eventSource"] = json!("aws:kinesis");
    assert!(classify(&foreign).is_err(), "only DynamoDB records");
}

#[tokio::test]
async fn a_push_event_publishes_the_public_repository_and_nothing_of_a_private_one() {
    let s = setup().await;
    let digest = push_image(&s.state, "pub/app", "v1", "public").await;
    let hidden = push_image(&s.state, "team/secret", "v1", "private").await;

    let nothing = s
        .catalog
        .handle(&fixture("dynamodb-stream-uploads"))
        .await
        .expect("handled");
    assert_eq!(nothing["built"], false);
    assert!(
        !s.site.exists(),
        "a batch without tag changes writes nothing"
    );

    let report = s
        .catalog
        .handle(&fixture("dynamodb-stream-push"))
        .await
        .expect("handled");
    assert_eq!(report["built"], true);
    assert_eq!(report["rendered"], json!(["pub/app"]));
    assert!(s.site.join("r/pub/app/index.html").is_file());
    let json: Value = serde_json::from_slice(
        &std::fs::read(s.site.join("r/pub/app/index.json")).expect("repo JSON"),
    )
    .expect("JSON");
    assert_eq!(json["tags"][0]["digest"], digest);
    assert_eq!(
        json["tags"][0]["pull"]["tag"],
        "registry.example.test/pub/app:v1"
    );
    for file in files(&s.site) {
        let text = std::fs::read_to_string(&file).expect("utf-8 site file");
        assert!(
            !text.contains("team/secret") && !text.contains(&hidden),
            "{file} leaks the private repository"
        );
    }

    // The schedule finds nothing changed and re-renders nothing.
    let again = s
        .catalog
        .handle(&fixture("eventbridge-schedule"))
        .await
        .expect("handled");
    assert_eq!(again["trigger"], "schedule");
    assert_eq!(again["rendered"], json!([]));
}
