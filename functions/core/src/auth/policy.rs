//! Identity policies: who may do what on which repositories. Deny by default.
//!
//! A policy file (TOML) lists public repository patterns (anonymous pull, nothing else) and
//! identities. An identity matches a verified OIDC token on its issuer, its subject pattern, its
//! audience and any claims; each of its grants names repository patterns and actions. What a
//! caller gets is the union of the grants of every identity that matches, intersected with what
//! it asked for. [`Policy::explain`] says which rule allowed or denied, and why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::pattern::{github_subject_without_ids, matches};
use super::scope::Action;
use crate::oci::RepoName;

/// A verified OIDC identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The token's `iss`.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The token's audiences.
    pub audiences: Vec<String>,
    /// Every claim of the token (for claim conditions).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Repository patterns anyone may pull, without logging in.
    #[serde(default)]
    pub public: Vec<String>,
    /// Identities and their grants.
    #[serde(default, rename = "identity")]
    pub identities: Vec<IdentityRule>,
    /// Refresh tokens (by `jti`) that are no longer honoured.
    #[serde(default)]
    pub revoked_refresh_tokens: Vec<String>,
    /// Refresh-token families (the `family` of the "token issued" log line) that are no longer
    /// honoured: revokes every refresh token descended from one login.
    #[serde(default)]
    pub revoked_refresh_families: Vec<String>,
    /// Refresh tokens issued before this Unix time are no longer honoured (revokes them all).
    #[serde(default)]
    pub refresh_tokens_not_before: Option<u64>,
    /// Tags that, once pushed, can be neither moved to another digest nor deleted.
    #[serde(default)]
    pub immutable: Vec<ImmutableRule>,
    /// How many tags to keep; older ones are removed by garbage collection.
    #[serde(default)]
    pub retention: Vec<RetentionRule>,
}

/// `[[immutable]]`: tags of matching repositories that can never move nor be deleted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableRule {
    /// Repository patterns.
    pub repositories: Vec<String>,
    /// Tag patterns (`*` matches anything); absent: every tag.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Tag patterns exempt from the rule (e.g. `latest`).
    #[serde(default)]
    pub except: Vec<String>,
}

/// `[[retention]]`: keep only the `keep` most recently pushed tags matching `tags` in each
/// matching repository; garbage collection removes the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Repository patterns.
    pub repositories: Vec<String>,
    /// Tag patterns the rule counts and prunes (absent: every tag).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// How many of the most recently pushed matching tags to keep.
    pub keep: usize,
}

/// Tag patterns match the whole tag; `*` matches any run of characters (tags have no `/`).
fn tag_matches(patterns: Option<&[String]>, tag: &str) -> bool {
    patterns.is_none_or(|ps| ps.iter().any(|p| matches(p, tag)))
}

/// One identity: conditions on a token, and grants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    /// A name for explanations and logs.
    pub name: String,
    /// The token issuer, exactly.
    pub issuer: String,
    /// Subject pattern (see [`super::pattern`]); GitHub subjects match with or without ids.
    pub subject: Option<String>,
    /// Required audience, exactly.
    pub audience: Option<String>,
    /// Claim patterns: every listed claim must be present and match (for an array claim such as
    /// `groups`, one element must match).
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// What the identity may do.
    #[serde(default, rename = "grant")]
    pub grants: Vec<Grant>,
}

/// Actions on repository patterns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Repository patterns.
    pub repositories: Vec<String>,
    /// Allowed actions.
    pub actions: Vec<Action>,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Unreadable file.
    #[error("reading policy {0}: {1}")]
    Read(String, std::io::Error),
    /// Invalid TOML or unknown keys.
    #[error("parsing policy {0}: {1}")]
    Parse(String, Box<toml::de::Error>),
    /// A rule that could never be what its author meant.
    #[error("policy identity {0:?}: {1}")]
    Invalid(String, &'static str),
}

