//! The table rights of `infra/template.yaml`, read as data: every function may write only the
//! partitions its code writes, and nothing may delete the audit trail or touch the stored policy.
//!
//! IAM authorizes each item of a `TransactWriteItems` as its own `PutItem`, `UpdateItem`,
//! `DeleteItem` or `ConditionCheckItem`, with that item's partition key as
//! `dynamodb:LeadingKeys` ("Using IAM with DynamoDB transactions" and "Using IAM policy
//! conditions for fine-grained access control", DynamoDB developer guide), so one table of
//! (function, action) → partitions covers single writes and transactions alike. The partitions
//! are spelled by the registry's own `storage::key::Key`, so renaming a key without the template
//! fails here, and a pattern granting more than the code writes fails too.
//!
//! Which function writes which key was read from the code (the functions' routers and
//! `storage/dynamodb/*`, `gc/*`); a change there must change [`written`].

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;
use wharf::oci::{Digest, RepoName, Tag};
use wharf::storage::key::Key;
use wharf_e2e::sam::{actions, functions, statements, string_like, template_path};

/// Table actions that only read.
const TABLE_READS: [&str; 4] = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
];

fn template() -> Value {
    let text = std::fs::read_to_string(template_path()).expect("infra/template.yaml");
    serde_norway::from_str(&text).expect("the template is YAML")
}

/// Sample keys of every kind the code writes, by name.
struct Keys {
    repo: RepoName,
    tag: Tag,
    digest: Digest,
}

impl Keys {
    fn new() -> Self {
        Keys {
            repo: RepoName::parse("acme/team/app").expect("name"),
            tag: Tag::parse("v1").expect("tag"),
            digest: Digest::parse(
                "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            )
            .expect("digest"),
        }
    }

    /// Partition keys of `kinds`.
    fn pks(&self, kinds: &[&str]) -> Vec<String> {
        kinds.iter().flat_map(|k| self.pk(k)).collect()
    }

    fn pk(&self, kind: &str) -> Vec<String> {
        let (r, t, d) = (&self.repo, &self.tag, &self.digest);
        let keys = match kind {
            "tag" => vec![Key::Tag(r, t)],
            "manifest" => vec![Key::Manifest(r, d)],
            "blob link" => vec![Key::Blob(r, d)],
            "referrer" => vec![Key::Referrer(r, d, d)],
            "pin" => vec![Key::Pin(r, d)],
            "repository index" => vec![Key::Repo(r)],
            "upload session" => vec![Key::Upload("0123456789abcdef0123456789abcdef")],
            "policy" => vec![Key::Policy],
            "digest record" => vec![Key::BlobActivity(d)],
            "gc epoch" => vec![Key::GcEpoch],
            "gc epoch shard" => vec![Key::GcEpochShard(0), Key::GcEpochShard(0xff)],
            "audit event" => vec![Key::Audit(0, 0), Key::Audit(1_764_547_200_000, u64::MAX)],
            other => panic!("no key kind {other:?}"),
        };
        keys.iter().map(Key::pk).collect()
    }
}

/// What each function's code writes: (function, action) → key kinds.
fn written() -> BTreeMap<(&'static str, &'static str), &'static [&'static str]> {
    [
        // manifests::push_router: put_manifest_guarded (manifest, tag, referrer, index, audit
        // event, and a spilled manifest's digest record, checking references and the epoch
        // shard; an immutable tag's pins by UpdateItem), delete_manifest (checking the pin,
        // removing a stale one), delete_tag, record_audit.
        (
            ("ManifestsPushFunction", "dynamodb:PutItem"),
            &[
                "manifest",
                "tag",
                "referrer",
                "repository index",
                "audit event",
                "digest record",
            ][..],
        ),
        (
            ("ManifestsPushFunction", "dynamodb:UpdateItem"),
            &["pin"][..],
        ),
        (
            ("ManifestsPushFunction", "dynamodb:DeleteItem"),
            &["tag", "manifest", "referrer", "pin"][..],
        ),
        (
            ("ManifestsPushFunction", "dynamodb:ConditionCheckItem"),
            &["blob link", "manifest", "gc epoch shard", "pin"][..],
        ),
        // blobs::delete_router: unlink_blob (checking the pin, removing a stale one).
        (
            ("BlobsDeleteFunction", "dynamodb:DeleteItem"),
            &["blob link", "pin"][..],
        ),
        (
            ("BlobsDeleteFunction", "dynamodb:ConditionCheckItem"),
            &["pin"][..],
        ),
        // uploads::router (and direct uploads): the session, and link_blob (link, digest
        // record, index, epoch shard check).
        (
            ("UploadsFunction", "dynamodb:PutItem"),
            &[
                "upload session",
                "blob link",
                "digest record",
                "repository index",
            ][..],
        ),
        (
            ("UploadsFunction", "dynamodb:DeleteItem"),
            &["upload session"][..],
        ),
        (
            ("UploadsFunction", "dynamodb:ConditionCheckItem"),
            &["gc epoch shard"][..],
        ),
        // gc: begin_gc (epoch and shards), hold_blob, forget_blob, delete_upload_if,
        // retention's delete_tag.
        (
            ("GcFunction", "dynamodb:UpdateItem"),
            &["gc epoch", "gc epoch shard", "digest record"][..],
        ),
        (
            ("GcFunction", "dynamodb:DeleteItem"),
            &["digest record", "upload session", "tag"][..],
        ),
    ]
    .into()
}

