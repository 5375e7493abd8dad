//! The Lambda path, offline: real API Gateway HTTP API (payload v2) events from
//! `tests/fixtures/apigw/` go through `lambda_http`'s own event parser into the routers each
//! function serves, on the embedded backends. This is what a deployed function does per request,
//! minus the runtime API loop.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{Response, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;
use wharf::api::{self, AppState};
use wharf::config::Config;

/// The blob every fixture refers to: `{}`, pushed monolithically, used as config and layer.
const BLOB_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

fn fixture_text(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/apigw")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

async fn invoke(router: fn(AppState) -> Router, state: &AppState, fixture: &str) -> Response<Body> {
    let request = lambda_http::request::from_str(&fixture_text(fixture))
        .unwrap_or_else(|e| panic!("{fixture} is not an API Gateway event: {e}"));
    router(state.clone())
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {})
}

async fn body_bytes(response: Response<Body>) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes()
        .to_vec()
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
}

async fn local_state(dir: &tempfile::TempDir) -> AppState {
    let config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    wharf::runtime::build_state(&config, None, wharf::runtime::KeyUse::Sign)
        .await
        .expect("state on the embedded backends")
}

/// Pushes the fixtures' blob and manifest through the write-side functions.
async fn push_fixture_image(state: &AppState) -> String {
    let response = invoke(api::uploads::router, state, "uploads-post-monolithic").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "docker-content-digest"), BLOB_DIGEST);
    let manifest = invoke(api::manifests::push_router, state, "manifests-put-tag").await;
    assert_eq!(manifest.status(), StatusCode::CREATED);
    header(&manifest, "docker-content-digest").to_owned()
}

#[tokio::test]
async fn base_event_answers_the_version_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    let response = invoke(api::base::router, &state, "base-get-v2").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(body_bytes(response).await, b"{}");
}

#[tokio::test]
async fn catch_all_event_gets_an_oci_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    let response = invoke(api::base::router, &state, "catch-all-unknown").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value =
        serde_json::from_slice(&body_bytes(response).await).expect("OCI error JSON");
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
}

#[tokio::test]
async fn base64_body_with_a_slashed_name_is_pushed_and_pulled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    let response = invoke(api::uploads::router, &state, "uploads-post-monolithic").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/acme/tools/app/blobs/{BLOB_DIGEST}")
    );
    let head = invoke(api::blobs::pull_router, &state, "blobs-head").await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), "2");
    let get = invoke(api::blobs::pull_router, &state, "blobs-get").await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(header(&get, "docker-content-digest"), BLOB_DIGEST);
    assert_eq!(
        body_bytes(get).await,
        b"{}",
        "the decoded bytes, not the base64"
    );
}

#[tokio::test]
async fn manifest_pushed_through_one_function_is_pulled_through_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    let pushed = push_fixture_image(&state).await;
    let event: serde_json::Value =
        serde_json::from_str(&fixture_text("manifests-put-tag")).expect("fixture JSON");
    let sent = event["body"].as_str().expect("manifest body");
    let expected = format!("sha256:{}", hex::encode(Sha256::digest(sent.as_bytes())));
    assert_eq!(pushed, expected, "the digest is over the bytes as sent");
    let response = invoke(api::manifests::pull_router, &state, "manifests-get-tag").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "docker-content-digest"), expected);
    assert_eq!(
        header(&response, "content-type"),
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(body_bytes(response).await, sent.as_bytes());
}

#[tokio::test]
async fn pull_side_functions_refuse_writes_and_write_side_refuses_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    let put = invoke(api::manifests::pull_router, &state, "manifests-put-tag").await;
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    let get = invoke(api::manifests::push_router, &state, "manifests-get-tag").await;
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let get = invoke(api::blobs::delete_router, &state, "blobs-get").await;
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value =
        serde_json::from_slice(&body_bytes(get).await).expect("OCI error JSON");
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
}

#[tokio::test]
async fn tag_list_event_honours_its_query_string() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    push_fixture_image(&state).await;
    let response = invoke(api::tags::router, &state, "tags-list-paged").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value =
        serde_json::from_slice(&body_bytes(response).await).expect("tag list JSON");
    assert_eq!(body["name"], "acme/tools/app");
    assert_eq!(body["tags"], serde_json::json!(["v1"]));
}

