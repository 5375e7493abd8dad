//! Refresh-token families and live policy: a refresh token never outlives its family, a family
//! is revocable as a whole, a CI issuer gets none, and every use is re-checked against the
//! issuers and the policy in force now (a policy file edited under a running registry).
use super::*;
use crate::auth::{CredentialError, RefreshClaims};

fn form(body: String) -> (Method, &'static str, [(&'static str, String); 1], String) {
    (
        Method::POST,
        "/token",
        [("content-type", "application/x-www-form-urlencoded".into())],
        body,
    )
}

impl Env {
    /// `docker login`: an ID token exchanged for a refresh token.
    async fn login(&self) -> Reply {
        let id = self.issuer.mint(
            &self
                .issuer
                .github_claims("acme/app", "refs/heads/main", AUD),
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{id}"));
        self.call(
            Method::GET,
            "/token?service=wharf&offline_token=true&client_id=docker",
            &[("authorization", format!("Basic {basic}"))],
            Body::empty(),
        )
        .await
    }

    /// The OAuth2 refresh grant, asking for a new refresh token too.
    async fn refresh(&self, refresh_token: &str) -> Reply {
        let (m, uri, h, b) = form(format!(
            "grant_type=refresh_token&service=wharf&access_type=offline&\
             scope=repository%3Aacme%2Fapp%3Apull%2Cpush&refresh_token={refresh_token}"
        ));
        self.call(m, uri, &h, b).await
    }

    /// Rewrites the policy file with `top` (top-level keys) before the usual identities.
    fn rewrite_policy(&self, top: &str) {
        let text = format!("{top}\n{}", policy(self.issuer.url()));
        std::fs::write(self._dir.path().join("policy.toml"), text).expect("policy");
    }

    /// The same registry keys and policy under another `[auth]` configuration.
    fn reconfigured(&self, tweak: impl FnOnce(&mut AuthConfig)) -> Auth {
        let mut config = auth_config(self.issuer.url(), self._dir.path().join("policy.toml"));
        config.issuers[0].interactive = true;
        tweak(&mut config);
        let pem = std::fs::read(self._dir.path().join(crate::auth::DEFAULT_KEY_FILE)).expect("key");
        let keys = RegistryKeys::from_pems(&[pem]).expect("keys");
        let policy = Policy::parse(&policy(self.issuer.url())).expect("policy");
        Auth::new(&config, policy, keys).expect("auth")
    }
}

fn refresh_token(r: &Reply) -> String {
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.json()["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

fn claims(token: &str) -> RefreshClaims {
    jsonwebtoken::dangerous::insecure_decode_claims(token).expect("refresh claims")
}

/// The attack of issue 16: a leaked refresh token renewed with `access_type=offline` came back
/// with a full new lifetime, for ever. Now each renewal stays in the family and inside its
/// absolute expiry.
#[tokio::test]
async fn a_refresh_token_cannot_renew_itself_past_its_family_expiry() {
    let env = Env::people().await;
    let first = refresh_token(&env.login().await);
    let first_claims = claims(&first);
    // Let the clock move on: a renewal minted "now + lifetime" would now end later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut token = first.clone();
    for _ in 0..3 {
        token = refresh_token(&env.refresh(&token).await);
        let c = claims(&token);
        assert_eq!(c.fam, first_claims.fam, "one family");
        assert!(
            c.exp <= first_claims.exp,
            "{} > {}",
            c.exp,
            first_claims.exp
        );
        assert_ne!(c.jti, first_claims.jti);
    }
}

#[tokio::test]
async fn revoking_a_family_refuses_every_token_descended_from_it() {
    let env = Env::people().await;
    let first = refresh_token(&env.login().await);
    let second = refresh_token(&env.refresh(&first).await);
    let other_login = refresh_token(&env.login().await);
    let family = claims(&first).fam;
    // Revoke by family, in the policy file of the running registry: no restart.
    env.rewrite_policy(&format!("revoked_refresh_families = [{family:?}]"));
    tokio::time::sleep(crate::auth::live::POLICY_FILE_CHECK_INTERVAL).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for token in [&first, &second] {
        let r = env.refresh(token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert_eq!(r.code(), "UNAUTHORIZED");
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("revoked"), "{body}");
        assert!(!body.contains(&family), "a fixed message: {body}");
    }
    refresh_token(&env.refresh(&other_login).await);
}

#[tokio::test]
async fn a_ci_issuer_gets_no_refresh_token() {
    let env = Env::new().await;
    let r = env.login().await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.json()["token"].is_string(), "the access token is issued");
    assert!(r.json().get("refresh_token").is_none(), "{}", r.json());
    let id = env
        .issuer
        .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD));
    let (m, uri, h, b) = form(format!(
        "grant_type=password&username=ci&password={id}&access_type=offline"
    ));
    let r = env.call(m, uri, &h, b).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.json().get("refresh_token").is_none(), "{}", r.json());
}

#[tokio::test]
async fn a_refresh_token_is_refused_once_its_issuer_or_audience_changes() {
    let env = Env::people().await;
    let token = refresh_token(&env.login().await);
    assert!(env.reconfigured(|_| {}).identify(&token).await.is_ok());
    type Change = Box<dyn FnOnce(&mut AuthConfig)>;
    let cases: [(&str, Change); 3] = [
        ("issuer removed", Box::new(|c| c.issuers.clear())),
        (
            "audience changed",
            Box::new(|c| c.issuers[0].audiences = vec!["another-registry".into()]),
        ),
        (
            "issuer no longer interactive",
            Box::new(|c| c.issuers[0].interactive = false),
        ),
    ];
    for (what, tweak) in cases {
        let auth = env.reconfigured(tweak);
        assert!(
            matches!(
                auth.identify(&token).await,
                Err(CredentialError::Refresh(_))
            ),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_revoked_refresh_token_is_refused_without_a_restart() {
    let env = Env::people().await;
    let token = refresh_token(&env.login().await);
    refresh_token(&env.refresh(&token).await);
    env.rewrite_policy(&format!(
        "revoked_refresh_tokens = [{:?}]",
        claims(&token).jti
    ));
    tokio::time::sleep(crate::auth::live::POLICY_FILE_CHECK_INTERVAL).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(env.refresh(&token).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_grant_removed_from_the_policy_file_is_gone_without_a_restart() {
    let env = Env::new().await;
    let r = env
        .exchange(
            &env.issuer
                .mint(&env.issuer.github_claims("acme/app", "refs/heads/main", AUD)),
            &["repository:acme/app:pull,push"],
        )
        .await;
    assert_eq!(r.json()["scope"], "repository:acme/app:pull,push");
    // The same file with no identities: deny by default again.
    std::fs::write(env._dir.path().join("policy.toml"), "public = []\n").expect("policy");
    tokio::time::sleep(crate::auth::live::POLICY_FILE_CHECK_INTERVAL).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let token = env
        .token("acme/app", &["repository:acme/app:pull,push"])
        .await;
    let r = env.push_blob("acme/app", &token, b"after the edit").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // A broken edit keeps that (stricter) policy: a parse error never reopens anything.
    std::fs::write(
        env._dir.path().join("policy.toml"),
        policy(env.issuer.url()) + "\n[[oops",
    )
    .expect("policy");
    tokio::time::sleep(crate::auth::live::POLICY_FILE_CHECK_INTERVAL).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let token = env
        .token("acme/app", &["repository:acme/app:pull,push"])
        .await;
    let r = env
        .push_blob("acme/app", &token, b"after the broken edit")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
}
