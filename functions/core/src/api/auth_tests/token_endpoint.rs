//! The token endpoint: grants, the docker login flow, refresh tokens, scopes.
use super::*;

#[tokio::test]
async fn grant_is_the_intersection_of_request_and_policy() {
    let env = Env::new().await;
    let id = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    let r = env
        .exchange(
            &id,
            &[
                "repository:acme/app:pull,push,delete",
                "repository:other/x:pull",
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["scope"], "repository:acme/app:pull,push");
    // A branch the policy does not name gets nothing, and that is not an error.
    let dev = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/dev", AUD));
    let r = env.exchange(&dev, &["repository:acme/app:pull,push"]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["scope"], "");
}

#[tokio::test]
async fn docker_login_flow_returns_a_refresh_token_that_works() {
    let env = Env::people().await;
    let id = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{id}"));
    let r = env
        .call(
            Method::GET,
            "/token?service=wharf&offline_token=true&client_id=docker&account=ci",
            &[("authorization", format!("Basic {basic}"))],
            Body::empty(),
        )
        .await;
    let refresh = r.json()["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let form = format!(
        "grant_type=refresh_token&service=wharf&client_id=docker&scope=repository%3Aacme%2Fapp%3Apull%2Cpush&refresh_token={refresh}"
    );
    let r = env
        .call(
            Method::POST,
            "/token",
            &[("content-type", "application/x-www-form-urlencoded".into())],
            form,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["scope"], "repository:acme/app:pull,push");
    let token = r.json()["access_token"].as_str().expect("token").to_owned();
    assert_eq!(
        env.push_blob("acme/app", &token, b"via refresh")
            .await
            .status,
        StatusCode::CREATED
    );
    // A refresh token is not an access token, and an access token is not a refresh token.
    let r = env
        .with_token(Method::GET, "/v2/", &refresh, Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let form = format!("grant_type=refresh_token&refresh_token={token}");
    let r = env
        .call(
            Method::POST,
            "/token",
            &[("content-type", "application/x-www-form-urlencoded".into())],
            form,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Password grant with the OIDC token.
    let form = format!(
        "grant_type=password&username=ci&password={id}&scope=repository%3Aacme%2Fapp%3Apull&access_type=offline"
    );
    let r = env
        .call(
            Method::POST,
            "/token",
            &[("content-type", "application/x-www-form-urlencoded".into())],
            form,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["refresh_token"].is_string());
}

#[tokio::test]
async fn injected_scopes_are_refused() {
    let env = Env::new().await;
    let id = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    for scope in [
        "repository:acme/app,secret/x:pull",
        "repository:acme/app:pull,push:secret",
        "repository:acme/../secret:pull",
        "repository:acme/app:pull%0Arepository:secret/x:push",
        "repository:ACME/app:pull",
        "registry:catalog:push",
    ] {
        let r = env.exchange(&id, &[scope]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{scope}");
    }
    let r = env
        .call(Method::GET, "/token?service=not-wharf", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
