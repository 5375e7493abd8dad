//! Glob patterns for policies: repository names, OIDC subjects and claim values.
//!
//! `*` matches any run of characters except `/` and `:`, so it never crosses a path component or
//! a subject field; `**` matches anything, separators included. Every other character matches
//! itself. There are no character classes and no escapes: a pattern reads as what it matches.

/// True when `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes())
}

fn glob(p: &[u8], t: &[u8]) -> bool {
    match p {
        [] => t.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=t.len()).any(|i| glob(rest, &t[i..])),
        [b'*', rest @ ..] => {
            let mut i = 0;
            loop {
                if glob(rest, &t[i..]) {
                    return true;
                }
                if i == t.len() || t[i] == b'/' || t[i] == b':' {
                    return false;
                }
                i += 1;
            }
        }
        [c, rest @ ..] => t.first() == Some(c) && glob(rest, &t[1..]),
    }
}

/// GitHub Actions subjects come in two forms: `repo:OWNER/REPO:…` and, with immutable ids,
/// `repo:OWNER@ID/REPO@ID:…`. Returns the id-free form of an id-bearing subject, so a policy
/// written without ids matches both; a policy that names ids matches only the id form.
pub fn github_subject_without_ids(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix("repo:")?;
    let (repo, tail) = rest.split_once(':').unwrap_or((rest, ""));
    if !repo.contains('@') {
        return None;
    }
    let strip = |part: &str| {
        part.split_once('@')
            .map(|(name, _)| name.to_owned())
            .unwrap_or_else(|| part.to_owned())
    };
    let stripped: Vec<String> = repo.split('/').map(strip).collect();
    let mut out = format!("repo:{}", stripped.join("/"));
    if !tail.is_empty() || rest.contains(':') {
        out.push(':');
        out.push_str(tail);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_within_a_component() {
        assert!(matches("acme/*", "acme/app"));
        assert!(!matches("acme/*", "acme/app/sub"));
        assert!(!matches("acme/*", "acme"));
        assert!(matches("acme/**", "acme/app/sub"));
        assert!(matches("**", "anything/at:all"));
        assert!(matches("a*c", "abc"));
        assert!(matches("a*", "a"));
        assert!(!matches("acme/*", "acmex/app"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }

    #[test]
    fn star_does_not_cross_subject_fields() {
        let p = "repo:acme/*:ref:refs/heads/main";
        assert!(matches(p, "repo:acme/app:ref:refs/heads/main"));
        assert!(!matches(p, "repo:acme/app:ref:refs/heads/main:extra"));
        assert!(!matches(p, "repo:acme/a:b:ref:refs/heads/main"));
        assert!(matches(
            "repo:acme/app:**",
            "repo:acme/app:environment:prod"
        ));
    }

    #[test]
    fn github_id_forms() {
        assert_eq!(
            github_subject_without_ids("repo:acme@12/app@34:ref:refs/heads/main").as_deref(),
            Some("repo:acme/app:ref:refs/heads/main")
        );
        assert_eq!(
            github_subject_without_ids("repo:acme/app:ref:refs/heads/main"),
            None
        );
        assert_eq!(github_subject_without_ids("user@example.com"), None);
    }
}
