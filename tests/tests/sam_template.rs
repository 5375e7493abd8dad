//! The SAM template, read as data: every endpoint of ARCHITECTURE.md §2 reaches exactly one
//! function, with the right method, for repository names of every depth the template documents;
//! pull-side functions have no write right; every function's binary exists in the workspace; the
//! catalog function has no route, is triggered by the table's tag and referrer items (the stream
//! filter checked against the real table keys) and a schedule, and reads the registry only.
//!
//! Matching follows API Gateway HTTP APIs: a route matches a request with the same method (or
//! `ANY`) and the same number of path segments, each literal equal and each `{param}` non-empty.
//! Requiring exactly one match (not "the most specific") also proves no two routes overlap.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_norway::Value;
use wharf::storage::key::Key;
use wharf_e2e::sam::{Routes, actions, functions, statements, template_path};

/// The deepest repository name the template routes; also stated in its header comment.
const MAX_NAME_DEPTH: usize = 5;

/// Functions on the pull path: they must hold read-only rights.
const PULL_SIDE: [&str; 6] = [
    "BaseFunction",
    "TokenFunction",
    "ManifestsPullFunction",
    "BlobsPullFunction",
    "TagsFunction",
    "ReferrersFunction",
];

/// Actions a pull-side function may hold.
const READ_ACTIONS: [&str; 4] = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "secretsmanager:GetSecretValue",
];

const DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

