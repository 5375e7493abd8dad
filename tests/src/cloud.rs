//! The S3- and DynamoDB-compatible servers the cloud backends are tested against, each started
//! on a free loopback port with a private directory and killed when its handle drops:
//! [`S3sFs`] (s3s-fs: S3 on a directory, checks SigV4 and presigned URLs) and [`Moto`]
//! (moto_server: S3 operations s3s-fs lacks, and DynamoDB with transactions), optionally behind
//! [`ConflictProxy`] (cancels a share of DynamoDB writes as real DynamoDB does under contention)
//! or [`S3Spy`] (logs every S3 request, to count what an operation costs the store).
//! [`Cloud`] runs `wharf serve` on them. Install them with `tests/run.sh` (see
//! ../shared/TESTING.md).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::Wharf;
use crate::cmd::Cmd;
use crate::server::free_port;

/// Access key both servers accept (moto accepts any; s3s-fs is started with this one).
pub const ACCESS_KEY: &str = "wharftest";
/// Its secret.
pub const SECRET_KEY: &str = "wharftestsecret";
/// Region the tests name.
pub const REGION: &str = "us-east-1";

/// How long a server may take to accept connections (moto_server takes about a second).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A child server process on `127.0.0.1:<port>`, killed on drop.
#[derive(Debug)]
struct Server {
    name: &'static str,
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    program: String,
    args: Vec<String>,
}

