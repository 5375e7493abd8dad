//! Repository names, tags and references: whatever parses is canonical (prints back as the
//! input) and can never climb out of a directory or hold a character outside the grammar.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::oci::{Reference, RepoName, Tag};

fuzz_target!(|input: &str| {
    if let Ok(name) = RepoName::parse(input) {
        assert_eq!(name.as_str(), input);
        assert!(name.as_str().len() <= 255);
        assert!(name.as_str().split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
        assert!(
            name.as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        );
    }
    if let Ok(tag) = Tag::parse(input) {
        assert_eq!(tag.as_str(), input);
        assert!(!tag.as_str().contains('/') && tag.as_str().len() <= 128);
    }
    if let Ok(reference) = Reference::parse(input) {
        assert_eq!(reference.to_string(), input);
    }
});
