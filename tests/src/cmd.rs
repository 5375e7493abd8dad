//! Running the real clients (skopeo, podman, curl, python) as child processes.
//!
//! Every command runs under coreutils `timeout`, so a hung client fails its test instead of
//! hanging the suite, and without `AWS_CA_BUNDLE`, which this machine sets and which some
//! clients choke on. A failure is reported with the full command line and both output streams.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a client command may run when the test does not say otherwise: generous for a
/// loaded 2-core machine, short enough that a hang is noticed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Exit status `timeout` reports when it had to stop the command.
const TIMED_OUT: i32 = 124;

/// A command line under construction; run it with [`Cmd::run`] or [`Cmd::output`].
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<PathBuf>,
    timeout: Duration,
}

impl Cmd {
    /// A command running `program` (looked up in `PATH`).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the child in `dir`.
    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// Feeds the file at `path` to the child's standard input (default: none).
    pub fn stdin_file(mut self, path: &Path) -> Self {
        self.stdin = Some(path.to_owned());
        self
    }

    /// Stops the child (and fails) after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The `timeout …` command line that runs this command.
    fn command(&self) -> Result<Command> {
        let mut command = Command::new("timeout");
        command
            .arg("--kill-after=10s")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .arg(&self.program)
            .args(&self.args)
            .env_remove("AWS_CA_BUNDLE")
            .stdin(match &self.stdin {
                Some(path) => Stdio::from(
                    std::fs::File::open(path)
                        .with_context(|| format!("opening {}", path.display()))?,
                ),
                None => Stdio::null(),
            });
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        Ok(command)
    }

    /// Starts the child in the background with both output streams piped, for a test that
    /// talks to it while it runs. It still stops after the timeout (`timeout` is the direct
    /// child: stop it with SIGTERM, which it forwards, rather than SIGKILL).
    pub fn spawn(&self) -> Result<Child> {
        self.command()?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting `{}`", self.display()))
    }

    /// Runs to completion and returns its output, whatever the exit status (but a timeout is an
    /// error).
    pub fn output(&self) -> Result<Output> {
        let started = Instant::now();
        let output = self
            .command()?
            .output()
            .with_context(|| format!("starting `{}`", self.display()))?;
        if output.status.code() == Some(TIMED_OUT) {
            bail!(
                "`{}` timed out after {:?}\n{}",
                self.display(),
                started.elapsed(),
                streams(&output)
            );
        }
        Ok(output)
    }

    /// Runs to completion and fails unless the exit status is success.
    pub fn run(&self) -> Result<Output> {
        let output = self.output()?;
        if !output.status.success() {
            bail!(
                "`{}` failed with {}\n{}",
                self.display(),
                output.status,
                streams(&output)
            );
        }
        Ok(output)
    }

    /// Runs to completion, fails unless successful, and returns stdout as text.
    pub fn stdout(&self) -> Result<String> {
        let output = self.run()?;
        String::from_utf8(output.stdout)
            .with_context(|| format!("stdout of `{}` is not UTF-8", self.display()))
    }
}

/// Both output streams of a finished command, for error messages.
pub fn streams(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}
