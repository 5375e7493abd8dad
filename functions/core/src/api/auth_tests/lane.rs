//! Upload lanes: session URLs on the lane carry a capability that stands in for the bearer
//! token on that one session, and on nothing else.
use super::*;
use crate::api::lane::UploadRouting;

const LANE: &str = "https://uploads.registry.test";

impl Env {
    /// The same registry with a lane configured, and the lane's own router on the same stores.
    fn with_lane(&self) -> (Router, Router) {
        let mut state = self.state.clone();
        state.upload_routing = UploadRouting {
            lane_url: Some(LANE.into()),
            capabilities: true,
        };
        let lane = crate::api::uploads::lane_router(self.state.clone());
        (router(state), lane)
    }
}

async fn send(router: &Router, method: Method, uri: &str, body: impl Into<Body>) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST)
        .body(body.into())
        .expect("request");
    let res = router.clone().oneshot(req).await.expect("infallible");
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body,
        cause: String::new(),
    }
}

/// Opens a session on the registry (with a token) and returns its URL path and query on the lane.
async fn open_session(env: &Env, registry: &Router, repo: &str) -> String {
    let token = env
        .token("acme/app", &[&format!("repository:{repo}:pull,push")])
        .await;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/v2/{repo}/blobs/uploads/"))
        .header("host", HOST)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let res = registry.clone().oneshot(req).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_owned();
    let on_lane = location
        .strip_prefix(LANE)
        .unwrap_or_else(|| panic!("the Location names the lane: {location}"));
    assert!(on_lane.contains("?_cap="), "{on_lane}");
    on_lane.to_owned()
}

fn denied(r: &Reply) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.code(), "DENIED");
}

