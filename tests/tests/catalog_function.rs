//! The `catalog` Lambda binary as deployed: its own `lambda_runtime` loop polls a stand-in of the
//! Lambda Runtime API on loopback, which hands it a real DynamoDB Streams batch and then a batch
//! of upload records. The stores are the cloud ones (DynamoDB on moto, blobs on s3s-fs) filled
//! by skopeo pushes into `wharf serve`; the site goes to a second bucket on s3s-fs. This covers
//! the cold start from the environment (`Catalog::from_env`) that the offline tests cannot.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use wharf_e2e::cloud::{ACCESS_KEY, Cloud, REGION, SECRET_KEY, backend_env};
use wharf_e2e::cmd::Cmd;
use wharf_e2e::layout::Layout;
use wharf_e2e::server::{binary_path, free_port, target_dir};
use wharf_e2e::skopeo::{Skopeo, oci_ref};
use wharf_e2e::{digest, image};

/// Upper bound on one copy, one build, one invocation.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The bucket the site goes to, and its prefix.
const SITE_BUCKET: &str = "catalog-site";
const PREFIX: &str = "site/";

#[derive(Default)]
struct RuntimeApi {
    events: Mutex<VecDeque<(String, Value)>>,
    responses: Mutex<Vec<(String, Result<Value, String>)>>,
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> (StatusCode, HeaderMap, String) {
    loop {
        let event = api.events.lock().map(|mut q| q.pop_front()).ok().flatten();
        if let Some((id, body)) = event {
            let mut h = HeaderMap::new();
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() + 600_000)
                .unwrap_or_default();
            let pairs = [
                ("lambda-runtime-aws-request-id", id),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:catalog".to_owned(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0".to_owned(),
                ),
            ];
            for (k, v) in pairs {
                h.insert(k, v.parse().expect("header value"));
            }
            return (StatusCode::OK, h, body.to_string());
        }
        // The runtime long-polls; so does the stand-in.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn respond(
    State(api): State<Arc<RuntimeApi>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"));
    if let Ok(mut r) = api.responses.lock() {
        r.push((id, value));
    }
    StatusCode::ACCEPTED
}

async fn fail(
    State(api): State<Arc<RuntimeApi>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    if let Ok(mut r) = api.responses.lock() {
        r.push((id, Err(body)));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, body: String) -> StatusCode {
    if let Ok(mut r) = api.responses.lock() {
        r.push(("init".into(), Err(body)));
    }
    StatusCode::ACCEPTED
}

fn fixture(name: &str) -> Result<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/events")
        .join(format!("{name}.json"));
    Ok(serde_json::from_str(&std::fs::read_to_string(&path)?)?)
}