struct Template {
    root: Value,
    routes: Routes,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load() -> Template {
    let text = std::fs::read_to_string(template_path()).expect("infra/template.yaml");
    Template {
        root: serde_norway::from_str(&text).expect("the template is YAML"),
        routes: Routes::load().expect("the template's routes"),
    }
}

fn owners(t: &Template, method: &str, path: &str) -> Vec<String> {
    t.routes
        .matching(method, path)
        .iter()
        .map(|r| r.function.clone())
        .collect()
}

/// Every endpoint of ARCHITECTURE.md §2 for repository `name`: (method, path, owning function).
fn named_endpoints(name: &str) -> Vec<(&'static str, String, &'static str)> {
    let upload = format!("/v2/{name}/blobs/uploads/8d4c3b0e-1f2a-4b5c-9d6e-7f8091a2b3c4");
    vec![
        (
            "GET",
            format!("/v2/{name}/manifests/latest"),
            "ManifestsPullFunction",
        ),
        (
            "HEAD",
            format!("/v2/{name}/manifests/{DIGEST}"),
            "ManifestsPullFunction",
        ),
        (
            "PUT",
            format!("/v2/{name}/manifests/v1.0"),
            "ManifestsPushFunction",
        ),
        (
            "DELETE",
            format!("/v2/{name}/manifests/{DIGEST}"),
            "ManifestsPushFunction",
        ),
        (
            "GET",
            format!("/v2/{name}/blobs/{DIGEST}"),
            "BlobsPullFunction",
        ),
        (
            "HEAD",
            format!("/v2/{name}/blobs/{DIGEST}"),
            "BlobsPullFunction",
        ),
        (
            "DELETE",
            format!("/v2/{name}/blobs/{DIGEST}"),
            "BlobsDeleteFunction",
        ),
        (
            "POST",
            format!("/v2/{name}/blobs/uploads/"),
            "UploadsFunction",
        ),
        ("PATCH", upload.clone(), "UploadsFunction"),
        ("PUT", upload.clone(), "UploadsFunction"),
        ("GET", upload.clone(), "UploadsFunction"),
        ("DELETE", upload, "UploadsFunction"),
        ("GET", format!("/v2/{name}/tags/list"), "TagsFunction"),
        (
            "GET",
            format!("/v2/{name}/referrers/{DIGEST}"),
            "ReferrersFunction",
        ),
    ]
}

/// Names of `depth` components: plain ones, and ones made of the API's own keywords, which
/// would expose any overlap between the routes of different depths.
fn names(depth: usize) -> Vec<String> {
    let plain = ["acme", "team", "tools", "app", "x", "y"];
    let keywords = ["blobs", "uploads", "manifests", "tags", "list", "referrers"];
    vec![plain[..depth].join("/"), keywords[..depth].join("/")]
}

#[test]
fn every_endpoint_reaches_exactly_one_function_at_every_name_depth() {
    let t = load();
    let mut checked = 0;
    for depth in 1..=MAX_NAME_DEPTH {
        for name in names(depth) {
            for (method, path, want) in named_endpoints(&name) {
                assert_eq!(
                    owners(&t, method, &path),
                    vec![want.to_owned()],
                    "{method} {path} (name depth {depth})"
                );
                checked += 1;
            }
        }
    }
    for (method, path, want) in [
        ("GET", "/v2/", "BaseFunction"),
        ("GET", "/v2/_catalog", "TagsFunction"),
        ("GET", "/token", "TokenFunction"),
        ("POST", "/token", "TokenFunction"),
        ("GET", "/token/keys", "TokenFunction"),
    ] {
        assert_eq!(
            owners(&t, method, path),
            vec![want.to_owned()],
            "{method} {path}"
        );
        checked += 1;
    }
    assert_eq!(checked, MAX_NAME_DEPTH * 2 * 14 + 5);
}

#[test]
fn names_deeper_than_the_maximum_and_unknown_paths_fall_to_the_catch_all() {
    let t = load();
    assert_eq!(
        t.routes.catch_all, "base",
        "the $default route (Routes::load refuses two)"
    );
    let deep = names(MAX_NAME_DEPTH + 1).remove(0);
    for (method, path, _) in named_endpoints(&deep) {
        assert!(owners(&t, method, &path).is_empty(), "{method} {path}");
    }
    assert!(owners(&t, "POST", "/v2/acme/manifests/latest").is_empty());
    assert!(owners(&t, "GET", "/v2/acme").is_empty());
}

#[test]
fn a_request_with_or_without_the_trailing_slash_reaches_the_same_route() {
    // API Gateway routes `/x/` to the route `/x` (the slash stays in `rawPath`), so the spec's
    // `POST …/blobs/uploads/` and `GET /v2/` reach the routes declared without the slash.
    let t = load();
    for name in ["acme", "a/b/c/d/e"] {
        for path in [
            format!("/v2/{name}/blobs/uploads/"),
            format!("/v2/{name}/blobs/uploads"),
        ] {
            assert_eq!(owners(&t, "POST", &path), ["UploadsFunction"], "{path}");
        }
    }
    assert_eq!(owners(&t, "GET", "/v2/"), ["BaseFunction"]);
    assert_eq!(owners(&t, "GET", "/v2"), ["BaseFunction"]);
}

#[test]
fn a_route_path_ending_in_a_slash_is_refused_like_api_gateway_refuses_it() {
    // serverless-application-model#1949: SAM's OpenAPI import drops such a route without an
    // error ("the integration is created but the route is not"), and a route created directly
    // fails with "invalid route name ending in /". The stand-in refuses the template instead.
    let text = std::fs::read_to_string(template_path()).expect("infra/template.yaml");
    for (from, to) in [
        (
            "Path: /v2/{n1}/blobs/uploads\n",
            "Path: /v2/{n1}/blobs/uploads/\n",
        ),
        ("Path: /v2\n", "Path: /v2/\n"),
    ] {
        assert!(text.contains(from), "the template declares {from:?}");
        let slashed = text.replacen(from, to, 1);
        let err = Routes::parse(&slashed).expect_err("a route ending in / is refused");
        assert!(format!("{err:#}").contains("ends in /"), "{err:#}");
    }
    for bad in ["/v2/{proxy+}/x", "v2/x", "/v2//x"] {
        assert!(wharf_e2e::sam::check_route_path(bad).is_err(), "{bad}");
    }
    assert!(wharf_e2e::sam::check_route_path("/v2/{proxy+}").is_ok());
}

#[test]
fn the_api_import_fails_on_warnings_instead_of_dropping_routes() {
    let t = load();
    let api = &t.root["Resources"]["HttpApi"];
    assert_eq!(api["Type"].as_str(), Some("AWS::Serverless::HttpApi"));
    assert_eq!(
        api["Properties"]["FailOnWarnings"].as_bool(),
        Some(true),
        "without FailOnWarnings an import warning drops the route it names"
    );
}

#[test]
fn the_documented_maximum_depth_is_the_routed_one() {
    let t = load();
    let deepest = t
        .routes
        .routes
        .iter()
        .map(|r| r.path.split('/').filter(|s| s.starts_with("{n")).count())
        .max()
        .expect("routes");
    assert_eq!(deepest, MAX_NAME_DEPTH);
    let text = std::fs::read_to_string(workspace().join("infra/template.yaml")).expect("template");
    assert!(text.contains(&format!("MAXIMUM NAME DEPTH: {MAX_NAME_DEPTH}")));
}

/// Every `!Ref` target inside `v` (through `!If` and lists).
fn refs_in(v: &Value) -> BTreeSet<String> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => {
            t.value.as_str().map(str::to_owned).into_iter().collect()
        }
        Value::Tagged(t) => refs_in(&t.value),
        Value::Sequence(list) => list.iter().flat_map(refs_in).collect(),
        _ => BTreeSet::new(),
    }
}

