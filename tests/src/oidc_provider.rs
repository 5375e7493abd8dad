//! [`OidcProvider`]: a real third-party OpenID provider — npm `oidc-provider`, OpenID Certified —
//! started from `tests/fixtures/oidc-provider/` on a free loopback port, and a person who
//! approves device logins in its web pages ([`OidcProvider::approve_device_login`]).
//!
//! The provider offers the device authorization grant (RFC 8628) to one public client,
//! [`CLIENT_ID`], and signs ID tokens with RS256 for that audience. Any login name is an account:
//! its `sub` is the name and its `email` is [`email_of`] the name. Its npm packages are installed
//! on first use (`npm ci`, needs the npm registry once); `tests/run.sh` does the same up front.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::browser::{Browser, Form, Page};
use crate::curl::Request;
use crate::npm;
use crate::server::free_port;

/// The OAuth client the provider registers for `wharf login`; also the ID tokens' audience.
pub const CLIENT_ID: &str = "wharf-cli";

/// How long a fresh provider may take to answer its discovery document.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at starting: another process may take the free port before the provider binds it.
const START_ATTEMPTS: usize = 3;

/// Pages a device login may take: code entry, confirmation, sign-in, consent, success.
const MAX_PAGES: usize = 8;

/// What the provider's last page says once a device is approved.
const SUCCESS_TEXT: &str = "Sign-in Success";

/// The address the provider vouches for, for login name `account`.
pub fn email_of(account: &str) -> String {
    format!("{account}@example.test")
}

/// A running provider, stopped when the handle drops.
#[derive(Debug)]
pub struct OidcProvider {
    port: u16,
    child: Option<Child>,
    log: TempDir,
}

impl OidcProvider {
    /// Installs the provider if needed, starts it and waits until its discovery document
    /// answers.
    pub fn start() -> Result<Self> {
        let dir = npm::fixture(
            "oidc-provider",
            "oidc-provider",
            "the OpenID provider's npm packages (is Node.js 20.19+ installed?)",
        )?;
        let log = tempfile::Builder::new().prefix("wharf-oidc-").tempdir()?;
        let mut provider = OidcProvider {
            port: 0,
            child: None,
            log,
        };
        for attempt in 1..=START_ATTEMPTS {
            provider.port = free_port()?;
            match provider.spawn(&dir) {
                Ok(()) => return Ok(provider),
                Err(e) if attempt < START_ATTEMPTS && provider.logs().contains("EADDRINUSE") => {
                    eprintln!("port {} was taken, retrying: {e:#}", provider.port);
                }
                Err(e) => return Err(e),
            }
        }
        bail!("the OpenID provider did not start")
    }

    /// The issuer URL, exactly as in its tokens' `iss`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the provider wrote to stdout and stderr.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Acts as the person at a browser: opens `link` (the `verification_uri_complete` or
    /// `verification_uri` that `wharf login` printed), enters or checks `user_code`, confirms
    /// the device, signs in as `account` and grants consent, then checks the success page.
    pub fn approve_device_login(&self, link: &str, user_code: &str, account: &str) -> Result<()> {
        let browser = Browser::new()?;
        let mut page = browser.get(link)?;
        for _ in 0..MAX_PAGES {
            if page.status != 200 {
                bail!("the provider refused a page: {}", describe(&page));
            }
            let Some(mut form) = page.form() else {
                if page.body.contains(SUCCESS_TEXT) {
                    return Ok(());
                }
                bail!("a page is neither a form nor success: {}", describe(&page));
            };
            fill_in(&mut form, user_code, account)
                .with_context(|| format!("filling in {}", describe(&page)))?;
            page = browser.submit(&form)?;
        }
        bail!(
            "no success page after {MAX_PAGES} pages; last:\n{}",
            describe(&page)
        )
    }

    fn log_path(&self) -> PathBuf {
        self.log.path().join("oidc-provider.log")
    }

    fn spawn(&mut self, dir: &Path) -> Result<()> {
        let log = File::create(self.log_path())?;
        let child = Command::new("node")
            .arg("server.mjs")
            .arg(self.port.to_string())
            .arg(CLIENT_ID)
            .current_dir(dir)
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting `node server.mjs` (is Node.js installed?)")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("the OpenID provider exited with {status}:\n{}", self.logs());
            }
            if let Ok(reply) = Request::get(&url).send()
                && reply.status == 200
                && reply
                    .json()
                    .is_ok_and(|doc| doc["issuer"] == self.issuer().as_str())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the OpenID provider did not serve {url} within {READY_TIMEOUT:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Fills what a person would: the user code (only where it is asked for: a code already on the
/// page must be the one the terminal showed), the login name and any password.
fn fill_in(form: &mut Form, user_code: &str, account: &str) -> Result<()> {
    if let Some(shown) = form.value("user_code")
        && !shown.is_empty()
        && shown != user_code
    {
        bail!("the page asks to confirm code {shown:?}, but the terminal showed {user_code:?}");
    }
    let blanks: Vec<String> = form.blanks().map(|i| i.name.clone()).collect();
    for name in blanks {
        let value = match name.as_str() {
            "user_code" => user_code,
            "login" => account,
            // The development login pages accept any password.
            "password" => "correct horse battery staple",
            other => bail!("a form asks for {other:?}, which this person does not know"),
        };
        form.fill(&name, value)?;
    }
    Ok(())
}

/// A page, for error messages.
fn describe(page: &Page) -> String {
    format!("{} ({}):\n{}", page.url, page.status, page.body)
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shown by libtest for failing tests only.
        eprintln!("--- OpenID provider log ---\n{}", self.logs().trim_end());
    }
}
