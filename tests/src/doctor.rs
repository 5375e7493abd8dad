//! Running `wharf doctor` against a test registry and reading its report: one line per check
//! (`<check name padded> <ok|FAIL|skipped>: <reason>`), then `verdict: PASS|FAIL (…)`.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd::Cmd;
use crate::server::binary_path;

/// The checks, in the order the doctor prints them.
pub const CHECKS: [&str; 9] = [
    "challenge",
    "token",
    "uploads route",
    "blob push",
    "blob HEAD",
    "blob GET redirect",
    "direct upload, wrong bytes",
    "concurrent pushes",
    "cleanup",
];

/// What one doctor run printed.
#[derive(Debug)]
pub struct Report {
    /// `(check, outcome, reason)` per check line.
    pub lines: Vec<(String, String, String)>,
    /// The verdict line.
    pub verdict: String,
    /// Whether the doctor exited 0.
    pub success: bool,
    /// Both streams, for messages and secrecy checks.
    pub output: String,
}

impl Report {
    /// The outcome and reason of `check`.
    pub fn get(&self, check: &str) -> Result<(&str, &str)> {
        self.lines
            .iter()
            .find(|(c, _, _)| c == check)
            .map(|(_, o, r)| (o.as_str(), r.as_str()))
            .with_context(|| format!("no line for {check:?} in\n{}", self.output))
    }

    /// Asserts each check's outcome (`ok`, `FAIL`, `skipped`), and that every check printed
    /// exactly one line.
    pub fn expect(&self, outcomes: &[(&str, &str)]) -> Result<()> {
        for check in CHECKS {
            let n = self.lines.iter().filter(|(c, _, _)| c == check).count();
            if n != 1 {
                bail!("{n} lines for {check:?}:\n{}", self.output);
            }
        }
        for (check, want) in outcomes {
            let (got, reason) = self.get(check)?;
            if got != *want {
                bail!(
                    "{check}: {got} ({reason}), expected {want}\n{}",
                    self.output
                );
            }
        }
        Ok(())
    }
}

/// Parses the doctor's stdout.
pub fn parse(stdout: &str) -> (Vec<(String, String, String)>, Option<String>) {
    let mut lines = Vec::new();
    let mut verdict = None;
    for line in stdout.lines() {
        if line.starts_with("verdict: ") {
            verdict = Some(line.to_owned());
            continue;
        }
        // Longest name first: "blob push" must not claim a "blob …" line of another check.
        let mut names = CHECKS;
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        let Some(check) = names.iter().find(|n| line.starts_with(&format!("{n} "))) else {
            continue;
        };
        let rest = line[check.len()..].trim_start();
        if let Some((outcome, reason)) = rest.split_once(": ") {
            lines.push(((*check).to_owned(), outcome.to_owned(), reason.to_owned()));
        }
    }
    (lines, verdict)
}

/// Runs `wharf doctor URL --creds CREDS --repository REPO --timeout SECS` (explicit
/// credentials come before any ambient identity; no stored login is in reach).
pub fn run(url: &str, creds: &str, repository: &str, timeout: Duration) -> Result<Report> {
    let scratch = tempfile::tempdir()?;
    let out = Cmd::new(binary_path())
        .args(["doctor", url, "--creds", creds, "--repository", repository])
        .args(["--timeout", &timeout.as_secs().to_string()])
        .env("WHARF_CREDENTIALS", scratch.path().join("none.json"))
        .timeout(timeout * 12)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let output = crate::cmd::streams(&out);
    let (lines, verdict) = parse(&stdout);
    let verdict = verdict.with_context(|| format!("no verdict line:\n{output}"))?;
    Ok(Report {
        lines,
        verdict,
        success: out.status.success(),
        output,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn report_lines_parse() {
        let (lines, verdict) = super::parse(
            "wharf doctor: http://x, repository r\n\
             blob push                  ok: 3 bytes\n\
             direct upload, wrong bytes skipped: no direct path\n\
             verdict: PASS (1 ok, 0 failed, 1 skipped)\n",
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            ("blob push".into(), "ok".into(), "3 bytes".into())
        );
        assert_eq!(lines[1].1, "skipped");
        assert_eq!(
            verdict.as_deref(),
            Some("verdict: PASS (1 ok, 0 failed, 1 skipped)")
        );
    }
}