impl Policy {
    /// Loads and checks a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read(name.clone(), e))?;
        Policy::parse(&text).map_err(|e| match e {
            PolicyError::Parse(_, e) => PolicyError::Parse(name, e),
            other => other,
        })
    }

    /// Parses and checks a policy document.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy =
            toml::from_str(text).map_err(|e| PolicyError::Parse(String::new(), Box::new(e)))?;
        for rule in &policy.identities {
            if rule.issuer.is_empty() {
                return Err(PolicyError::Invalid(
                    rule.name.clone(),
                    "issuer must be set",
                ));
            }
            if rule.subject.is_none() && rule.claims.is_empty() {
                return Err(PolicyError::Invalid(
                    rule.name.clone(),
                    "needs a subject pattern or at least one claim condition: an issuer alone \
                     would match every identity it ever issues",
                ));
            }
        }
        Ok(policy)
    }

    /// True when `tag` in `repo` is immutable: once pushed, it may be re-pushed at the same
    /// digest only, and never deleted.
    pub fn is_immutable(&self, repo: &RepoName, tag: &str) -> bool {
        self.immutable.iter().any(|r| {
            r.repositories.iter().any(|p| matches(p, repo.as_str()))
                && tag_matches(r.tags.as_deref(), tag)
                && !r.except.iter().any(|p| matches(p, tag))
        })
    }

    /// The retention rules of `repo`.
    pub fn retention_for<'a>(
        &'a self,
        repo: &'a RepoName,
    ) -> impl Iterator<Item = &'a RetentionRule> + 'a {
        self.retention
            .iter()
            .filter(move |r| r.repositories.iter().any(|p| matches(p, repo.as_str())))
    }

    /// True when `repo` is public (anyone may pull it).
    pub fn is_public(&self, repo: &RepoName) -> bool {
        self.public.iter().any(|p| matches(p, repo.as_str()))
    }

    /// The identity rules `identity` satisfies.
    pub fn matching<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> impl Iterator<Item = &'a IdentityRule> + 'a {
        self.identities
            .iter()
            .filter(move |r| r.mismatch(identity).is_none())
    }

    /// Actions `identity` (or an anonymous caller) may perform on `repo`.
    pub fn allowed(&self, identity: Option<&Identity>, repo: &RepoName) -> BTreeSet<Action> {
        let mut out = BTreeSet::new();
        if self.is_public(repo) {
            out.insert(Action::Pull);
        }
        if let Some(identity) = identity {
            for rule in self.matching(identity) {
                for grant in &rule.grants {
                    if grant.repositories.iter().any(|p| matches(p, repo.as_str())) {
                        out.extend(grant.actions.iter().copied());
                    }
                }
            }
        }
        out
    }

    /// Repository patterns `identity` (or an anonymous caller) may pull: for catalog filtering.
    pub fn pull_patterns(&self, identity: Option<&Identity>) -> Vec<String> {
        let mut out = self.public.clone();
        if let Some(identity) = identity {
            for rule in self.matching(identity) {
                for grant in rule
                    .grants
                    .iter()
                    .filter(|g| g.actions.contains(&Action::Pull))
                {
                    out.extend(grant.repositories.iter().cloned());
                }
            }
        }
        out
    }

    /// A human explanation of the decision for `actions` on `repo`: which rule allowed each
    /// action, and for every rule that did not apply, why not.
    pub fn explain(
        &self,
        identity: Option<&Identity>,
        repo: &RepoName,
        actions: &BTreeSet<Action>,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        if self.is_public(repo) {
            lines.push(format!("{repo} is public: anyone may pull it"));
        }
        let Some(identity) = identity else {
            lines.push("anonymous caller: only public repositories may be pulled".to_owned());
            return lines;
        };
        for rule in &self.identities {
            match rule.mismatch(identity) {
                Some(why) => lines.push(format!("identity {:?} does not match: {why}", rule.name)),
                None => {
                    let mut granted = BTreeSet::new();
                    for g in &rule.grants {
                        if let Some(p) = g.repositories.iter().find(|p| matches(p, repo.as_str())) {
                            let acts: Vec<&str> = g.actions.iter().map(|a| a.as_str()).collect();
                            lines.push(format!(
                                "identity {:?} matches and grants {} on {repo} (pattern {p:?})",
                                rule.name,
                                acts.join(",")
                            ));
                            granted.extend(g.actions.iter().copied());
                        }
                    }
                    if granted.is_empty() {
                        lines.push(format!(
                            "identity {:?} matches but grants nothing on {repo}",
                            rule.name
                        ));
                    }
                }
            }
        }
        let allowed = self.allowed(Some(identity), repo);
        for action in actions {
            let verdict = if allowed.contains(action) {
                "ALLOWED"
            } else {
                "DENIED (no rule grants it)"
            };
            lines.push(format!("{action} on {repo}: {verdict}"));
        }
        lines
    }
}

