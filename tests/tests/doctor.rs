//! `wharf doctor` cannot pass vacuously: against registries that lack a behaviour a deployment
//! needs, the check for that behaviour fails, the verdict is FAIL and the exit status non-zero.
//! (Its passing run, against the serverless emulator stack, is a step of `push_paths.rs`.)
//!
//! - `wharf serve` on local storage streams blob GETs itself (no object store to redirect to)
//!   and offers no direct path: "blob GET redirect" FAILs, "direct upload, wrong bytes" is
//!   skipped, every other check passes, and the doctor deletes what it pushed.
//! - The same registry behind a stand-in for an API Gateway whose depth-5 upload route is
//!   missing (the request falls to the catch-all, which answers 404 `NAME_UNKNOWN`, as the
//!   template's `$default` function does): "uploads route" FAILs and names depth 5.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wharf::auth::testing::TestIssuer;
use wharf_e2e::Wharf;
use wharf_e2e::authreg::AUDIENCE;
use wharf_e2e::curl;
use wharf_e2e::doctor::{self, Report};

/// Per-check limit: a loaded 2-core machine, a debug build.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The `[auth]` table (`WHARF_AUTH`): the test issuer trusted, its `acme/doctor` main branch
/// allowed everything the doctor does under `wharf-doctor` (the depth-1 probe) and below.
fn auth_table(issuer: &str) -> String {
    format!(
        r#"service = "wharf"
policy = '''
[[identity]]
name = "doctor"
issuer = "{issuer}"
subject = "repo:acme/doctor:ref:refs/heads/main"
[[identity.grant]]
repositories = ["wharf-doctor", "wharf-doctor/**"]
actions = ["pull", "push", "delete"]
'''

[[issuer]]
issuer = "{issuer}"
audiences = ["{AUDIENCE}"]
"#
    )
}

/// A registry with authentication on local storage, and the doctor's `USER:SECRET`.
struct Registry {
    wharf: Wharf,
    creds: String,
    _issuer: TestIssuer,
}

fn registry() -> Result<Registry> {
    let issuer = TestIssuer::start();
    let wharf = Wharf::start_with_env(vec![("WHARF_AUTH".into(), auth_table(issuer.url()))])?;
    let id = issuer.mint(&issuer.github_claims("acme/doctor", "refs/heads/main", AUDIENCE));
    Ok(Registry {
        wharf,
        creds: format!("ci:{id}"),
        _issuer: issuer,
    })
}

/// Fails unless no token reached the output.
fn assert_no_secrets(report: &Report, creds: &str) {
    let (_, id_token) = creds.split_once(':').unwrap_or_default();
    assert!(!report.output.contains(id_token), "{}", report.output);
    assert!(!report.output.contains("eyJ"), "{}", report.output);
}