/// The function process; killed when dropped.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(cloud: &Cloud, args: &[&str], path: &str) -> Result<String> {
    Cmd::new("curl")
        .args(["--silent", "--show-error", "--fail", "--globoff"])
        .args(["--aws-sigv4", &format!("aws:amz:{REGION}:s3")])
        .args(["--user", &format!("{ACCESS_KEY}:{SECRET_KEY}")])
        .args(["--header", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(args)
        .arg(format!("{}/{SITE_BUCKET}/{path}", cloud.s3.endpoint()))
        .timeout(STEP_TIMEOUT)
        .stdout()
}

#[test]
fn the_catalog_binary_rebuilds_into_the_bucket_on_a_stream_batch_and_skips_upload_records()
-> Result<()> {
    let _heavy = crate::heavy();
    let cloud = Cloud::start()?;
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let app = Layout::create(&work.path().join("app"))?;
    let v1 = image::sample_image(&app, "v1", 1, 91)?;
    let secret = Layout::create(&work.path().join("secret"))?;
    let hidden = image::sample_image(&secret, "v1", 1, 92)?;
    for (layout, dest) in [(&app, "public/app:v1"), (&secret, "team/secret:v1")] {
        skopeo.copy(
            &oci_ref(layout.root(), "v1"),
            &format!("docker://{}/{dest}", cloud.wharf.host()),
            &[],
            STEP_TIMEOUT,
        )?;
    }
    let env = backend_env(&cloud.s3, &cloud.moto);
    let mut create = Cmd::new(binary_path())
        .args(["admin", "create-bucket"])
        .env("WHARF_DATA_DIR", work.path().join("admin"))
        .timeout(STEP_TIMEOUT);
    for (k, v) in &env {
        create = create.env(k, v);
    }
    create
        .env(
            "WHARF_BLOBS",
            format!(
                "s3://{SITE_BUCKET}?endpoint={}&region={REGION}",
                cloud.s3.endpoint()
            ),
        )
        .run()?;

    // The Runtime API stand-in, with two invocations queued.
    let api = Arc::new(RuntimeApi::default());
    if let Ok(mut q) = api.events.lock() {
        q.push_back(("push-batch".into(), fixture("dynamodb-stream-push")?));
        q.push_back(("upload-batch".into(), fixture("dynamodb-stream-uploads")?));
    }
    let port = free_port()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let app_router = axum::Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            axum::routing::get(next),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            axum::routing::post(respond),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            axum::routing::post(fail),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            axum::routing::post(init_error),
        )
        .with_state(Arc::clone(&api));
    let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))?;
    runtime.spawn(async move { axum::serve(listener, app_router).await });

    // Built here, like the emulator's functions: `cargo test` builds no other package's bins.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new("cargo")
        .current_dir(&workspace)
        .args(["build", "-p", "wharf-fn-catalog", "--bin", "catalog"])
        .status()
        .context("cargo build of the catalog function")?;
    if !status.success() {
        bail!("building the catalog function failed: {status}");
    }
    let bin = target_dir().join("debug").join("catalog");
    let mut cmd = Command::new(&bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "catalog")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/catalog")
        .env("WHARF_AUTH", "policy = 'public = [\"public/*\"]'")
        .env(
            "WHARF_CATALOG_OUT",
            format!(
                "s3://{SITE_BUCKET}/{PREFIX}?endpoint={}&region={REGION}",
                cloud.s3.endpoint()
            ),
        )
        .env("WHARF_CATALOG_REGISTRY_HOST", "registry.example.test")
        .env(
            "WHARF_CATALOG_SITE_URL",
            "https://catalog.example.test/site/",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("function.log"))?);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let _function = Function(cmd.spawn().context("starting the catalog binary")?);

    let started = Instant::now();
    let responses = loop {
        let done = api.responses.lock().map(|r| r.clone()).unwrap_or_default();
        if done.len() >= 2 || done.iter().any(|(id, _)| id == "init") {
            break done;
        }
        if started.elapsed() > STEP_TIMEOUT {
            let log = std::fs::read_to_string(work.path().join("function.log"))?;
            bail!("no answers after {STEP_TIMEOUT:?}: {done:?}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(work.path().join("function.log"))?;
    let first = match &responses[0] {
        (id, Ok(v)) if id == "push-batch" => v.clone(),
        other => bail!("first answer {other:?}\n{log}"),
    };
    assert_eq!(first["built"], true, "{first}");
    assert_eq!(
        first["rendered"],
        serde_json::json!(["public/app"]),
        "{first}"
    );
    match &responses[1] {
        (id, Ok(v)) if id == "upload-batch" => assert_eq!(v["built"], false, "{v}"),
        other => bail!("second answer {other:?}\n{log}"),
    }

    // The site is in the bucket under the prefix, with its headers, and nothing private.
    let listing = curl(&cloud, &[], "?list-type=2")?;
    let keys: Vec<&str> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k))
        .collect();
    assert!(keys.contains(&"site/r/public/app/index.html"), "{keys:?}");
    assert!(keys.contains(&"site/catalog-state.json"), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(PREFIX)), "{keys:?}");
    let head = curl(&cloud, &["--head"], "site/r/public/app/index.html")?.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: public, max-age=60"), "{head}");
    let json: Value = serde_json::from_str(&curl(&cloud, &[], "site/r/public/app/index.json")?)?;
    assert_eq!(json["tags"][0]["digest"], v1.digest);
    for key in &keys {
        let body = curl(&cloud, &[], key)?;
        for s in [
            "team/secret",
            hidden.digest.as_str(),
            digest::hex_part(&hidden.digest),
        ] {
            assert!(!key.contains(s) && !body.contains(s), "{key} leaks {s}");
        }
    }
    Ok(())
}
