//! The mark phase: every digest a repository still needs, read from the metadata store.
//!
//! A digest is live when a repository links it, when a manifest names it (its config, layers,
//! child manifests, subject — any `digest` field, so an unknown manifest shape keeps more, never
//! less), or when it is a manifest's own digest (a manifest spilled to the blob store by the
//! DynamoDB backend lives there under it).

use std::collections::HashSet;

use crate::oci::{Digest, RepoName};
use crate::storage::{MetaStore, Page, Result};

/// Entries asked for per listing call.
pub(super) const PAGE: usize = 1000;

/// Every `digest` string field anywhere in a JSON document that parses as a digest.
pub fn referenced_digests(bytes: &[u8]) -> Vec<Digest> {
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        walk(&value, &mut out);
    }
    out
}

fn walk(value: &serde_json::Value, out: &mut Vec<Digest>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("digest", serde_json::Value::String(s)) => {
                        if let Ok(d) = Digest::parse(s) {
                            out.push(d);
                        }
                    }
                    _ => walk(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
        _ => {}
    }
}

/// Every repository, in order.
pub(super) async fn repositories(meta: &dyn MetaStore) -> Result<Vec<RepoName>> {
    let mut out: Vec<RepoName> = Vec::new();
    loop {
        let page = Page {
            last: out.last().map(ToString::to_string),
            n: PAGE,
        };
        let got = meta.list_repositories(&page).await?;
        let done = got.len() < PAGE;
        out.extend(got);
        if done {
            return Ok(out);
        }
    }
}

/// Adds everything `repo` needs to `live`; returns how many manifests it holds.
pub(super) async fn mark_repository(
    meta: &dyn MetaStore,
    repo: &RepoName,
    live: &mut HashSet<Digest>,
) -> Result<u64> {
    let mut last: Option<String> = None;
    loop {
        let page = Page {
            last: last.take(),
            n: PAGE,
        };
        let links = meta.list_blob_links(repo, &page).await?;
        let done = links.len() < PAGE;
        last = links.last().map(ToString::to_string);
        live.extend(links);
        if done {
            break;
        }
    }
    let mut manifests = 0;
    last = None;
    loop {
        let page = Page {
            last: last.take(),
            n: PAGE,
        };
        let got = meta.list_manifests(repo, &page).await?;
        let done = got.len() < PAGE;
        last = got.last().map(|m| m.digest.to_string());
        for m in got {
            manifests += 1;
            live.extend(referenced_digests(&m.bytes));
            live.insert(m.digest);
        }
        if done {
            return Ok(manifests);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    #[test]
    fn every_descriptor_digest_is_found() {
        let a = Algorithm::Sha256.digest(b"a");
        let b = Algorithm::Sha256.digest(b"b");
        let c = Algorithm::Sha256.digest(b"c");
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": a.to_string(), "size": 1},
            "layers": [{"digest": b.to_string()}, {"digest": "not-a-digest"}],
            "subject": {"digest": c.to_string()},
        });
        let found = referenced_digests(&serde_json::to_vec(&doc).expect("json"));
        assert_eq!(found.len(), 3);
        for d in [a, b, c] {
            assert!(found.contains(&d));
        }
        assert!(referenced_digests(b"not json").is_empty());
    }
}