impl Server {
    /// Spawns `program` with `args(port, dir)`, logging to a file in its directory, and waits
    /// until the port accepts connections.
    fn start(
        name: &'static str,
        program: &str,
        args: impl Fn(u16, &std::path::Path) -> Vec<String>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wharf-{name}-"))
            .tempdir()?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let port = free_port()?;
        let args = args(port, &dir.path().join("data"));
        let mut server = Server {
            name,
            port,
            child: None,
            dir,
            program: program.to_owned(),
            args,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Spawns the program (again) with the same port, directory and arguments, appending to
    /// its log, and waits until it listens.
    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}: is it installed? (bash tests/run.sh installs it)",
                    self.program
                )
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Kills the process (SIGKILL: no chance to finish anything) and waits for it.
    fn crash(&mut self) -> Result<()> {
        let mut child = self.child.take().context("the server is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    fn signal(&self, signal: &str) -> Result<()> {
        let child = self.child.as_ref().context("the server is not running")?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -{signal} failed: {status}");
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited with {status} before answering:\n{}",
                    self.name,
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen within {READY_TIMEOUT:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// s3s-fs: S3 on a directory, with SigV4 checked against [`ACCESS_KEY`]/[`SECRET_KEY`].
#[derive(Debug)]
pub struct S3sFs(Server);

impl S3sFs {
    /// Starts s3s-fs on a free port over an empty directory.
    pub fn start() -> Result<Self> {
        Server::start("s3s-fs", "s3s-fs", |port, dir| {
            vec![
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--access-key".into(),
                ACCESS_KEY.into(),
                "--secret-key".into(),
                SECRET_KEY.into(),
                dir.display().to_string(),
            ]
        })
        .map(S3sFs)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.0.endpoint()
    }

    /// The directory it stores objects in (`<dir>/<bucket>/<key>`).
    pub fn root(&self) -> PathBuf {
        self.0.dir.path().join("data")
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn crash(&mut self) -> Result<()> {
        self.0.crash()
    }

    /// Starts it again after [`S3sFs::crash`], on the same port and directory (objects kept).
    pub fn start_again(&mut self) -> Result<()> {
        self.0.spawn()
    }
}

/// moto's server: S3 and DynamoDB in memory (no signature checks), one request at a time (see
/// `fixtures/moto_serialized.py`: moto_server's parallel threads lose acknowledged writes when a
/// DynamoDB transaction fails).
#[derive(Debug)]
pub struct Moto(Server);

impl Moto {
    /// Starts moto's server on a free port.
    pub fn start() -> Result<Self> {
        Server::start("moto", "python3", |port, _| {
            vec![
                concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/moto_serialized.py").into(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ]
        })
        .map(Moto)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.0.endpoint()
    }

    /// Freezes it (SIGSTOP): connections are accepted by the kernel but never answered, as in
    /// an outage. moto keeps its data in memory, so a freeze is the outage it can survive.
    pub fn freeze(&self) -> Result<()> {
        self.0.signal("STOP")
    }

    /// Lets it run again after [`Moto::freeze`].
    pub fn thaw(&self) -> Result<()> {
        self.0.signal("CONT")
    }
}

/// How often a [`ConflictProxy`] turns DynamoDB writes down, each a share in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConflictShare {
    /// `TransactWriteItems` cancelled with a `TransactionConflict` reason.
    pub transactions: f64,
    /// `PutItem`/`UpdateItem`/`DeleteItem` rejected with `TransactionConflictException`.
    pub writes: f64,
}

/// What a [`ConflictProxy`] has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConflictCounts {
    /// `TransactWriteItems` requests seen.
    pub transact_seen: u64,
    /// Of those, cancelled.
    pub transact_cancelled: u64,
    /// Single-item writes seen.
    pub write_seen: u64,
    /// Of those, rejected.
    pub write_rejected: u64,
    /// The item (`pk=…|sk=…`) the most `TransactWriteItems` touched, and how many did.
    pub hottest: Option<(String, u64)>,
}

/// `fixtures/dynamodb_conflicts.py` in front of a DynamoDB endpoint: cancels a share of writes
/// with the error bodies real DynamoDB sends when another transaction holds an item, passes
/// everything else through. moto (run one request at a time) never contends by itself.
#[derive(Debug)]
pub struct ConflictProxy(Server);

impl ConflictProxy {
    /// Starts the proxy on a free port in front of `upstream` (`http://127.0.0.1:<port>`).
    pub fn start(upstream: &str, share: ConflictShare) -> Result<Self> {
        let upstream = upstream.to_owned();
        Server::start("dynamodb-conflicts", "python3", move |port, _| {
            vec![
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fixtures/dynamodb_conflicts.py"
                )
                .into(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "--upstream".into(),
                upstream.clone(),
                "--transact-share".into(),
                share.transactions.to_string(),
                "--write-share".into(),
                share.writes.to_string(),
            ]
        })
        .map(ConflictProxy)
    }

    /// `http://127.0.0.1:<port>`: point the DynamoDB client here.
    pub fn endpoint(&self) -> String {
        self.0.endpoint()
    }

    /// What it has cancelled and rejected so far.
    pub fn counts(&self) -> Result<ConflictCounts> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.0.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        std::io::Write::write_all(
            &mut stream,
            b"GET /__conflicts HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )?;
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response)?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .context("a response without a body")?;
        let v: serde_json::Value =
            serde_json::from_str(body).with_context(|| format!("counts: {response}"))?;
        let count = |k: &str| v[k].as_u64().with_context(|| format!("no {k} in {body}"));
        Ok(ConflictCounts {
            transact_seen: count("transact_seen")?,
            transact_cancelled: count("transact_cancelled")?,
            write_seen: count("write_seen")?,
            write_rejected: count("write_rejected")?,
            hottest: v["hottest"]["key"]
                .as_str()
                .map(|k| (k.to_owned(), v["hottest"]["count"].as_u64().unwrap_or(0))),
        })
    }
}

/// Bucket the cloud stack creates.
pub const BUCKET: &str = "wharf-e2e";
/// Table the cloud stack creates.
pub const TABLE: &str = "wharf-e2e";

/// The environment that points Wharf (or a function) at `s3` and `moto`.
pub fn backend_env(s3: &S3sFs, moto: &Moto) -> Vec<(String, String)> {
    backend_env_at(s3, &moto.endpoint())
}

/// [`backend_env`] with DynamoDB at `dynamodb` (moto, or a [`ConflictProxy`] in front of it).
pub fn backend_env_at(s3: &S3sFs, dynamodb: &str) -> Vec<(String, String)> {
    vec![
        (
            "WHARF_BLOBS".to_owned(),
            format!("s3://{BUCKET}?endpoint={}&region={REGION}", s3.endpoint()),
        ),
        (
            "WHARF_META".to_owned(),
            format!("dynamodb://{TABLE}?endpoint={dynamodb}&region={REGION}"),
        ),
        ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), SECRET_KEY.to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
    ]
}

/// `wharf admin create-bucket` and `create-table` under `env`.
pub fn create_bucket_and_table(env: &[(String, String)], data_dir: &std::path::Path) -> Result<()> {
    for admin in ["create-bucket", "create-table"] {
        let mut cmd = Cmd::new(crate::server::binary_path())
            .args(["admin", admin])
            .env("WHARF_DATA_DIR", data_dir)
            .timeout(Duration::from_secs(60));
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        cmd.run().with_context(|| format!("wharf admin {admin}"))?;
    }
    Ok(())
}

/// How [`Cloud::start_with`] sets the stack up.
#[derive(Debug, Clone, Default)]
pub struct CloudOptions {
    /// Extra environment for Wharf.
    pub env: Vec<(String, String)>,
    /// Put a [`ConflictProxy`] with these shares between Wharf and moto's DynamoDB.
    pub conflicts: Option<ConflictShare>,
}

/// `wharf serve` on S3 (s3s-fs, presigned redirects) and DynamoDB (moto).
#[derive(Debug)]
pub struct Cloud {
    /// The S3 server.
    pub s3: S3sFs,
    /// The DynamoDB server.
    pub moto: Moto,
    /// The fault-injecting proxy Wharf reaches DynamoDB through, when asked for.
    pub conflicts: Option<ConflictProxy>,
    /// The registry.
    pub wharf: Wharf,
}

impl Cloud {
    /// Starts both servers, creates the bucket and table with `wharf admin`, then starts Wharf.
    pub fn start() -> Result<Self> {
        Cloud::start_with(CloudOptions::default())
    }

    /// [`Cloud::start`], with `extra` environment for Wharf.
    pub fn start_with_env(extra: Vec<(String, String)>) -> Result<Self> {
        Cloud::start_with(CloudOptions {
            env: extra,
            ..CloudOptions::default()
        })
    }

    /// [`Cloud::start`] as `options` say.
    pub fn start_with(options: CloudOptions) -> Result<Self> {
        let s3 = S3sFs::start()?;
        let moto = Moto::start()?;
        // The table is made directly on moto: the proxy is for Wharf's traffic.
        create_bucket_and_table(
            &backend_env(&s3, &moto),
            &s3.0.dir.path().join("admin-data"),
        )?;
        let conflicts = options
            .conflicts
            .map(|share| ConflictProxy::start(&moto.endpoint(), share))
            .transpose()?;
        let dynamodb = conflicts
            .as_ref()
            .map_or_else(|| moto.endpoint(), ConflictProxy::endpoint);
        let mut env = backend_env_at(&s3, &dynamodb);
        env.extend(options.env);
        let wharf = Wharf::start_with_env(env)?;
        let logs = wharf.logs();
        if !(logs.contains(&format!("s3:{BUCKET}")) && logs.contains(&format!("dynamodb:{TABLE}")))
        {
            bail!("wharf did not report S3 + DynamoDB storage:\n{logs}");
        }
        Ok(Cloud {
            s3,
            moto,
            conflicts,
            wharf,
        })
    }
}

/// How the storage backends reach a test server at `url`: its address, the test region and the
/// test credentials (for the contract and GC tests that link the registry library).
pub fn endpoint(url: String) -> wharf::storage::aws::Endpoint {
    wharf::storage::aws::Endpoint {
        url: Some(url),
        region: Some(REGION.to_owned()),
        credentials: Some(wharf::storage::aws::StaticCredentials {
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
        }),
    }
}

/// A request [`S3Spy`] saw: method, path with query, and whether it asked the store to copy
/// (`x-amz-copy-source`: `CopyObject`, `UploadPartCopy`).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The request names a copy source.
    pub copies: bool,
    /// When its head had arrived.
    pub at: Instant,
}

/// A loopback TCP proxy in front of an S3 server that logs every request it forwards, bytes
/// unchanged (so SigV4 signatures, which cover the `Host` the client used, still verify).
/// Bodies must carry `Content-Length` (as Wharf's S3 client sends them): a chunked request
/// body fails the request, so nothing passes unseen.
#[derive(Debug)]
pub struct S3Spy {
    addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Spy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Result<Self> {
        let upstream = upstream
            .strip_prefix("http://")
            .context("an http:// upstream")?
            .to_owned();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, seen) = (upstream.clone(), seen.clone());
                tokio::spawn(async move {
                    if let Err(e) = spy_connection(client, &upstream, &seen).await {
                        eprintln!("S3Spy: {e:#}");
                    }
                });
            }
        });
        Ok(S3Spy { addr, log, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the requests seen since the last call.
    pub fn take(&self) -> Vec<SeenRequest> {
        std::mem::take(&mut *self.log.lock().expect("spy log"))
    }
}

impl Drop for S3Spy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one client connection request by request, logging each head.
async fn spy_connection(
    client: tokio::net::TcpStream,
    upstream: &str,
    seen: &std::sync::Mutex<Vec<SeenRequest>>,
) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpStream::connect(upstream).await?;
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut reader = tokio::io::BufReader::new(client_read);
    loop {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if reader.read_until(b'\n', &mut head).await? == 0 {
                back.abort();
                return Ok(());
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, target) = (
            first.next().unwrap_or_default(),
            first.next().unwrap_or_default(),
        );
        let mut length = 0u64;
        let mut copies = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            match name.as_str() {
                "content-length" => length = value.trim().parse()?,
                "transfer-encoding" => bail!("S3Spy does not forward chunked bodies"),
                "x-amz-copy-source" => copies = true,
                _ => {}
            }
        }
        seen.lock().expect("spy log").push(SeenRequest {
            method: method.to_owned(),
            target: target.to_owned(),
            copies,
            at: Instant::now(),
        });
        server_write.write_all(&head).await?;
        let mut body = (&mut reader).take(length);
        let sent = tokio::io::copy(&mut body, &mut server_write).await?;
        ensure!(
            sent == length,
            "the client sent {sent} of {length} body bytes"
        );
    }
}