/// The `dynamodb:LeadingKeys` patterns of a write statement; panics unless the statement is an
/// Allow on the table restricted by exactly `ForAllValues:StringLike` on the leading keys.
fn leading_keys(name: &str, statement: &Value) -> Vec<String> {
    let sid = statement["Sid"].as_str().unwrap_or("?");
    assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{name}/{sid}");
    let resource = &statement["Resource"];
    assert!(
        matches!(resource, Value::Tagged(t) if t.tag == "GetAtt" && t.value.as_str() == Some("Table.Arn")),
        "{name}/{sid}: the table itself, not {resource:?}"
    );
    let condition = statement["Condition"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{name}/{sid} writes the table without a LeadingKeys condition"));
    assert_eq!(
        condition
            .keys()
            .filter_map(|k| k.as_str())
            .collect::<Vec<_>>(),
        ["ForAllValues:StringLike"],
        "{name}/{sid}: the leading keys, all of them, by pattern"
    );
    let keys = condition["ForAllValues:StringLike"]
        .as_mapping()
        .expect("condition keys");
    assert_eq!(
        keys.keys().filter_map(|k| k.as_str()).collect::<Vec<_>>(),
        ["dynamodb:LeadingKeys"],
        "{name}/{sid}"
    );
    keys["dynamodb:LeadingKeys"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{name}/{sid}: a list of patterns"))
        .iter()
        .map(|p| p.as_str().expect("pattern").to_owned())
        .collect()
}

/// (function, write action) → the patterns its statements grant.
fn granted(root: &Value) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (name, function) in functions(root) {
        for statement in statements(function) {
            let writes: Vec<String> = actions(statement)
                .into_iter()
                .filter(|a| {
                    (a.starts_with("dynamodb:") || a == "*") && !TABLE_READS.contains(&a.as_str())
                })
                .collect();
            if writes.is_empty() {
                continue;
            }
            let patterns = leading_keys(&name, statement);
            for action in writes {
                out.entry((name.clone(), action))
                    .or_default()
                    .extend(patterns.iter().cloned());
            }
        }
    }
    out
}

#[test]
fn every_table_write_is_restricted_to_exactly_the_partitions_the_code_writes() {
    let root = template();
    let granted = granted(&root);
    let keys = Keys::new();
    let written = written();
    let granted_pairs: BTreeSet<(String, String)> = granted.keys().cloned().collect();
    let written_pairs: BTreeSet<(String, String)> = written
        .keys()
        .map(|(f, a)| (f.to_string(), a.to_string()))
        .collect();
    assert_eq!(
        granted_pairs, written_pairs,
        "each function holds exactly the write actions its code uses"
    );
    for ((function, action), kinds) in &written {
        let patterns = &granted[&(function.to_string(), action.to_string())];
        let pks = keys.pks(kinds);
        for pk in &pks {
            assert!(
                patterns.iter().any(|p| string_like(p, pk)),
                "{function} {action}: its code writes {pk:?}, which {patterns:?} refuses"
            );
        }
        for p in patterns {
            assert!(
                pks.iter().any(|pk| string_like(p, pk)),
                "{function} {action}: {p:?} grants a partition its code never writes ({pks:?})"
            );
        }
    }
}

#[test]
fn no_function_may_delete_or_rewrite_the_audit_trail_or_touch_the_stored_policy() {
    // No admin function is deployed: the audit trail is appended by manifests-push and never
    // deleted or updated by any function; the policy is written by `wharf policy push` only.
    let root = template();
    let keys = Keys::new();
    let audit = keys.pk("audit event");
    let policy = keys.pk("policy");
    for ((function, action), patterns) in granted(&root) {
        let matches = |pks: &[String]| {
            pks.iter()
                .any(|pk| patterns.iter().any(|p| string_like(p, pk)))
        };
        assert!(
            !matches(&policy),
            "{function} may {action} the stored policy ({patterns:?})"
        );
        let appends = function == "ManifestsPushFunction" && action == "dynamodb:PutItem";
        assert!(
            appends || !matches(&audit),
            "{function} may {action} audit items ({patterns:?})"
        );
    }
}

#[test]
fn the_string_like_stand_in_follows_iams_wildcards() {
    assert!(string_like("REPO#*", "REPO#a/b/c"));
    assert!(string_like("GC#??", "GC#0a"));
    assert!(!string_like("GC#??", "GC#0"));
    assert!(!string_like("GC", "GC#00"));
    assert!(!string_like("REPO#*", "repo#a"));
    assert!(string_like("*", "AUDIT#1"));
}

#[test]
fn an_upload_lane_or_store_endpoint_over_plain_http_is_refused_by_its_parameter_pattern() {
    // CloudFormation matches AllowedPattern (a Java regular expression) against the whole
    // value; these patterns anchor themselves, which `regex` reads the same way.
    let root = template();
    for (parameter, empty_ok) in [
        ("UploadLaneUrl", true),
        ("BlobsEndpoint", false),
        ("CatalogEndpoint", true),
    ] {
        let pattern = root["Parameters"][parameter]["AllowedPattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{parameter} has an AllowedPattern"));
        let re = regex::Regex::new(&format!("^(?:{pattern})$")).expect("pattern");
        assert!(re.is_match("https://uploads.example.com"), "{parameter}");
        assert_eq!(re.is_match(""), empty_ok, "{parameter}: empty");
        for refused in [
            "http://uploads.example.com",
            "HTTP://uploads.example.com",
            "ftp://uploads.example.com",
            "uploads.example.com",
        ] {
            assert!(!re.is_match(refused), "{parameter} accepts {refused:?}");
        }
    }
}
