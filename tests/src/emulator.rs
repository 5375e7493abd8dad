//! The Lambda functions under `cargo lambda watch` (the Lambda runtime emulator) on loopback,
//! with an API Gateway stand-in in front: each request goes to the function the template's HTTP
//! API routes it to (`/lambda-url/<binary>/<path>` on the emulator). Storage is s3s-fs + moto,
//! shared by every function process, as the bucket and table are in AWS.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::cloud::{Moto, S3sFs, backend_env, create_bucket_and_table};
use crate::server::free_port;

/// How long the first request may take: the emulator compiles a function on first use.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest body the stand-in forwards: API Gateway's own limit is 10 MB.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// Every function binary, built before the emulator starts so no request waits on a compile.
const FUNCTION_PACKAGES: [&str; 7] = [
    "wharf-fn-base",
    "wharf-fn-token",
    "wharf-fn-manifests",
    "wharf-fn-blobs",
    "wharf-fn-uploads",
    "wharf-fn-tags",
    "wharf-fn-referrers",
];

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// The function that answered.
    pub binary: String,
    /// Its status.
    pub status: u16,
}

struct Proxy {
    routes: crate::sam::Routes,
    emulator: String,
    client: reqwest::Client,
    log: Mutex<Vec<Forwarded>>,
}

/// s3s-fs, moto, the emulator and the stand-in; everything stopped on drop.
pub struct LambdaStack {
    _s3: S3sFs,
    _moto: Moto,
    watch: Option<Child>,
    proxy: Arc<Proxy>,
    port: u16,
    _runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for LambdaStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaStack")
            .field("port", &self.port)
            .finish()
    }
}

/// What a test may use to configure the functions before they start.
#[derive(Debug)]
pub struct StackSetup {
    /// `WHARF_BLOBS`/`WHARF_META` and credentials of the stack's bucket and table (for a
    /// second process on the same storage, such as an upload lane).
    pub backend_env: Vec<(String, String)>,
    /// `127.0.0.1:<port>` of the API Gateway stand-in (the registry's public address).
    pub host: String,
}

impl LambdaStack {
    /// Starts everything and waits until `GET /v2/` answers through the emulator.
    pub fn start() -> Result<Self> {
        Self::start_with(|_| Ok(Vec::new()))
    }

    /// Like [`LambdaStack::start`], with extra environment for every function, made by
    /// `configure` once the storage and the stand-in's address exist.
    pub fn start_with(
        configure: impl FnOnce(&StackSetup) -> Result<Vec<(String, String)>>,
    ) -> Result<Self> {
        let s3 = S3sFs::start()?;
        let moto = Moto::start()?;
        let env = backend_env(&s3, &moto);
        let dir = tempfile::tempdir()?;
        create_bucket_and_table(&env, &dir.path().join("admin-data"))?;
        // reqwest is built without a default TLS provider; the stand-in speaks plain HTTP, but
        // building a client still needs one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
        let port = listener.local_addr()?.port();
        let extra = configure(&StackSetup {
            backend_env: env.clone(),
            host: format!("127.0.0.1:{port}"),
        })?;
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut build = Command::new("cargo");
        build.current_dir(&workspace).args(["build", "--bins"]);
        for p in FUNCTION_PACKAGES {
            build.args(["-p", p]);
        }
        let status = build.status().context("cargo build of the functions")?;
        if !status.success() {
            bail!("building the functions failed: {status}");
        }
        let watch_port = free_port()?;
        let log = std::fs::File::create(dir.path().join("watch.log"))?;
        let mut watch = Command::new("cargo");
        watch
            .current_dir(&workspace)
            .args([
                "lambda",
                "watch",
                "-A",
                "127.0.0.1",
                "-P",
                &watch_port.to_string(),
            ])
            .env_remove("AWS_CA_BUNDLE")
            .env("WHARF_DATA_DIR", dir.path().join("fn-data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so stopping it also stops the function processes it runs.
            .process_group(0);
        for (k, v) in env.iter().chain(&extra) {
            watch.env(k, v);
        }
        let watch = watch
            .spawn()
            .context("cargo lambda watch (pip install cargo-lambda)")?;
        let proxy = Arc::new(Proxy {
            routes: crate::sam::Routes::load()?,
            emulator: format!("http://127.0.0.1:{watch_port}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            log: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        let stack = LambdaStack {
            _s3: s3,
            _moto: moto,
            watch: Some(watch),
            proxy,
            port,
            _runtime: runtime,
            dir,
        };
        stack.wait_ready()?;
        Ok(stack)
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + FIRST_REQUEST_TIMEOUT;
        loop {
            let ok = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "120",
                ])
                .arg(format!("http://127.0.0.1:{}/v2/", self.port))
                .output()
                // 401: the functions run with authentication.
                .map(|o| o.stdout == b"200" || o.stdout == b"401")
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the emulator never answered /v2/:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `127.0.0.1:<port>` of the API Gateway stand-in.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The emulator's log.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("watch.log")).unwrap_or_default()
    }

    /// Every request forwarded so far.
    pub fn forwarded(&self) -> Vec<Forwarded> {
        self.proxy.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for LambdaStack {
    fn drop(&mut self) {
        if let Some(mut child) = self.watch.take() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    match try_forward(&proxy, request).await {
        Ok(response) => response,
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("{e:#}")))
            .unwrap_or_default(),
    }
}

async fn try_forward(proxy: &Proxy, request: Request) -> Result<Response> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let binary = proxy.routes.binary_for(method.as_str(), &path).to_owned();
    let url = format!("{}/lambda-url/{binary}{path}{query}", proxy.emulator);
    let mut headers = request.headers().clone();
    headers.remove("host");
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY).await?;
    let response = proxy
        .client
        .request(method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    if let Ok(mut log) = proxy.log.lock() {
        log.push(Forwarded {
            method: method.to_string(),
            path,
            binary,
            status: status.as_u16(),
        });
    }
    let mut out_headers = HeaderMap::new();
    for (k, v) in response.headers() {
        out_headers.append(k.clone(), v.clone());
    }
    let bytes = response.bytes().await?;
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    *out.headers_mut() = out_headers;
    Ok(out)
}
