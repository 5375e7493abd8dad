//! Rate limits through the whole router: over its burst a client gets `TOOMANYREQUESTS` with
//! `Retry-After`, and other clients are not affected.
use super::*;
use crate::api::ClientAddr;
use crate::config::RateLimitConfig;

async fn get_from(router: &Router, ip: [u8; 4]) -> (StatusCode, HeaderMap, bytes::Bytes) {
    let mut req = Request::get("/v2/").body(Body::empty()).expect("request");
    req.extensions_mut().insert(ClientAddr(ip.into()));
    let res = router.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn a_client_over_its_burst_gets_too_many_requests_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = RateLimitConfig {
        enabled: Some(true),
        anonymous_per_second: 1,
        anonymous_burst: 3,
        ..RateLimitConfig::default()
    };
    let router = router(state_in(dir.path()).await.with_rate_limits(&limits));
    for _ in 0..3 {
        assert_eq!(get_from(&router, [192, 0, 2, 1]).await.0, StatusCode::OK);
    }
    let (status, headers, body) = get_from(&router, [192, 0, 2, 1]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = serde_json::from_slice(&body).expect("OCI error body");
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    assert_eq!(get_from(&router, [192, 0, 2, 2]).await.0, StatusCode::OK);
}

/// A registry with `[auth]` (no identity may push or read `private/*`) and rate limits on.
async fn guarded(dir: &std::path::Path, limits: &RateLimitConfig) -> Router {
    let config: crate::config::AuthConfig =
        toml::from_str(r#"policy = 'public = ["public/*"]'"#).expect("auth config");
    let auth = crate::auth::Auth::from_config(&config, dir).expect("auth");
    router(
        state_in(dir)
            .await
            .with_auth(Arc::new(auth))
            .with_rate_limits(limits),
    )
}

async fn send_from(router: &Router, ip: [u8; 4], uri: &str) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::get(uri)
        .header("host", "registry.test")
        .header("authorization", "Bearer not.a.token")
        .body(Body::empty())
        .expect("request");
    req.extensions_mut().insert(ClientAddr(ip.into()));
    let res = router.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn a_flood_of_refused_requests_from_one_address_is_limited_before_authorization() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = RateLimitConfig {
        enabled: Some(true),
        anonymous_per_second: 1,
        anonymous_burst: 3,
        ..RateLimitConfig::default()
    };
    let router = guarded(dir.path(), &limits).await;
    let private = "/v2/private/app/manifests/v1";
    for _ in 0..3 {
        let (status, _, body) = send_from(&router, [198, 51, 100, 7], private).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // Over the burst: limited before the token is looked at, and before the path is parsed.
    for uri in [
        private,
        "/v2/Not..A..Name/manifests/v1",
        "/token?service=wharf",
    ] {
        let (status, headers, body) = send_from(&router, [198, 51, 100, 7], uri).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{uri}: {body}");
        assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS", "{uri}");
        assert!(headers.get("retry-after").is_some(), "{uri}");
    }
    // Another address is refused on its own merits.
    let (status, _, _) = send_from(&router, [198, 51, 100, 8], private).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
