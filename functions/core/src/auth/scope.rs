//! Docker token scopes: `repository:<name>:<actions>` and `registry:catalog:*`.
//!
//! A name may contain a `host:port` prefix in other registries' scopes, so a scope is parsed from
//! both ends (the type ends at the first colon, the actions start after the last one) and the
//! middle is validated as a repository name; it is never split on every colon.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::oci::RepoName;

/// An action on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blob links.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The action's name in scopes and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// Parses one action name.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A requested or granted scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Actions on one repository.
    Repository(RepoName, BTreeSet<Action>),
    /// Listing the catalog.
    Catalog,
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {scope:?}: {reason}")]
pub struct ScopeError {
    scope: String,
    reason: &'static str,
}

impl Scope {
    /// Parses one scope (`type:name:actions`). Unknown actions are refused rather than ignored,
    /// so a typo never silently narrows or widens a request.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let err = |reason| ScopeError {
            scope: s.to_owned(),
            reason,
        };
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| err("expected type:name:actions"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| err("expected type:name:actions"))?;
        match kind {
            "registry" if name == "catalog" && actions == "*" => Ok(Scope::Catalog),
            "repository" | "repository(plugin)" => {
                let repo = RepoName::parse(name).map_err(|_| err("invalid repository name"))?;
                let mut set = BTreeSet::new();
                for a in actions.split(',') {
                    if a == "*" {
                        set.extend(Action::ALL);
                    } else {
                        set.insert(Action::parse(a).ok_or_else(|| err("unknown action"))?);
                    }
                }
                Ok(Scope::Repository(repo, set))
            }
            _ => Err(err("unknown resource type")),
        }
    }

    /// Parses a space-separated list (the OAuth2 form's `scope`).
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, ScopeError> {
        s.split(' ')
            .filter(|p| !p.is_empty())
            .map(Scope::parse)
            .collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Catalog => f.write_str("registry:catalog:*"),
            Scope::Repository(name, actions) => {
                let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
                write!(f, "repository:{name}:{}", actions.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_scope(s: &str) -> (String, Vec<Action>) {
        match Scope::parse(s).expect(s) {
            Scope::Repository(n, a) => (n.to_string(), a.into_iter().collect()),
            Scope::Catalog => panic!("not a repository scope"),
        }
    }

    #[test]
    fn parses_repository_scopes() {
        assert_eq!(
            repo_scope("repository:a/b:pull"),
            ("a/b".into(), vec![Action::Pull])
        );
        assert_eq!(
            repo_scope("repository:a:push,pull"),
            ("a".into(), vec![Action::Pull, Action::Push])
        );
        assert_eq!(repo_scope("repository:a:*").1, Action::ALL.to_vec());
        assert_eq!(Scope::parse("registry:catalog:*"), Ok(Scope::Catalog));
        assert_eq!(
            Scope::parse("repository:a:pull,push")
                .map(|s| s.to_string())
                .as_deref(),
            Ok("repository:a:pull,push")
        );
    }

    #[test]
    fn refuses_injected_and_malformed_scopes() {
        for bad in [
            "",
            "repository",
            "repository:a",
            "repository:a:",
            "repository:a:pull:push",
            "repository:localhost:5000/a:pull",
            "repository:a b:pull",
            "repository:../etc:pull",
            "repository:A:pull",
            "repository:a:pull,admin",
            "repository:a:pull repository:b:push",
            "repository::pull",
            "registry:catalog:pull",
            "user:a:pull",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn parses_space_separated_lists() {
        let list = Scope::parse_list("repository:a:pull  repository:b:push").expect("valid");
        assert_eq!(list.len(), 2);
        assert!(Scope::parse_list("repository:a:pull repository:B:push").is_err());
    }
}
