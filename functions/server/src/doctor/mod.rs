//! `wharf doctor URL`: a smoke test of a live deployment, run after `sam deploy` with the same
//! identity `wharf cp` uses. It checks over HTTP what no local test can prove about the real
//! API Gateway, Lambda, DynamoDB and object store in front of the user: the challenge arrives
//! intact and names an https realm, upload POSTs reach the uploads function at name depths 1
//! and 5 (with and without the trailing slash), a blob HEAD keeps its `Content-Length`, a blob
//! GET answers 307 to the object store with the right bytes, a direct upload of wrong bytes is
//! never published, and ten concurrent pushes into one repository all succeed. Then it deletes
//! what it pushed.
//!
//! Layer rule: a client of the HTTP API only. It talks through `wharf cp`'s [`Repository`]
//! (token flow, requests carrying the token, pushes) and resolves the identity exactly as
//! `wharf cp` does; it never links a storage backend or the registry's handlers. Every printed
//! reason passes through [`report::redact`].

use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf::oci::RepoName;
use wharf_server::client::login::registry_base;
use wharf_server::client::registry_host;

use crate::cp::progress::Meter;
use crate::cp::registry::{Credentials, Repository};
use report::{Check, Line, Verdict};

mod blobs;
mod probes;
mod pushes;
pub mod report;

/// How long one check may take by default: a cold function start plus a few round trips on a
/// slow link, with room to spare; a hung gateway must not hang the doctor.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Name depth of the deepest probe: the template writes its routes out per depth up to five
/// (ARCHITECTURE.md §5, "Routing"), so depth 5 is the last route API Gateway must know.
const DEEPEST: usize = 5;

/// `wharf doctor` arguments.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The registry, e.g. `https://abc123.execute-api.eu-west-1.amazonaws.com`.
    pub registry: String,
    /// Credentials, `USER:SECRET` (default: the ambient OIDC identity, else the login stored
    /// by `wharf login`), as `wharf cp --dest-creds`.
    #[arg(
        long,
        alias = "dest-creds",
        env = "WHARF_DEST_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// Repository to push into and clean up (default `wharf-doctor/<random>`). Its first path
    /// component is the depth-1 probe and it is extended to depth 5 for the deep probe, so the
    /// identity needs pull, push and delete on that component and below it (by default
    /// `wharf-doctor` and `wharf-doctor/**`).
    #[arg(long)]
    pub repository: Option<String>,
    /// Seconds each check may take.
    #[arg(long, default_value_t = DEFAULT_CHECK_TIMEOUT.as_secs())]
    pub timeout: u64,
}

/// The repositories the doctor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    /// Where pushes go (and what cleanup empties).
    main: String,
    /// The first component of `main`: the depth-1 probe.
    depth1: String,
    /// `main` cut or extended to [`DEEPEST`] components: the deep probe.
    deepest: String,
}

impl Names {
    fn new(main: Option<&str>) -> Result<Names> {
        let main = match main {
            Some(m) => m.to_owned(),
            None => format!("wharf-doctor/{:08x}", rand::random::<u32>()),
        };
        RepoName::parse(&main).with_context(|| format!("invalid repository {main:?}"))?;
        let mut parts: Vec<String> = main.split('/').map(str::to_owned).collect();
        let depth1 = parts[0].clone();
        parts.truncate(DEEPEST);
        for depth in parts.len() + 1..=DEEPEST {
            parts.push(format!("d{depth}"));
        }
        let deepest = parts.join("/");
        RepoName::parse(&deepest).with_context(|| format!("invalid repository {deepest:?}"))?;
        Ok(Names {
            main,
            depth1,
            deepest,
        })
    }
}

/// Everything the checks share.
struct Doctor {
    /// Follows no redirect (the 307 is what is checked) and gives up per request after the
    /// check timeout. It also carries the doctor's requests to the object store, never with a
    /// token.
    http: reqwest::Client,
    /// The registry's base URL.
    base: String,
    names: Names,
    main: Repository,
    depth1: Repository,
    deepest: Repository,
    /// What was pushed, for cleanup.
    pushed: std::sync::Mutex<pushes::Pushed>,
    scratch: tempfile::TempDir,
}

/// A progress line on stderr for the running check (hidden when stderr is no terminal),
/// cleared before the check's result is printed, so results and progress never interleave.
fn progress(check: Check) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {prefix} {bytes:>10} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(check.name());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `wharf cp`'s byte meter over the check's progress line.
fn meter(bar: &ProgressBar) -> Meter {
    Meter { bar: bar.clone() }
}

/// Runs `check` under the time limit; its progress line is cleared before the result prints.
async fn timed(check: Check, limit: Duration, run: impl AsyncFnOnce(&ProgressBar) -> Line) -> Line {
    let bar = progress(check);
    let line = match tokio::time::timeout(limit, run(&bar)).await {
        Ok(line) => line,
        Err(_) => Line::fail(
            check,
            format!("no result within {} s (--timeout)", limit.as_secs()),
        ),
    };
    bar.finish_and_clear();
    line
}