impl RetentionRule {
    /// True when the rule counts `tag`.
    pub fn counts(&self, tag: &str) -> bool {
        tag_matches(self.tags.as_deref(), tag)
    }
}

impl IdentityRule {
    /// `None` when the identity satisfies every condition, else the first one it fails.
    fn mismatch(&self, id: &Identity) -> Option<String> {
        if id.issuer != self.issuer {
            return Some(format!(
                "issuer is {:?}, rule wants {:?}",
                id.issuer, self.issuer
            ));
        }
        if let Some(aud) = &self.audience
            && !id.audiences.contains(aud)
        {
            return Some(format!("audience {:?} not in {:?}", aud, id.audiences));
        }
        if let Some(pattern) = &self.subject {
            let plain = github_subject_without_ids(&id.subject);
            let ok = matches(pattern, &id.subject)
                || (!pattern.contains('@')
                    && plain.as_deref().is_some_and(|s| matches(pattern, s)));
            if !ok {
                return Some(format!(
                    "subject {:?} does not match {pattern:?}",
                    id.subject
                ));
            }
        }
        for (claim, pattern) in &self.claims {
            let ok = match id.claims.get(claim) {
                Some(serde_json::Value::Array(items)) => {
                    items.iter().any(|v| claim_matches(pattern, v))
                }
                Some(v) => claim_matches(pattern, v),
                None => false,
            };
            if !ok {
                return Some(format!("claim {claim:?} does not match {pattern:?}"));
            }
        }
        None
    }
}

