//! [`LoginProcess`]: `wharf login` running in the background the way a person runs it in a
//! terminal: the test reads the link and code it prints ([`LoginProcess::prompt`]), approves the
//! login elsewhere, then waits for it to finish ([`LoginProcess::wait`]).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::cmd::Cmd;

/// How `wharf login` introduces the page to open.
const LINK_PREFIX: &str = "To log in, open ";

/// How `wharf login` introduces the code to check on that page.
const CODE_PREFIX: &str = "and confirm the code ";

/// How long to wait for the next line of a finished (or stuck) login's stderr.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a stopped login may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What `wharf login` asks the person to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The page to open (with the code in it, when the provider offers such a link).
    pub link: String,
    /// The code the page must show.
    pub user_code: String,
}

/// A running `wharf login`.
#[derive(Debug)]
pub struct LoginProcess {
    child: Option<Child>,
    command: String,
    stderr_lines: Receiver<String>,
    stderr: Vec<String>,
    stdout: Option<JoinHandle<String>>,
}

impl LoginProcess {
    /// Starts `cmd` (a `wharf login …` command line) in the background.
    pub fn start(cmd: &Cmd) -> Result<Self> {
        let mut child = cmd.spawn()?;
        let err = child.stderr.take().context("no stderr pipe")?;
        let mut out = child.stdout.take().context("no stdout pipe")?;
        let (tx, stderr_lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        Ok(LoginProcess {
            child: Some(child),
            command: cmd.display(),
            stderr_lines,
            stderr: Vec::new(),
            stdout: Some(stdout),
        })
    }

    /// Waits up to `timeout` until the link and the code have been printed.
    pub fn prompt(&mut self, timeout: Duration) -> Result<Prompt> {
        let deadline = Instant::now() + timeout;
        loop {
            let link = self.printed(LINK_PREFIX);
            let code = self.printed(CODE_PREFIX);
            if let (Some(link), Some(user_code)) = (link, code) {
                return Ok(Prompt { link, user_code });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => self.stderr.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    bail!("no login prompt within {timeout:?}\n{}", self.transcript())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!(
                        "`wharf login` ended without a prompt\n{}",
                        self.transcript()
                    )
                }
            }
        }
    }

    /// Waits up to `timeout` for the login to exit, and fails unless it succeeded; returns
    /// everything it printed on stderr.
    pub fn wait(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            let child = self
                .child
                .as_mut()
                .ok_or_else(|| anyhow!("the login is no longer running"))?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                break status;
            }
            if Instant::now() > deadline {
                self.stop();
                let transcript = self.transcript();
                bail!(
                    "`{}` did not finish within {timeout:?}\n{transcript}",
                    self.command
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The child is gone, so its pipes close and the readers finish.
        self.drain_stderr();
        if !status.success() {
            let transcript = self.transcript();
            bail!("`{}` failed with {status}\n{transcript}", self.command);
        }
        Ok(self.stderr.join("\n"))
    }

    /// The rest of the first stderr line starting with `prefix`.
    fn printed(&self, prefix: &str) -> Option<String> {
        self.stderr
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
    }

    /// Collects the stderr lines printed so far, waiting briefly for the rest.
    fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr_lines.recv_timeout(DRAIN_TIMEOUT) {
            self.stderr.push(line);
        }
    }

    fn transcript(&mut self) -> String {
        self.drain_stderr();
        // Joining a reader whose process still runs would wait for it.
        let stdout = match self.stdout.take_if(|h| h.is_finished()) {
            Some(h) => h.join().unwrap_or_default(),
            None => "(not closed yet)".to_owned(),
        };
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            stdout.trim_end(),
            self.stderr.join("\n")
        )
    }

    /// Stops a still running login: SIGTERM to `timeout`, which forwards it; SIGKILL if that
    /// is not enough.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for LoginProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
