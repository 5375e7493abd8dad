//! Retention: per `[[retention]]` rule of the policy, keep the `keep` most recently pushed
//! matching tags of each repository and delete the others. Immutable tags are never deleted,
//! whatever a retention rule says. Only tags go: the manifests they pointed at stay reachable by
//! digest (and their blobs linked), as after a tag DELETE.

use crate::auth::Policy;
use crate::auth::policy::RetentionRule;
use crate::oci::RepoName;
use crate::storage::{MetaStore, Page, Result, TagRecord};

use super::GcItem;
use super::mark::PAGE;

/// Every tag of `repo` with its digest and push time.
async fn tags(meta: &dyn MetaStore, repo: &RepoName) -> Result<Vec<TagRecord>> {
    let mut out: Vec<TagRecord> = Vec::new();
    loop {
        let page = Page {
            last: out.last().map(|t| t.tag.to_string()),
            n: PAGE,
        };
        let got = meta.list_tag_records(repo, &page).await?;
        let done = got.len() < PAGE;
        out.extend(got);
        if done {
            return Ok(out);
        }
    }
}

/// The tags of `repo` that `rules` prune: for each rule, its matching tags past the `keep`
/// most recent (tags without a push time count as oldest; ties break by name).
pub(super) fn pruned<'a>(
    policy: &Policy,
    repo: &RepoName,
    rules: impl Iterator<Item = &'a RetentionRule>,
    records: &[TagRecord],
) -> Vec<TagRecord> {
    let mut out: Vec<TagRecord> = Vec::new();
    for rule in rules {
        let mut matching: Vec<&TagRecord> = records
            .iter()
            .filter(|r| rule.counts(r.tag.as_str()))
            .collect();
        matching.sort_by(|a, b| b.pushed_ms.cmp(&a.pushed_ms).then(a.tag.cmp(&b.tag)));
        for r in matching.into_iter().skip(rule.keep) {
            if !policy.is_immutable(repo, r.tag.as_str()) && !out.iter().any(|o| o.tag == r.tag) {
                out.push(r.clone());
            }
        }
    }
    out
}

/// Applies the policy's retention to `repo`; returns what went (or would go).
pub(super) async fn apply(
    meta: &dyn MetaStore,
    policy: &Policy,
    repo: &RepoName,
    dry_run: bool,
) -> Result<Vec<GcItem>> {
    if policy.retention_for(repo).next().is_none() {
        return Ok(Vec::new());
    }
    let records = tags(meta, repo).await?;
    let mut out = Vec::new();
    for r in pruned(policy, repo, policy.retention_for(repo), &records) {
        if !dry_run {
            meta.delete_tag(repo, &r.tag).await?;
        }
        out.push(GcItem::Tag {
            repo: repo.clone(),
            tag: r.tag.to_string(),
            digest: r.digest,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Algorithm, Tag};

    #[test]
    fn the_most_recent_matching_tags_are_kept_and_immutable_ones_never_pruned() {
        let policy = Policy::parse(
            "[[retention]]\nrepositories = [\"ci/*\"]\ntags = [\"pr-*\"]\nkeep = 2\n\n\
             [[immutable]]\nrepositories = [\"ci/*\"]\ntags = [\"pr-1\"]\n",
        )
        .expect("policy");
        let repo = RepoName::parse("ci/app").expect("name");
        let record = |tag: &str, ms: Option<u64>| TagRecord {
            tag: Tag::parse(tag).expect("tag"),
            digest: Algorithm::Sha256.digest(tag.as_bytes()),
            pushed_ms: ms,
        };
        let records = [
            record("pr-1", Some(1)),
            record("pr-2", Some(2)),
            record("pr-3", Some(3)),
            record("pr-4", Some(4)),
            record("pr-old", None),
            record("main", Some(0)),
        ];
        let gone: Vec<String> = pruned(&policy, &repo, policy.retention_for(&repo), &records)
            .iter()
            .map(|r| r.tag.to_string())
            .collect();
        assert_eq!(
            gone,
            ["pr-2", "pr-old"],
            "pr-4 and pr-3 kept, pr-1 immutable, main unmatched"
        );
    }
}