fn claim_matches(pattern: &str, value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => matches(pattern, s),
        serde_json::Value::Bool(b) => pattern == if *b { "true" } else { "false" },
        serde_json::Value::Number(n) => pattern == n.to_string(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn immutable_tags_follow_repository_and_tag_patterns() {
        let policy = super::Policy::parse(
            r#"
[[immutable]]
repositories = ["prod/**"]
tags = ["v*"]

[[immutable]]
repositories = ["frozen/*"]
except = ["latest"]

[[retention]]
repositories = ["ci/*"]
tags = ["pr-*"]
keep = 3
"#,
        )
        .expect("policy");
        let repo = |n: &str| crate::oci::RepoName::parse(n).expect("name");
        assert!(policy.is_immutable(&repo("prod/app"), "v1.2.3"));
        assert!(!policy.is_immutable(&repo("prod/app"), "latest"));
        assert!(!policy.is_immutable(&repo("dev/app"), "v1"));
        assert!(policy.is_immutable(&repo("frozen/app"), "anything"));
        assert!(!policy.is_immutable(&repo("frozen/app"), "latest"));
        let ci = repo("ci/app");
        let rules: Vec<_> = policy.retention_for(&ci).collect();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].counts("pr-12") && !rules[0].counts("main"));
        assert_eq!(policy.retention_for(&repo("prod/app")).count(), 0);
        assert!(
            super::Policy::parse("[[immutable]]\nrepositories = [\"a\"]\ntag = [\"x\"]\n").is_err()
        );
    }

    use super::*;
    use serde_json::json;

    const GITHUB: &str = "https://token.actions.githubusercontent.com";

    fn policy() -> Policy {
        Policy::parse(&format!(
            r#"
public = ["library/*"]

[[identity]]
name = "acme-main"
issuer = "{GITHUB}"
subject = "repo:acme/*:ref:refs/heads/main"
audience = "wharf"
claims = {{ repository_owner = "acme" }}
[[identity.grant]]
repositories = ["acme/**"]
actions = ["pull", "push"]

[[identity]]
name = "admins"
issuer = "https://idp.example.com"
claims = {{ groups = "registry-admins" }}
[[identity.grant]]
repositories = ["**"]
actions = ["pull", "push", "delete"]
"#
        ))
        .expect("valid policy")
    }

    fn github(sub: &str, owner: &str) -> Identity {
        Identity {
            issuer: GITHUB.into(),
            subject: sub.into(),
            audiences: vec!["wharf".into()],
            claims: json!({"repository_owner": owner})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn repo(n: &str) -> RepoName {
        RepoName::parse(n).expect("name")
    }

    fn set(a: &[Action]) -> BTreeSet<Action> {
        a.iter().copied().collect()
    }

    #[test]
    fn deny_by_default_and_public_pull() {
        let p = policy();
        assert_eq!(p.allowed(None, &repo("acme/app")), set(&[]));
        assert_eq!(
            p.allowed(None, &repo("library/alpine")),
            set(&[Action::Pull])
        );
        assert_eq!(
            p.allowed(None, &repo("library/a/b")),
            set(&[]),
            "* does not cross /"
        );
    }

    #[test]
    fn github_identity_gets_its_grants_in_both_subject_forms() {
        let p = policy();
        let old = github("repo:acme/app:ref:refs/heads/main", "acme");
        let new = github("repo:acme@1/app@2:ref:refs/heads/main", "acme");
        for id in [&old, &new] {
            assert_eq!(
                p.allowed(Some(id), &repo("acme/app/sub")),
                set(&[Action::Pull, Action::Push])
            );
            assert_eq!(p.allowed(Some(id), &repo("other/app")), set(&[]));
        }
    }

    #[test]
    fn conditions_must_all_hold() {
        let p = policy();
        let branch = github("repo:acme/app:ref:refs/heads/dev", "acme");
        assert_eq!(p.allowed(Some(&branch), &repo("acme/app")), set(&[]));
        let owner = github("repo:acme/app:ref:refs/heads/main", "evil");
        assert_eq!(p.allowed(Some(&owner), &repo("acme/app")), set(&[]));
        let mut aud = github("repo:acme/app:ref:refs/heads/main", "acme");
        aud.audiences = vec!["sts.amazonaws.com".into()];
        assert_eq!(p.allowed(Some(&aud), &repo("acme/app")), set(&[]));
        let mut iss = github("repo:acme/app:ref:refs/heads/main", "acme");
        iss.issuer = "https://evil.example.com".into();
        assert_eq!(p.allowed(Some(&iss), &repo("acme/app")), set(&[]));
    }

    #[test]
    fn array_claims_match_any_element() {
        let p = policy();
        let admin = Identity {
            issuer: "https://idp.example.com".into(),
            subject: "alice".into(),
            audiences: vec!["wharf".into()],
            claims: json!({"groups": ["staff", "registry-admins"]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        assert_eq!(p.allowed(Some(&admin), &repo("x/y")), set(&Action::ALL));
        let mut staff = admin.clone();
        staff.claims = json!({"groups": ["staff"]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(p.allowed(Some(&staff), &repo("x/y")), set(&[]));
    }

    #[test]
    fn explain_names_the_rule() {
        let p = policy();
        let id = github("repo:acme/app:ref:refs/heads/main", "acme");
        let lines = p.explain(
            Some(&id),
            &repo("acme/app"),
            &set(&[Action::Push, Action::Delete]),
        );
        let text = lines.join("\n");
        assert!(
            text.contains("identity \"acme-main\" matches and grants pull,push"),
            "{text}"
        );
        assert!(
            text.contains("identity \"admins\" does not match: issuer"),
            "{text}"
        );
        assert!(text.contains("push on acme/app: ALLOWED"), "{text}");
        assert!(text.contains("delete on acme/app: DENIED"), "{text}");
    }

    #[test]
    fn rules_that_match_everyone_are_refused() {
        let err = Policy::parse("[[identity]]\nname = \"x\"\nissuer = \"https://i\"\n");
        assert!(matches!(err, Err(PolicyError::Invalid(..))));
        assert!(Policy::parse("publik = []").is_err());
    }
}