/// The secrets a function may read (its IAM) and the ones it is told to read (its
/// environment): they must be the same set.
fn secrets_of(name: &str, function: &Value) -> BTreeSet<String> {
    let granted: BTreeSet<String> = statements(function)
        .into_iter()
        .filter(|s| actions(s).iter().any(|a| a.starts_with("secretsmanager:")))
        .flat_map(|s| {
            assert_eq!(
                actions(s),
                ["secretsmanager:GetSecretValue"],
                "{name}: only reading a secret"
            );
            let targets = refs_in(&s["Resource"]);
            assert!(!targets.is_empty(), "{name}: a secret by ARN, never `*`");
            targets
        })
        .collect();
    let vars = &function["Properties"]["Environment"]["Variables"];
    let told: BTreeSet<String> = ["WHARF_SECRET_ID", "WHARF_SIGNING_SECRET_ID"]
        .iter()
        .flat_map(|v| refs_in(&vars[*v]))
        .collect();
    assert_eq!(
        granted, told,
        "{name}: the secrets its role reads are the ones it is told of"
    );
    granted
}

#[test]
fn private_signing_keys_reach_only_the_functions_that_sign() {
    // A function that only verifies tokens holds public keys (verify_keys in the pull or push
    // secret): if it were compromised it could not mint a token granting push or delete.
    let t = load();
    let expected: BTreeMap<&str, &[&str]> = [
        ("BaseFunction", &["PullSecretArn"][..]),
        ("TokenFunction", &["SigningSecretArn"][..]),
        ("ManifestsPullFunction", &["PullSecretArn"][..]),
        ("BlobsPullFunction", &["PullSecretArn"][..]),
        ("TagsFunction", &["PullSecretArn"][..]),
        ("ReferrersFunction", &["PullSecretArn"][..]),
        ("ManifestsPushFunction", &["PushSecretArn"][..]),
        ("BlobsDeleteFunction", &["PushSecretArn"][..]),
        (
            "UploadsFunction",
            &["PushSecretArn", "SigningSecretArn"][..],
        ),
        ("GcFunction", &["PushSecretArn"][..]),
        (
            "CatalogFunction",
            &["CatalogSecretArn", "PullSecretArn"][..],
        ),
    ]
    .into();
    let all = functions(&t.root);
    assert_eq!(
        all.iter().map(|(n, _)| n.as_str()).collect::<BTreeSet<_>>(),
        expected.keys().copied().collect(),
        "every function is listed here"
    );
    let mut signers = BTreeSet::new();
    for (name, function) in &all {
        let secrets = secrets_of(name, function);
        let want: BTreeSet<String> = expected[name.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(secrets, want, "{name}");
        if secrets.contains("SigningSecretArn") {
            signers.insert(name.as_str());
        }
    }
    assert_eq!(signers, ["TokenFunction", "UploadsFunction"].into());
    // The binaries of exactly those two functions ask for the private keys.
    for (binary, signs) in [
        ("token", true),
        ("uploads", true),
        ("base", false),
        ("blobs-pull", false),
    ] {
        let dir = if binary.starts_with("blobs") {
            "blobs"
        } else {
            binary
        };
        let source =
            std::fs::read_to_string(workspace().join(format!("functions/{dir}/src/{binary}.rs")))
                .expect("function source");
        assert_eq!(source.contains("run_signing("), signs, "{binary}");
    }
}

#[test]
fn pull_side_functions_have_no_write_permission() {
    let t = load();
    let all = functions(&t.root);
    let read: BTreeSet<&str> = READ_ACTIONS.into_iter().collect();
    for name in PULL_SIDE {
        let (_, function) = all
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        for statement in statements(function) {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"));
            for action in actions(statement) {
                assert!(read.contains(action.as_str()), "{name} may {action}");
            }
        }
    }
    let writers: BTreeSet<String> = all
        .iter()
        .filter(|(_, f)| {
            statements(f)
                .iter()
                .flat_map(|s| actions(s))
                .any(|a| !read.contains(a.as_str()))
        })
        .map(|(n, _)| n.clone())
        .collect();
    // The writers: the push side, and garbage collection (scheduled, no route).
    let expected: BTreeSet<String> = [
        "ManifestsPushFunction",
        "BlobsDeleteFunction",
        "UploadsFunction",
        "GcFunction",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(writers, expected);
}

#[test]
fn every_function_builds_a_binary_of_the_workspace() {
    let t = load();
    let mut bins = BTreeMap::new();
    for dir in std::fs::read_dir(workspace().join("functions")).expect("functions/") {
        let manifest = dir.expect("entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        for line in text.lines() {
            if let Some(name) = line
                .strip_prefix("name = \"")
                .and_then(|l| l.strip_suffix('"'))
            {
                bins.insert(name.to_owned(), manifest.clone());
            }
        }
    }
    for (name, function) in functions(&t.root) {
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda")
        );
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} names no Binary"));
        assert!(
            bins.contains_key(binary),
            "{name}: no bin {binary:?} under functions/"
        );
    }
}

