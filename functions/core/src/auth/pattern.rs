//! Glob patterns for policies: repository names, OIDC subjects and claim values.
//!
//! `*` matches any run of characters except `/` and `:`, so it never crosses a path component or
//! a subject field; `**` matches anything, separators included. Every other character matches
//! itself. There are no character classes and no escapes: a pattern reads as what it matches.

/// True when `text` matches `pattern`, in time linear in `text` for a given pattern (at most
/// `2 × (|pattern| + 1) × (|text| + 1)` steps, see [`matches_counting`]): a pattern is compiled
/// to a small automaton whose states are simulated all at once, so there is no backtracking,
/// however many stars a policy author (or a hostile name) lines up.
pub fn matches(pattern: &str, text: &str) -> bool {
    matches_counting(pattern, text).0
}

/// The characters every text matching `pattern` starts with: the pattern up to its first
/// wildcard (all of it when it has none).
pub fn literal_prefix(pattern: &str) -> &str {
    pattern.split('*').next().unwrap_or("")
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A byte that matches itself.
    Byte(u8),
    /// `*`: any run of bytes other than `/` and `:`.
    Star,
    /// `**`: any run of bytes.
    AnyRun,
}

/// `pattern` as tokens, reading `**` greedily left to right (`***` is `**` then `*`).
fn compile(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        let token = match &pattern[i..] {
            [b'*', b'*', ..] => {
                i += 1;
                Token::AnyRun
            }
            [b'*', ..] => Token::Star,
            [c, ..] => Token::Byte(*c),
            [] => break,
        };
        tokens.push(token);
        i += 1;
    }
    tokens
}

/// [`matches`], also returning the number of state visits it took (for tests that prove the
/// bound without timing anything).
pub fn matches_counting(pattern: &str, text: &str) -> (bool, usize) {
    let tokens = compile(pattern.as_bytes());
    let n = tokens.len();
    let mut steps = 0;
    // `live[i]`: the first `i` tokens match the text read so far.
    let mut live = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    live[0] = true;
    close(&tokens, &mut live, &mut steps);
    for &byte in text.as_bytes() {
        next.iter_mut().for_each(|s| *s = false);
        for (i, token) in tokens.iter().enumerate() {
            steps += 1;
            if !live[i] {
                continue;
            }
            match *token {
                Token::Byte(c) if c == byte => next[i + 1] = true,
                Token::Byte(_) => {}
                Token::Star if byte == b'/' || byte == b':' => {}
                Token::Star | Token::AnyRun => next[i] = true,
            }
        }
        close(&tokens, &mut next, &mut steps);
        std::mem::swap(&mut live, &mut next);
        if !live.contains(&true) {
            return (false, steps);
        }
    }
    (live[n], steps)
}

/// Adds the states reachable without reading a byte: past any star, which may match nothing.
fn close(tokens: &[Token], states: &mut [bool], steps: &mut usize) {
    for (i, token) in tokens.iter().enumerate() {
        *steps += 1;
        if states[i] && matches!(token, Token::Star | Token::AnyRun) {
            states[i + 1] = true;
        }
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

    /// Issue 16: the backtracking matcher took 7.4 s for `**a**a**a**b` against 400 bytes and
    /// 1.25 s for `a*a*a*a*b` against a 255-character name (a request's worth of CPU per
    /// policy rule). The bound is asserted as a step count, not a time.
    #[test]
    fn star_heavy_patterns_match_in_linear_steps() {
        for (pattern, text) in [
            ("**a**a**a**b", "a".repeat(400)),
            ("a*a*a*a*b", "a".repeat(255)),
            ("**a**a**a**b", format!("{}b", "a".repeat(400))),
            ("a*a*a*a*b", format!("{}b", "a".repeat(254))),
        ] {
            let (matched, steps) = matches_counting(pattern, &text);
            assert_eq!(
                matched,
                text.ends_with('b'),
                "{pattern} on {} bytes",
                text.len()
            );
            let bound = 2 * (pattern.len() + 1) * (text.len() + 1);
            assert!(steps <= bound, "{pattern}: {steps} steps > {bound}");
        }
        // Stars still stop at separators on the long path.
        assert!(!matches("a*a*a*a*b", &format!("{}/b", "a".repeat(200))));
        assert!(matches("a**a**b", &format!("a{}/ab", "/".repeat(200))));
        assert!(matches("***", "x/y:z"), "`***` is `**` then `*`");
        assert!(matches("", "") && !matches("", "x") && matches("*", ""));
    }

    /// The definition, as the old backtracking matcher wrote it: the reference for every small
    /// input (the fuzz target `patterns` compares the two on larger ones).
    fn reference(p: &[u8], t: &[u8]) -> bool {
        match p {
            [] => t.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            [b'*', rest @ ..] => {
                let mut i = 0;
                loop {
                    if reference(rest, &t[i..]) {
                        return true;
                    }
                    if i == t.len() || t[i] == b'/' || t[i] == b':' {
                        return false;
                    }
                    i += 1;
                }
            }
            [c, rest @ ..] => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    /// Every string over `alphabet` of length at most `max`.
    fn strings(alphabet: &[u8], max: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |&c| format!("{s}{}", c as char)))
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    #[test]
    fn agrees_with_the_definition_on_every_small_input() {
        let texts = strings(b"ab/:", 5);
        for pattern in strings(b"a*/:", 4) {
            for text in &texts {
                assert_eq!(
                    matches(&pattern, text),
                    reference(pattern.as_bytes(), text.as_bytes()),
                    "{pattern:?} on {text:?}"
                );
            }
        }
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