#[tokio::test]
async fn a_capability_carries_a_session_through_the_lane_without_authorization() {
    let env = Env::new().await;
    let (registry, lane) = env.with_lane();
    let url = open_session(&env, &registry, "acme/app").await;
    let r = send(&lane, Method::PATCH, &url, b"hello ".to_vec()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let next = r.header("location");
    assert!(
        next.starts_with("/v2/acme/app/blobs/uploads/") && next.contains("?_cap="),
        "the lane answers with its own URL and a fresh capability: {next}"
    );
    let r = send(&lane, Method::GET, &next, Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-5");
    let digest = DigestAlg::Sha256.digest(b"hello world");
    let r = send(
        &lane,
        Method::PUT,
        &format!("{next}&digest={digest}"),
        b"world".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let repo = crate::oci::RepoName::parse("acme/app").expect("name");
    assert!(
        env.state
            .meta
            .blob_link(&repo, &digest)
            .await
            .expect("link")
            .is_some()
    );
}

#[tokio::test]
async fn a_capability_for_another_session_or_repository_tampered_or_expired_is_refused() {
    let env = Env::new().await;
    let (registry, lane) = env.with_lane();
    let first = open_session(&env, &registry, "acme/app").await;
    let second = open_session(&env, &registry, "acme/app").await;
    let other_repo = open_session(&env, &registry, "acme/other").await;
    let (first_path, first_cap) = first.split_once('?').expect("query");
    let (second_path, _) = second.split_once('?').expect("query");
    let (other_path, _) = other_repo.split_once('?').expect("query");
    // Another session of the same repository.
    denied(
        &send(
            &lane,
            Method::PATCH,
            &format!("{second_path}?{first_cap}"),
            b"x".to_vec(),
        )
        .await,
    );
    // The same session id under another repository's path.
    let id = first_path.rsplit('/').next().expect("id");
    let moved = format!("/v2/acme/other/blobs/uploads/{id}?{first_cap}");
    denied(&send(&lane, Method::PATCH, &moved, b"x".to_vec()).await);
    denied(
        &send(
            &lane,
            Method::DELETE,
            &format!("{other_path}?{first_cap}"),
            Body::empty(),
        )
        .await,
    );
    // Tampered: one character of the signature changed.
    let mut tampered = first.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    denied(&send(&lane, Method::PATCH, &tampered, b"x".to_vec()).await);
    // Expired: signed by the registry's own key, for this very session, an hour ago.
    let auth = env.auth();
    let now = jsonwebtoken::get_current_timestamp();
    let expired = auth
        .keys
        .sign(
            &json!({"iss": auth.service, "aud": format!("{}#upload", auth.service),
            "sub": id, "repo": "acme/app", "iat": now - 7200, "exp": now - 3600}),
        )
        .expect("sign");
    denied(
        &send(
            &lane,
            Method::PATCH,
            &format!("{first_path}?_cap={expired}"),
            b"x".to_vec(),
        )
        .await,
    );
    // An access token is not a capability, even for the right repository.
    let token = env
        .token("acme/app", &["repository:acme/app:pull,push"])
        .await;
    denied(
        &send(
            &lane,
            Method::PATCH,
            &format!("{first_path}?_cap={token}"),
            b"x".to_vec(),
        )
        .await,
    );
    // A capability opens nothing but its session: not the manifests of its repository.
    denied(
        &send(
            &registry,
            Method::PUT,
            &format!("/v2/acme/app/manifests/v1?{first_cap}"),
            b"{}".to_vec(),
        )
        .await,
    );
    // No capability and no token: the usual challenge.
    let r = send(&lane, Method::PATCH, first_path, b"x".to_vec()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Nothing was written by any refused request.
    let r = send(&lane, Method::GET, &first, Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-0");
}

/// The `exp` claim of the capability in a session URL (read, not verified: the lane verifies).
fn capability_expiry(url: &str) -> u64 {
    let capability = crate::api::lane::capability_in(url.split_once('?').map(|(_, q)| q))
        .unwrap_or_else(|| panic!("a capability in {url}"));
    let payload = capability.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("JSON claims");
    claims["exp"].as_u64().expect("exp")
}

/// `GET` on a session URL of `router` with a bearer token.
async fn status_with_token(router: &Router, path: &str, token: &str) -> Reply {
    let req = Request::get(path)
        .header("host", HOST)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let res = router.clone().oneshot(req).await.expect("infallible");
    Reply::of(res).await
}

#[tokio::test]
async fn a_capability_past_the_sessions_absolute_expiry_is_refused_even_if_renewed() {
    let env = Env::new().await;
    let (registry, lane) = env.with_lane();
    let url = open_session(&env, &registry, "acme/app").await;
    let (path, _) = url.split_once('?').expect("query");
    let id = path.rsplit('/').next().expect("id");
    // The session was opened longer ago than any capability of it may live.
    let mut session = env
        .state
        .meta
        .upload(id)
        .await
        .expect("read")
        .expect("session");
    let now = jsonwebtoken::get_current_timestamp();
    session.created = now - crate::api::lane::CAPABILITY_MAX_AGE.as_secs() - 3600;
    session.version += 1;
    env.state
        .meta
        .update_upload(&session)
        .await
        .expect("age the session");
    // The capability handed out at the start is still within its hour, and moves the upload
    // on; the one it is renewed to is not, since renewal never passes the absolute expiry.
    let r = send(&lane, Method::PATCH, &url, b"hello ".to_vec()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let renewed = r.header("location");
    let expiry = capability_expiry(&renewed);
    assert!(expiry <= now, "renewed to expire at {expiry}, now is {now}");
    denied(&send(&lane, Method::PATCH, &renewed, b"world".to_vec()).await);
    denied(&send(&lane, Method::GET, &renewed, Body::empty()).await);
    // A token holder asking for the session's status gets no longer-lived capability either.
    let token = env
        .token("acme/app", &["repository:acme/app:pull,push"])
        .await;
    let r = status_with_token(&registry, path, &token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let from_token = r.header("location");
    let on_lane = from_token.strip_prefix(LANE).expect("on the lane");
    denied(&send(&lane, Method::PATCH, on_lane, b"world".to_vec()).await);
    // Nothing the refused requests carried was written.
    let r = status_with_token(&registry, path, &token).await;
    assert_eq!(r.header("range"), "0-5");
}

#[tokio::test]
async fn a_status_request_with_a_capability_gets_no_later_expiry_back() {
    let env = Env::new().await;
    let (registry, lane) = env.with_lane();
    let url = open_session(&env, &registry, "acme/app").await;
    let (path, _) = url.split_once('?').expect("query");
    let id = path.rsplit('/').next().expect("id");
    // A capability for this session, signed by the registry, with two minutes left: what a URL
    // copied out of a log looks like near its end.
    let auth = env.auth();
    let now = jsonwebtoken::get_current_timestamp();
    let short = auth
        .keys
        .sign(
            &json!({"iss": auth.service, "aud": format!("{}#upload", auth.service),
            "sub": id, "repo": "acme/app", "iat": now - 3480, "exp": now + 120}),
        )
        .expect("sign");
    let copied = format!("{path}?_cap={short}");
    for _ in 0..3 {
        let r = send(&lane, Method::GET, &copied, Body::empty()).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let expiry = capability_expiry(&r.header("location"));
        assert!(
            expiry <= now + 120,
            "polling the status renewed the capability to {expiry} (now {now})"
        );
    }
    // Moving the upload on does renew it (within the absolute expiry).
    let r = send(&lane, Method::PATCH, &copied, b"x".to_vec()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(capability_expiry(&r.header("location")) > now + 120);
}