/// The catalog function's event sources as the template sets them: (type, properties).
fn events(function: &Value) -> Vec<(String, &Value)> {
    function["Properties"]["Events"]
        .as_mapping()
        .expect("Events")
        .values()
        .map(|e| {
            (
                e["Type"].as_str().expect("event Type").to_owned(),
                &e["Properties"],
            )
        })
        .collect()
}

/// `!Tag value` as YAML reads it.
fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

#[test]
fn the_catalog_function_is_triggered_by_tag_changes_and_a_schedule_and_reads_only() {
    let t = load();
    let all = functions(&t.root);
    let (_, catalog) = all
        .iter()
        .find(|(n, _)| n == "CatalogFunction")
        .expect("CatalogFunction");
    assert_eq!(
        catalog["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("catalog")
    );
    let timeout = catalog["Properties"]["Timeout"].as_u64().expect("Timeout");
    assert!(timeout > 29, "not bound by API Gateway's 30 s");

    // No HTTP route: only the stream and the schedule reach it.
    let events = events(catalog);
    let kinds: BTreeSet<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["DynamoDB", "Schedule"]));
    let (_, stream) = events
        .iter()
        .find(|(k, _)| k == "DynamoDB")
        .expect("stream");
    assert_eq!(
        tagged(&stream["Stream"], "GetAtt").and_then(Value::as_str),
        Some("Table.StreamArn")
    );
    assert!(stream["BatchSize"].as_u64() > Some(1), "bursts are batched");
    assert!(stream["MaximumBatchingWindowInSeconds"].as_u64() > Some(0));
    let view = t.root["Resources"]["Table"]["Properties"]["StreamSpecification"]["StreamViewType"]
        .as_str();
    assert!(matches!(view, Some("KEYS_ONLY" | "NEW_IMAGE")), "{view:?}");

    // The filter lets tag and referrer items of any repository through, and not the rest.
    let prefixes: Vec<String> = stream["FilterCriteria"]["Filters"]
        .as_sequence()
        .expect("Filters")
        .iter()
        .map(|f| {
            serde_json::from_str::<serde_json::Value>(f["Pattern"].as_str().expect("Pattern"))
                .expect("the pattern is JSON")
        })
        .filter_map(|p| p["dynamodb"]["Keys"]["sk"]["S"].as_array().cloned())
        .flatten()
        .filter_map(|c| c["prefix"].as_str().map(str::to_owned))
        .collect();
    let repo = wharf::oci::RepoName::parse("acme/app").expect("name");
    let tag = wharf::oci::Tag::parse("v1").expect("tag");
    let d = wharf::oci::Digest::parse(DIGEST).expect("digest");
    let passes = |sk: String| prefixes.iter().any(|p| sk.starts_with(p.as_str()));
    assert!(passes(Key::Tag(&repo, &tag).sk()), "{prefixes:?}");
    assert!(passes(Key::Referrer(&repo, &d, &d).sk()), "{prefixes:?}");
    assert!(!passes(Key::Blob(&repo, &d).sk()));
    assert!(!passes(Key::Upload("abc").sk()));

    // Read-only on the registry; never the push secret (its token writes blobs).
    let read: BTreeSet<&str> = READ_ACTIONS.into_iter().collect();
    for statement in statements(catalog) {
        for action in actions(statement) {
            assert!(
                read.contains(action.as_str()),
                "CatalogFunction may {action}"
            );
        }
    }
    let text = std::fs::read_to_string(template_path()).expect("template");
    let block = &text[text.find("  CatalogFunction:").expect("block")..];
    let block = &block[..block.find("  CatalogFunctionLogs:").expect("logs")];
    assert!(!block.contains("PushSecretArn"), "{block}");
    assert!(
        text.contains("LogGroupName: !Sub \"/aws/lambda/${CatalogFunction}\""),
        "log retention"
    );
}

#[test]
fn every_api_gateway_fixture_names_a_route_of_the_template_that_its_raw_path_reaches() {
    // The payload-v2 fixtures stand for what API Gateway sends: `routeKey` is the route it
    // matched, `rawPath` what the client asked for (a trailing slash kept).
    let t = load();
    let dir = workspace().join("tests/fixtures/apigw");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let event: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON");
        let method = event["requestContext"]["http"]["method"]
            .as_str()
            .expect("method");
        let raw = event["rawPath"].as_str().expect("rawPath");
        let key = event["routeKey"].as_str().expect("routeKey");
        assert_eq!(
            event["requestContext"]["routeKey"].as_str(),
            Some(key),
            "{path:?}"
        );
        let matched: Vec<String> = t
            .routes
            .matching(method, raw)
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        if key == "$default" {
            assert!(matched.is_empty(), "{path:?}: {matched:?}");
        } else {
            assert_eq!(matched, [key], "{path:?}");
        }
        seen += 1;
    }
    assert!(seen >= 10, "{seen} fixtures");
}
