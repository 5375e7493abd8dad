//! What `wharf doctor` prints: one line per check, then a verdict. Every reason passes through
//! [`redact`] on its way into a [`Line`], so no token and no presigned URL reaches the output,
//! whatever an error message carried.

use std::fmt;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The deployment behaves as it must.
    Ok,
    /// It does not (or the check could not find out in time).
    Fail,
    /// Not applicable to this registry, or impossible after an earlier failure.
    Skipped,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "skipped",
        }
    }
}

/// The checks, in the order they run. Their names are the first column of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `GET /v2/` answers 401 with one well-formed challenge naming an https realm.
    Challenge,
    /// The identity gets a registry token from the realm.
    Token,
    /// `POST …/blobs/uploads[/]` reaches the uploads function at name depths 1 and 5.
    UploadsRoute,
    /// A blob push completes.
    BlobPush,
    /// `HEAD` of that blob: its size in `Content-Length`, no body.
    BlobHead,
    /// `GET` of that blob: 307 to the object store, whose bytes hash to the digest.
    BlobGet,
    /// A direct upload of wrong bytes is refused and never published.
    DirectWrongBytes,
    /// Ten pushes (blob, manifest, tag) into one repository at once all succeed.
    ConcurrentPushes,
    /// Everything the doctor pushed is deleted again.
    Cleanup,
}

impl Check {
    /// The check's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Check::Challenge => "challenge",
            Check::Token => "token",
            Check::UploadsRoute => "uploads route",
            Check::BlobPush => "blob push",
            Check::BlobHead => "blob HEAD",
            Check::BlobGet => "blob GET redirect",
            Check::DirectWrongBytes => "direct upload, wrong bytes",
            Check::ConcurrentPushes => "concurrent pushes",
            Check::Cleanup => "cleanup",
        }
    }
}

/// Width of the name column: the longest name plus a space.
const NAME_WIDTH: usize = 27;

/// One printed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Which check.
    pub check: Check,
    /// How it ended.
    pub outcome: Outcome,
    reason: String,
}

impl Line {
    /// A line; `reason` is redacted here.
    pub fn new(check: Check, outcome: Outcome, reason: impl AsRef<str>) -> Self {
        Line {
            check,
            outcome,
            reason: redact(reason.as_ref()),
        }
    }

    /// The check passed.
    pub fn ok(check: Check, reason: impl AsRef<str>) -> Self {
        Self::new(check, Outcome::Ok, reason)
    }

    /// The check failed.
    pub fn fail(check: Check, reason: impl AsRef<str>) -> Self {
        Self::new(check, Outcome::Fail, reason)
    }

    /// The check did not apply.
    pub fn skipped(check: Check, reason: impl AsRef<str>) -> Self {
        Self::new(check, Outcome::Skipped, reason)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<NAME_WIDTH$}{}: {}",
            self.check.name(),
            self.outcome.word(),
            self.reason
        )
    }
}

/// The verdict over all lines: `PASS` when none failed.
#[derive(Debug)]
pub struct Verdict<'a>(pub &'a [Line]);

impl Verdict<'_> {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.0.iter().all(|l| l.outcome != Outcome::Fail)
    }
}

impl fmt::Display for Verdict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |o: Outcome| self.0.iter().filter(|l| l.outcome == o).count();
        let failed: Vec<&str> = self
            .0
            .iter()
            .filter(|l| l.outcome == Outcome::Fail)
            .map(|l| l.check.name())
            .collect();
        let tally = format!(
            "{} ok, {} failed, {} skipped",
            count(Outcome::Ok),
            failed.len(),
            count(Outcome::Skipped)
        );
        if failed.is_empty() {
            write!(f, "verdict: PASS ({tally})")
        } else {
            write!(f, "verdict: FAIL ({tally}: {})", failed.join(", "))
        }
    }
}

/// Replaces what must never be printed: the query of any URL (a presigned URL's signature, an
/// upload capability) and anything shaped like a JWT (registry tokens, OIDC ID tokens).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&redact_word(word));
    }
    out
}

fn redact_word(word: &str) -> String {
    let mut word = word.to_owned();
    if let Some(at) = word.find("eyJ") {
        // Three base64url segments: a JWS compact serialization.
        let tail: String = word[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        if tail.matches('.').count() >= 2 {
            word = word.replacen(&tail, "<token>", 1);
        }
    }
    if let Some(scheme) = word.find("://")
        && let Some(q) = word[scheme..].find('?')
    {
        let start = scheme + q;
        let end = word[start..]
            .find([')', '"', '\'', ','])
            .map_or(word.len(), |e| start + e);
        word.replace_range(start..end, "?<redacted>");
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_name_outcome_reason() {
        let line = Line::skipped(Check::DirectWrongBytes, "no direct path");
        assert_eq!(
            line.to_string(),
            "direct upload, wrong bytes skipped: no direct path"
        );
        assert_eq!(
            Line::ok(Check::Token, "x").to_string(),
            format!("{:<27}ok: x", "token")
        );
    }

    #[test]
    fn one_failure_fails_the_verdict_and_is_named() {
        let lines = [
            Line::ok(Check::Challenge, ""),
            Line::fail(Check::BlobGet, "200"),
            Line::skipped(Check::DirectWrongBytes, ""),
        ];
        let verdict = Verdict(&lines);
        assert!(!verdict.passed());
        assert_eq!(
            verdict.to_string(),
            "verdict: FAIL (1 ok, 1 failed, 1 skipped: blob GET redirect)"
        );
        let passed = Verdict(&lines[..1]);
        assert!(passed.passed());
        assert_eq!(
            passed.to_string(),
            "verdict: PASS (1 ok, 0 failed, 0 skipped)"
        );
    }

    #[test]
    fn tokens_and_url_queries_never_reach_a_line() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let said = Line::fail(
            Check::BlobPush,
            format!(
                "error sending request for url (https://b.example/k?X-Amz-Signature=abc&x=1): \
                 Bearer {jwt}, token={jwt}"
            ),
        )
        .to_string();
        assert!(!said.contains("X-Amz-Signature"), "{said}");
        assert!(!said.contains(jwt), "{said}");
        assert!(said.contains("(https://b.example/k?<redacted>):"), "{said}");
        assert!(said.contains("Bearer <token>, token=<token>"), "{said}");
        assert_eq!(redact("plain words, no secrets"), "plain words, no secrets");
    }
}