/// Runs `wharf doctor`; the error (exit 1) is the failed verdict.
#[expect(clippy::print_stdout, reason = "the report is the command's output")]
pub async fn run(args: DoctorArgs) -> Result<()> {
    let limit = Duration::from_secs(args.timeout.max(1));
    let base = registry_base(&args.registry);
    let names = Names::new(args.repository.as_deref())?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(limit)
        .build()?;
    println!("wharf doctor: {base}, repository {}", names.main);
    let mut lines = Vec::new();
    let mut report = |line: Line| {
        println!("{line}");
        lines.push(line);
    };
    report(
        timed(Check::Challenge, limit, async |_| {
            probes::challenge(&http, &base).await
        })
        .await,
    );
    let bar = progress(Check::Token);
    let connected = tokio::time::timeout(
        limit,
        Doctor::connect(http, &base, names, args.creds.as_deref()),
    )
    .await;
    bar.finish_and_clear();
    let doctor = match connected {
        Ok(Ok(doctor)) => {
            report(Line::ok(
                Check::Token,
                format!(
                    "the identity was accepted for {}, {} and {}",
                    doctor.names.main, doctor.names.depth1, doctor.names.deepest
                ),
            ));
            Some(doctor)
        }
        Ok(Err(e)) => {
            report(Line::fail(Check::Token, format!("{e:#}")));
            None
        }
        Err(_) => {
            report(Line::fail(
                Check::Token,
                format!("no token within {} s (--timeout)", limit.as_secs()),
            ));
            None
        }
    };
    match &doctor {
        Some(d) => {
            report(
                timed(Check::UploadsRoute, limit, async |_| {
                    probes::uploads_route(d).await
                })
                .await,
            );
            report(
                timed(Check::BlobPush, limit, async |bar| {
                    blobs::push(d, bar).await
                })
                .await,
            );
            report(timed(Check::BlobHead, limit, async |_| blobs::head(d).await).await);
            report(timed(Check::BlobGet, limit, async |bar| blobs::get(d, bar).await).await);
            report(
                timed(Check::DirectWrongBytes, limit, async |_| {
                    blobs::direct_wrong_bytes(d).await
                })
                .await,
            );
            report(
                timed(Check::ConcurrentPushes, limit, async |bar| {
                    pushes::concurrent(d, bar).await
                })
                .await,
            );
            report(timed(Check::Cleanup, limit, async |_| pushes::cleanup(d).await).await);
        }
        None => {
            for check in [
                Check::UploadsRoute,
                Check::BlobPush,
                Check::BlobHead,
                Check::BlobGet,
                Check::DirectWrongBytes,
                Check::ConcurrentPushes,
                Check::Cleanup,
            ] {
                report(Line::skipped(check, "no registry token"));
            }
        }
    }
    let verdict = Verdict(&lines);
    println!("{verdict}");
    if verdict.passed() {
        Ok(())
    } else {
        anyhow::bail!(
            "the deployment failed {} check(s)",
            lines
                .iter()
                .filter(|l| l.outcome == report::Outcome::Fail)
                .count()
        )
    }
}

impl Doctor {
    /// Resolves the identity as `wharf cp` does and gets a token for each repository.
    async fn connect(
        http: reqwest::Client,
        base: &str,
        names: Names,
        creds: Option<&str>,
    ) -> Result<Doctor> {
        let credentials = crate::cp::resolve(&registry_host(base), creds, true).await?;
        if matches!(credentials, Credentials::Anonymous) {
            anyhow::bail!(
                "no identity: pass --creds USER:SECRET, run where an OIDC token is ambient \
                 (GitHub Actions, WHARF_TOKEN_FILE), or `wharf login` first"
            );
        }
        let main = Repository::connect(
            http.clone(),
            base,
            &names.main,
            &credentials,
            "pull,push,delete",
        )
        .await?;
        let depth1 =
            Repository::connect(http.clone(), base, &names.depth1, &credentials, "pull,push")
                .await?;
        let deepest = Repository::connect(
            http.clone(),
            base,
            &names.deepest,
            &credentials,
            "pull,push",
        )
        .await?;
        Ok(Doctor {
            http,
            base: base.to_owned(),
            names,
            main,
            depth1,
            deepest,
            pushed: Default::default(),
            scratch: tempfile::Builder::new().prefix("wharf-doctor-").tempdir()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_reach_depth_one_and_five() {
        let n = Names::new(Some("wharf-doctor/ci")).expect("names");
        assert_eq!(n.depth1, "wharf-doctor");
        assert_eq!(n.deepest, "wharf-doctor/ci/d3/d4/d5");
        let n = Names::new(Some("a/b/c/d/e/f")).expect("names");
        assert_eq!((n.depth1.as_str(), n.deepest.as_str()), ("a", "a/b/c/d/e"));
        let n = Names::new(None).expect("names");
        assert!(n.main.starts_with("wharf-doctor/"), "{n:?}");
        assert_eq!(n.deepest.split('/').count(), DEEPEST);
        assert!(Names::new(Some("Not/Valid")).is_err());
    }
}
