//! Repository names, tags and references, following the OCI distribution spec grammar.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::digest::{Digest, DigestError};

/// Longest repository name Wharf accepts. The spec asks clients to keep `host/name` within 255
/// characters; refusing longer names here keeps keys and paths bounded everywhere.
pub const MAX_NAME_LEN: usize = 255;

/// Longest tag, from the spec grammar `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub const MAX_TAG_LEN: usize = 128;

/// Why a name, tag or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a repository name under the spec grammar.
    #[error("invalid repository name: {0}")]
    Name(&'static str),
    /// Not a tag under the spec grammar.
    #[error("invalid tag: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag,
    /// Looked like a digest (has a colon) but is not a valid one.
    #[error("invalid digest: {0}")]
    Digest(#[from] DigestError),
}

/// A repository name such as `library/ubuntu`: path components of `[a-z0-9]+` joined by single
/// separators (`.`, `_`, `__`, or one or more `-`), components joined by `/`. It contains no
/// `..`, no empty component, nothing outside `[a-z0-9._/-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName(String);

impl RepoName {
    /// Parses and validates a repository name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Name("empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::Name("longer than 255 characters"));
        }
        for component in s.split('/') {
            valid_component(component)?;
        }
        Ok(RepoName(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> Result<(), NameError> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err(NameError::Name("empty path component"));
    };
    if !alnum(first) || !alnum(last) {
        return Err(NameError::Name(
            "components must start and end with [a-z0-9]",
        ));
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|b| b == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return Err(NameError::Name(
                "separators must be '.', '_', '__' or dashes",
            ));
        }
    }
    Ok(())
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RepoName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RepoName::parse(&s)
    }
}

impl From<RepoName> for String {
    fn from(n: RepoName) -> String {
        n.0
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// Parses and validates a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_TAG_LEN
            && word(bytes[0])
            && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::Tag)
        }
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Tag {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Tag::parse(&s)
    }
}

impl From<Tag> for String {
    fn from(t: Tag) -> String {
        t.0
    }
}

/// The `<reference>` of a manifest URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag, resolved through the repository's tag table.
    Tag(Tag),
    /// A digest, addressing content directly.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything with a colon must be a valid digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "ubuntu",
            "library/ubuntu",
            "a/b/c/d/e",
            "my-app",
            "my--app",
            "my_app",
            "my__app",
            "my.app",
            "0123/x9",
            "gcr.io-mirror/foo",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok:?} must be accepted");
        }
        assert!(RepoName::parse(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn rejects_hostile_names() {
        for bad in [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "%2e%2e",
            "Ubuntu",
            "a b",
            "-a",
            "a-",
            "a___b",
            "a..b",
            "a._b",
            "_a",
            "a\\b",
            "a\0b",
            "ünïcode",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(RepoName::parse(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(RepoName::parse(&format!("x/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn tag_grammar() {
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a+b", &"t".repeat(129)] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reference_is_tag_or_digest() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(Reference::parse(d), Ok(Reference::Digest(_))));
        assert!(matches!(
            Reference::parse("sha256:short"),
            Err(NameError::Digest(_))
        ));
    }
}