#[tokio::test]
async fn invalid_name_in_the_raw_path_is_name_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    let response = invoke(
        api::manifests::pull_router,
        &state,
        "manifests-get-invalid-name",
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value =
        serde_json::from_slice(&body_bytes(response).await).expect("OCI error JSON");
    assert_eq!(body["errors"][0]["code"], "NAME_INVALID");
}

#[tokio::test]
async fn percent_encoded_digest_in_the_raw_path_is_decoded_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    let pushed = push_fixture_image(&state).await;
    let response = invoke(
        api::manifests::pull_router,
        &state,
        "manifests-get-digest-encoded",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "docker-content-digest"), pushed);
}

#[tokio::test]
async fn referrers_event_applies_the_artifact_type_filter_from_the_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    push_fixture_image(&state).await;
    let response = invoke(api::referrers::router, &state, "referrers-get-filtered").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "oci-filters-applied"), "artifactType");
    let body: serde_json::Value =
        serde_json::from_slice(&body_bytes(response).await).expect("image index JSON");
    assert_eq!(body["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(body["manifests"], serde_json::json!([]));
}

/// What a function hands the Lambda runtime for `fixture`: the event parsed as the runtime
/// parses it, served by `group` behind the function's own middleware ([`wharf_lambda::app`]),
/// and the answer converted by `lambda_http`'s own response path into the payload-v2 response
/// JSON that API Gateway receives.
async fn invoke_runtime(
    group: fn(AppState) -> Router,
    state: &AppState,
    fixture: &str,
) -> serde_json::Value {
    use tower::Service;
    let event: lambda_http::request::LambdaRequest = serde_json::from_str(&fixture_text(fixture))
        .unwrap_or_else(|e| panic!("{fixture} is not an API Gateway event: {e}"));
    let mut adapter = lambda_http::Adapter::from(wharf_lambda::app(group, state.clone()));
    let response = adapter
        .call(lambda_http::LambdaEvent::new(
            event,
            lambda_http::Context::default(),
        ))
        .await
        .unwrap_or_else(|e| match e {});
    serde_json::to_value(&response).expect("the response serializes")
}

#[tokio::test]
async fn a_head_of_a_30_mb_blob_answers_its_length_with_no_body_through_the_runtime_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = local_state(&dir).await;
    let bytes = vec![0u8; 30_000_000];
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let push = axum::http::Request::post(format!("/v2/acme/big/blobs/uploads/?digest={digest}"))
        .header("content-length", bytes.len())
        .body(Body::from(bytes))
        .expect("request");
    let pushed = api::uploads::router(state.clone())
        .oneshot(push)
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let response = invoke_runtime(api::blobs::pull_router, &state, "blobs-head-large").await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        response["headers"]["content-length"], "30000000",
        "the blob's length, not the empty body's: {response}"
    );
    assert_eq!(
        response["headers"]["docker-content-digest"],
        digest.as_str()
    );
    assert!(
        response["body"].is_null() || response["body"] == "",
        "a HEAD carries no body: {response}"
    );
}

#[tokio::test]
async fn without_public_url_the_challenge_names_the_https_realm_api_gateway_was_reached_at() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        auth: Some(wharf::config::AuthConfig {
            public_url: None,
            ..toml_auth()
        }),
        ..Config::default()
    };
    let state = wharf::runtime::build_state(&config, None, wharf::runtime::KeyUse::Sign)
        .await
        .expect("state with auth");
    let response = invoke_runtime(api::base::router, &state, "base-get-v2").await;
    assert_eq!(response["statusCode"], 401, "{response}");
    assert_eq!(
        response["headers"]["www-authenticate"],
        "Bearer realm=\"https://abc123defg.execute-api.us-east-1.amazonaws.com/token\",service=\"wharf\"",
        "the challenge reaches API Gateway unchanged and names HTTPS: {response}"
    );
    let body: serde_json::Value =
        serde_json::from_str(response["body"].as_str().expect("a JSON body")).expect("OCI error");
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
}

fn toml_auth() -> wharf::config::AuthConfig {
    toml::from_str("policy = \"\"").expect("an [auth] table with an empty policy")
}
