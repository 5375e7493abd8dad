//! [`Wharf`]: the real `wharf serve` binary on a free loopback port with a private data
//! directory, stopped when the handle drops.
//!
//! The binary is not built here: `cargo build -p wharf-server` must run first (Cargo cannot
//! hand one package's binary to another package's tests). `WHARF_BIN` overrides the path.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

/// How long a fresh server may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server may take to exit after SIGTERM: graceful shutdown waits for in-flight
/// requests, and none of ours should be in flight when a test stops the server.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts at the first start: another process may take the free port between our probe and
/// the server's bind.
const START_ATTEMPTS: usize = 3;

/// Log filter for the server: info, plus one debug line per request (method, path, status) so
/// a test can count the requests a client made (see [`Wharf::requests`]).
const LOG_FILTER: &str = "info,wharf::api::middleware=debug";

/// One request line of the server log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Response status.
    pub status: u16,
}

/// Lines of server log printed when the handle drops (shown for failing tests only): the last
/// this many, after at most this many earlier warnings and errors.
const LOG_TAIL_LINES: usize = 60;

/// A running `wharf serve` on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct Wharf {
    bin: PathBuf,
    port: u16,
    data: TempDir,
    log: TempDir,
    child: Option<Child>,
    /// Extra environment for the server (backend URLs, credentials).
    env: Vec<(String, String)>,
    /// Extra `wharf serve` arguments (e.g. `--only uploads`).
    args: Vec<String>,
}

/// The build directory: `CARGO_TARGET_DIR` when set, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        })
}

/// Where the server binary is: `WHARF_BIN`, or `<target dir>/<profile>/wharf`.
pub fn binary_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("WHARF_BIN") {
        return PathBuf::from(bin);
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target_dir().join(profile).join("wharf")
}

fn find_binary() -> Result<PathBuf> {
    let bin = binary_path();
    if !bin.is_file() {
        bail!(
            "the wharf server binary is missing at {}: build it first with \
             `cargo build -p wharf-server` (or point WHARF_BIN at it)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A loopback port nobody listened on a moment ago (another process may still take it first:
/// starters retry).
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0 for a port")?;
    Ok(listener.local_addr()?.port())
}

impl Wharf {
    /// Starts a server on a free port with an empty data directory and waits until it answers.
    pub fn start() -> Result<Self> {
        Self::start_with_env(Vec::new())
    }

    /// Like [`Wharf::start`], with extra environment variables for the server (e.g.
    /// `WHARF_BLOBS`/`WHARF_META` and credentials to run it on cloud backends).
    pub fn start_with_env(env: Vec<(String, String)>) -> Result<Self> {
        Self::start_with_args(Vec::new(), env)
    }

    /// An upload lane: `wharf serve --only uploads` with `env` (which names the bucket and
    /// table it shares with the registry it serves).
    pub fn start_lane(env: Vec<(String, String)>) -> Result<Self> {
        Self::start_with_args(vec!["--only".into(), "uploads".into()], env)
    }

    fn start_with_args(args: Vec<String>, env: Vec<(String, String)>) -> Result<Self> {
        let bin = find_binary()?;
        let data = tempfile::Builder::new().prefix("wharf-data-").tempdir()?;
        let log = tempfile::Builder::new().prefix("wharf-log-").tempdir()?;
        let mut server = Wharf {
            bin,
            port: 0,
            data,
            log,
            child: None,
            env,
            args,
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            server.port = free_port()?;
            let seen = server.logs().len();
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) if port_was_taken(server.logs().get(seen..)) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("server did not start")))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `127.0.0.1:<port>`: the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listening port (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (the same across restarts).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| anyhow!("the server is not running"))
    }

    /// Peak resident set size of the running server so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmHWM line in /proc/{pid}/status"))
    }

    /// Everything the server wrote to stderr and stdout, across restarts.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every request the server logged so far (it logs JSON lines, one per request).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|v| {
                let fields = &v["fields"];
                Some(LoggedRequest {
                    method: fields["method"].as_str()?.to_owned(),
                    path: fields["path"].as_str()?.to_owned(),
                    status: u16::try_from(fields["status"].as_u64()?).ok()?,
                })
            })
            .collect()
    }

    /// Stops the server with SIGTERM and waits for it to exit; fails if it does not exit in
    /// time (it is then killed) or exits unsuccessfully.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("the server is not running"))?;
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed: {sent}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status} after SIGTERM");
                }
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (a crash: nothing is flushed or finished) and waits for it;
    /// [`Wharf::start_again`] brings it back on the same port and data directory.
    pub fn crash(&mut self) -> Result<()> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("the server is not running"))?;
        child.kill().context("SIGKILL")?;
        child.wait()?;
        Ok(())
    }

    /// Stops the server (SIGTERM, clean exit) and starts it again on the same port and data
    /// directory, waiting until it answers.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Starts a server stopped by [`Wharf::stop`] again, on the same port and data directory
    /// (e.g. after another process used the data directory).
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the server is already running");
        }
        self.spawn()
    }

    fn log_path(&self) -> PathBuf {
        self.log.path().join("wharf.log")
    }

    fn spawn(&mut self) -> Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the server log")?;
        writeln!(log, "=== harness: starting wharf on port {} ===", self.port)?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--listen")
            .arg(self.host())
            .arg("--data-dir")
            .arg(self.data.path())
            .args(&self.args)
            .env("WHARF_LOG", LOG_FILTER)
            .env("WHARF_LOG_FORMAT", "json")
            .env("NO_COLOR", "1")
            .env_remove("WHARF_ALLOW_NON_LOOPBACK")
            .env_remove("WHARF_CONFIG")
            .env_remove("WHARF_LISTEN")
            .env_remove("WHARF_DATA_DIR")
            .env_remove("WHARF_BLOBS")
            .env_remove("WHARF_META")
            .env_remove("AWS_CA_BUNDLE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            let child = self
                .child
                .as_mut()
                .ok_or_else(|| anyhow!("the server is not running"))?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "the server exited with {status} before answering\n{}",
                    self.logs()
                );
            }
            // 401 is ready too: a registry with authentication challenges anonymous callers.
            if matches!(probe_v2(addr), Some(200 | 401)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not answer GET /v2/ with 200 or 401 within {READY_TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn port_was_taken(log: Option<&str>) -> bool {
    log.is_some_and(|l| l.contains("Address already in use"))
}

/// `GET /v2/` over a plain socket; the status code, or `None` if nothing answered yet.
fn probe_v2(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let head = String::from_utf8_lossy(&response);
    head.lines().next()?.split_whitespace().nth(1)?.parse().ok()
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail_from = lines.len().saturating_sub(LOG_TAIL_LINES);
    // The cause of a failure is often logged long before the tail: warnings and errors from
    // anywhere in the log come first.
    let earlier: Vec<&str> = lines[..tail_from]
        .iter()
        .copied()
        .filter(|l| l.contains(r#""level":"ERROR""#) || l.contains(r#""level":"WARN""#))
        .take(LOG_TAIL_LINES)
        .collect();
    let mut out = String::new();
    if !earlier.is_empty() {
        out.push_str("(earlier warnings and errors)\n");
        out.push_str(&earlier.join("\n"));
        out.push_str("\n(last lines)\n");
    }
    out.push_str(&lines[tail_from..].join("\n"));
    out
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // libtest captures this and shows it only for a failing test, whether it panicked or
        // returned an error.
        eprintln!(
            "--- last server log lines (port {}) ---\n{}",
            self.port,
            log_tail(&self.log_path())
        );
    }
}
