//! People log in with `wharf login`: the device authorization grant (RFC 8628) against a real
//! third-party OpenID provider (npm `oidc-provider`), approved in the provider's own web pages by
//! the test acting as the person. Only the registry's refresh token is stored; skopeo then pushes
//! and pulls through `docker-credential-wharf`, within that person's grant and nowhere else.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use serde_json::Value;
use wharf_e2e::authreg::{AuthRegistry, TrustedIssuer};
use wharf_e2e::cmd::Cmd;
use wharf_e2e::image;
use wharf_e2e::layout::Layout;
use wharf_e2e::login::LoginProcess;
use wharf_e2e::oidc_provider::{CLIENT_ID, OidcProvider, email_of};
use wharf_e2e::server::binary_path;
use wharf_e2e::skopeo::{Skopeo, oci_ref};

/// The person logging in (a login name at the provider).
const PERSON: &str = "alice";

/// Until `wharf login` has printed the link and the code.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Until `wharf login` has finished after approval: it polls every 5 s (the provider names no
/// interval, so RFC 8628's default applies), then trades the ID token at the registry.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Upper bound on one copy of a small image.
const COPY_TIMEOUT: Duration = Duration::from_secs(60);

/// The person's identity at the registry: matched on the provider, the client as audience and
/// the verified `email` claim; may push and pull their own namespace only.
fn person_policy(issuer: &str) -> String {
    format!(
        r#"
[[identity]]
name = "people-{PERSON}"
issuer = "{issuer}"
audience = "{CLIENT_ID}"
claims = {{ email = "{email}" }}
[[identity.grant]]
repositories = ["{PERSON}/**"]
actions = ["pull", "push"]
"#,
        email = email_of(PERSON),
    )
}

/// Part `index` of a JWT (0: header, 1: claims), decoded but not verified: the test only checks
/// what kind of token it is.
fn jwt_part(token: &str, index: usize) -> Result<Value> {
    let part = token
        .split('.')
        .nth(index)
        .with_context(|| format!("not a JWT: {token:?}"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[test]
fn person_logs_in_with_the_device_flow_and_pushes_only_within_their_grant() -> Result<()> {
    let started = Instant::now();
    let provider = OidcProvider::start()?;
    let reg = AuthRegistry::start_trusting(
        &[TrustedIssuer {
            issuer: provider.issuer(),
            audience: CLIENT_ID.to_owned(),
        }],
        &person_policy(&provider.issuer()),
    )?;
    eprintln!("provider and registry up after {:?}", started.elapsed());

    // The person runs `wharf login` in a terminal and approves in a browser.
    let login_cmd = reg
        .helper_env(Cmd::new(binary_path()))
        .args(["login", &reg.wharf.host(), "--issuer", &provider.issuer()])
        .args(["--client-id", CLIENT_ID, "--scope", "email"])
        .timeout(PROMPT_TIMEOUT + LOGIN_TIMEOUT);
    let mut login = LoginProcess::start(&login_cmd)?;
    let prompt = login.prompt(PROMPT_TIMEOUT)?;
    assert!(
        prompt.link.starts_with(&provider.issuer()),
        "the link leads to the provider: {prompt:?}"
    );
    provider.approve_device_login(&prompt.link, &prompt.user_code, PERSON)?;
    let transcript = login.wait(LOGIN_TIMEOUT)?;
    eprintln!("logged in after {:?}:\n{transcript}", started.elapsed());

    // The store holds one refresh token, the registry's own, and nothing of the provider's.
    let store_path = reg.path("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&store_path)?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the credential store is private");
    }
    let store: Value = serde_json::from_slice(&std::fs::read(&store_path)?)?;
    let entry = &store["registries"][reg.wharf.host()];
    assert_eq!(
        entry.as_object().map(|o| o.len()),
        Some(1),
        "one field per registry: {store}"
    );
    assert_eq!(store["registries"].as_object().map(|o| o.len()), Some(1));
    let refresh = entry["refresh_token"]
        .as_str()
        .context("no refresh token stored")?;
    let claims = jwt_part(refresh, 1)?;
    assert_eq!(
        jwt_part(refresh, 0)?["alg"],
        "ES256",
        "signed by the registry"
    );
    assert!(
        claims["aud"]
            .as_str()
            .is_some_and(|a| a.ends_with("#refresh")),
        "a registry refresh token, not the provider's ID token: {claims}"
    );
    assert_eq!(claims["idp"], provider.issuer().as_str());
    assert_eq!(claims["claims"]["email"], email_of(PERSON).as_str());

    // docker-credential-wharf hands it to clients as an identity token.
    let host_file = reg.path("host.txt");
    std::fs::write(&host_file, reg.wharf.host())?;
    let got: Value = serde_json::from_str(
        &reg.helper_env(Cmd::new("docker-credential-wharf"))
            .arg("get")
            .stdin_file(&host_file)
            .stdout()?,
    )?;
    assert_eq!(got["Username"], "<token>");
    assert_eq!(got["Secret"], refresh);

    // skopeo pushes and pulls the person's repository through the helper, digest intact.
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let src = Layout::create(&work.path().join("src"))?;
    let digest = image::sample_image(&src, "v1", 2, 21)?.digest;
    let authfile = reg.helper_authfile()?.display().to_string();
    let mine = format!("docker://{}/{PERSON}/app:v1", reg.wharf.host());
    let copy = |from: &str, to: &str| {
        reg.helper_env(skopeo.cmd("copy"))
            .args(["--preserve-digests", "--authfile", &authfile])
            .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(from)
            .arg(to)
            .timeout(COPY_TIMEOUT)
            .run()
    };
    copy(&oci_ref(src.root(), "v1"), &mine)?;
    let back = work.path().join("back");
    copy(&mine, &oci_ref(&back, "v1"))?;
    assert_eq!(Layout::open(&back)?.resolve("v1")?.digest, digest);

    // Outside the grant (a CI identity's namespace) the same login is refused.
    let theirs = format!("docker://{}/acme/app:v1", reg.wharf.host());
    let denied = copy(&oci_ref(src.root(), "v1"), &theirs);
    assert!(
        denied.is_err(),
        "a push outside the person's grant must fail"
    );
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}