/// The repository's tags, through the registry's own token flow (empty when it is unknown).
fn tags(reg: &Registry, repo: &str) -> Result<Vec<String>> {
    let base = reg.wharf.url();
    let challenge = curl::Request::get(format!("{base}/v2/")).send()?;
    let value = challenge
        .header("www-authenticate")
        .context("no challenge")?
        .to_owned();
    let service = value
        .split("service=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let (user, secret) = reg.creds.split_once(':').context("creds")?;
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let token = curl::Request::get(format!(
        "{base}/token?service={service}&scope=repository:{repo}:pull"
    ))
    .header("Authorization", format!("Basic {basic}"))
    .send()?
    .json()?["token"]
        .as_str()
        .context("no token")?
        .to_owned();
    let list = curl::Request::get(format!("{base}/v2/{repo}/tags/list"))
        .header("Authorization", format!("Bearer {token}"))
        .send()?;
    if list.status == 404 {
        return Ok(Vec::new());
    }
    list.expect_status(200)?;
    Ok(list.json()?["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect())
}

#[test]
fn doctor_fails_the_redirect_check_against_a_registry_that_streams_blobs() -> Result<()> {
    let reg = registry()?;
    let creds = reg.creds.clone();
    let repo = "wharf-doctor/fast";
    let report = doctor::run(&reg.wharf.url(), &creds, repo, CHECK_TIMEOUT)?;
    eprintln!("{}", report.output);
    report.expect(&[
        ("challenge", "ok"),
        ("token", "ok"),
        ("uploads route", "ok"),
        ("blob push", "ok"),
        ("blob HEAD", "ok"),
        ("blob GET redirect", "FAIL"),
        ("direct upload, wrong bytes", "skipped"),
        ("concurrent pushes", "ok"),
        ("cleanup", "ok"),
    ])?;
    let (_, why) = report.get("blob GET redirect")?;
    assert!(why.starts_with("200: the registry streamed"), "{why}");
    let (_, why) = report.get("direct upload, wrong bytes")?;
    assert_eq!(why, "no direct path");
    let (_, why) = report.get("challenge")?;
    assert!(why.contains("plain http, accepted"), "{why}");
    assert!(
        report
            .verdict
            .starts_with("verdict: FAIL (7 ok, 1 failed, 1 skipped: blob GET redirect)"),
        "{}",
        report.verdict
    );
    assert!(!report.success, "a failed check exits non-zero");
    assert_no_secrets(&report, &creds);
    assert_eq!(
        tags(&reg, repo)?,
        Vec::<String>::new(),
        "the doctor deleted its tags"
    );
    Ok(())
}

/// The stand-in gateway: forwards everything to `upstream`, except upload POSTs at name depth
/// 5, which get the catch-all's answer.
struct Gateway {
    upstream: String,
    client: reqwest::Client,
}

fn is_deep_upload_post(method: &str, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    // ["", "v2", n1..n5, "blobs", "uploads"]
    method == "POST" && segments.ends_with(&["blobs", "uploads"]) && segments.len() == 2 + 5 + 2
}

async fn gateway(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if is_deep_upload_post(method.as_str(), &path) {
        let body = r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":null}]}"#;
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            body,
        )
            .into_response();
    }
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    // The Host the client used goes on, as API Gateway hands its own domain to the function:
    // the registry then names a token realm on the gateway's origin, the only one a client
    // sends credentials to.
    let headers = request.headers().clone();
    let Ok(body) = axum::body::to_bytes(request.into_body(), 16 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let sent = gw
        .client
        .request(method, format!("{}{path}{query}", gw.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(res) = sent else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = res.status();
    let mut out_headers = HeaderMap::new();
    for (k, v) in res.headers() {
        out_headers.append(k.clone(), v.clone());
    }
    let bytes = res.bytes().await.unwrap_or_default();
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    *out.headers_mut() = out_headers;
    out
}

#[test]
fn doctor_fails_the_uploads_route_check_when_deep_upload_posts_reach_a_catch_all() -> Result<()> {
    assert!(is_deep_upload_post("POST", "/v2/a/b/c/d/e/blobs/uploads/"));
    assert!(is_deep_upload_post("POST", "/v2/a/b/c/d/e/blobs/uploads"));
    assert!(!is_deep_upload_post("POST", "/v2/a/blobs/uploads/"));
    let reg = registry()?;
    let creds = reg.creds.clone();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
    let port = listener.local_addr()?.port();
    let gw = Arc::new(Gateway {
        upstream: reg.wharf.url(),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
    });
    let app = axum::Router::new().fallback(gateway).with_state(gw);
    runtime.spawn(async move { axum::serve(listener, app).await });
    let report = doctor::run(
        &format!("http://127.0.0.1:{port}"),
        &creds,
        "wharf-doctor/routes",
        CHECK_TIMEOUT,
    )?;
    report.expect(&[
        ("token", "ok"),
        ("uploads route", "FAIL"),
        ("blob push", "ok"),
    ])?;
    let (_, why) = report.get("uploads route")?;
    assert!(
        why.contains(
            "depth 5, POST /v2/wharf-doctor/routes/d3/d4/d5/blobs/uploads/: 404 NAME_UNKNOWN"
        ),
        "{why}"
    );
    assert!(
        !why.contains("depth 1"),
        "depth 1 still reaches the uploads function: {why}"
    );
    assert!(
        report.verdict.starts_with("verdict: FAIL"),
        "{}",
        report.verdict
    );
    assert!(
        report.verdict.contains("uploads route"),
        "{}",
        report.verdict
    );
    assert!(!report.success);
    assert_no_secrets(&report, &creds);
    Ok(())
}
