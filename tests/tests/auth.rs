//! Passwordless auth end to end: `wharf serve` with `[auth]` trusting a test OIDC issuer, and
//! real clients (skopeo, podman) that get registry tokens through the Basic exchange of an ID
//! token and through `docker-credential-wharf`, never through a password.

use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use wharf::auth::testing::ACTIONS_REQUEST_TOKEN;
use wharf_e2e::authreg::{AUDIENCE, AuthRegistry};
use wharf_e2e::curl::Request;
use wharf_e2e::image;
use wharf_e2e::layout::Layout;
use wharf_e2e::podman::{self, Podman};
use wharf_e2e::skopeo::{Skopeo, oci_ref};

/// Upper bound on one copy of a small image.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

fn sample(work: &std::path::Path, seed: u64) -> Result<(Layout, String)> {
    let src = Layout::create(&work.join("src"))?;
    let manifest = image::sample_image(&src, "v1", 2, seed)?;
    Ok((src, manifest.digest))
}

#[test]
fn ci_identity_pushes_with_skopeo_to_exactly_what_its_policy_allows() -> Result<()> {
    let reg = AuthRegistry::start()?;
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let (src, digest) = sample(work.path(), 11)?;
    let creds = format!("oidc:{}", reg.id_token("acme/app", "refs/heads/main"));
    let allowed = format!("docker://{}/acme/app:v1", reg.wharf.host());
    skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &allowed,
        &["--dest-creds", &creds],
        COPY_TIMEOUT,
    )?;

    // Outside its grants the same identity is refused, and nothing appears there.
    let denied = format!("docker://{}/other/app:v1", reg.wharf.host());
    let err = skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &denied,
        &["--dest-creds", &creds],
        COPY_TIMEOUT,
    );
    assert!(err.is_err(), "push outside the policy must fail");
    // Another branch of the same repository is not the release identity.
    let dev = format!("oidc:{}", reg.id_token("acme/app", "refs/heads/dev"));
    let err = skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &format!("docker://{}/acme/app:dev", reg.wharf.host()),
        &["--dest-creds", &dev],
        COPY_TIMEOUT,
    );
    assert!(err.is_err(), "push from another branch must fail");

    // A reader pulls it back byte-identical, and cannot push.
    let reader = format!("oidc:{}", reg.id_token("acme/reader", "refs/heads/main"));
    let back = work.path().join("back");
    skopeo.copy(
        &allowed,
        &oci_ref(&back, "v1"),
        &["--src-creds", &reader],
        COPY_TIMEOUT,
    )?;
    assert_eq!(Layout::open(&back)?.resolve("v1")?.digest, digest);
    let err = skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &format!("docker://{}/acme/app:v2", reg.wharf.host()),
        &["--dest-creds", &reader],
        COPY_TIMEOUT,
    );
    assert!(err.is_err(), "a pull-only identity must not push");

    // Anonymous callers see nothing of the private repository.
    let anon = Request::get(format!("{}/v2/acme/app/manifests/v1", reg.wharf.url())).send()?;
    anon.expect_status(401)?;
    let catalog = Request::get(format!("{}/v2/_catalog", reg.wharf.url())).send()?;
    assert_eq!(catalog.json()?["repositories"], serde_json::json!([]));
    Ok(())
}

#[test]
fn public_repository_pulls_anonymously_and_refuses_anonymous_push() -> Result<()> {
    let reg = AuthRegistry::start()?;
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let (src, digest) = sample(work.path(), 12)?;
    let creds = format!("oidc:{}", reg.id_token("acme/app", "refs/heads/main"));
    let public = format!("docker://{}/public/tool:v1", reg.wharf.host());
    skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &public,
        &["--dest-creds", &creds],
        COPY_TIMEOUT,
    )?;
    let back = work.path().join("back");
    skopeo.copy(
        &public,
        &oci_ref(&back, "v1"),
        &["--src-no-creds"],
        COPY_TIMEOUT,
    )?;
    assert_eq!(Layout::open(&back)?.resolve("v1")?.digest, digest);
    let err = skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &format!("docker://{}/public/tool:v2", reg.wharf.host()),
        &["--dest-no-creds"],
        COPY_TIMEOUT,
    );
    assert!(err.is_err(), "anonymous push must fail");
    assert_eq!(
        skopeo.list_tags(&format!("docker://{}/public/tool", reg.wharf.host()))?,
        vec!["v1".to_owned()]
    );
    Ok(())
}

#[test]
fn credential_helper_finds_a_token_file_and_the_github_actions_identity() -> Result<()> {
    let reg = AuthRegistry::start()?;
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let (src, _) = sample(work.path(), 13)?;
    let authfile = reg.helper_authfile()?;
    let authfile = authfile.display().to_string();

    // A workload token file (as Kubernetes projects one).
    let token_file = reg.path("token");
    std::fs::write(&token_file, reg.id_token("acme/app", "refs/heads/main"))?;
    let dst = format!("docker://{}/acme/app:from-file", reg.wharf.host());
    reg.helper_env(skopeo.cmd("copy"))
        .args([
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--authfile",
            &authfile,
        ])
        .arg(oci_ref(src.root(), "v1"))
        .arg(&dst)
        .env("WHARF_TOKEN_FILE", &token_file)
        .timeout(COPY_TIMEOUT)
        .run()?;

    // GitHub Actions: the helper asks the runtime for a token with the registry's audience.
    reg.issuer
        .set_actions_identity("acme/app", "refs/heads/main");
    let dst = format!("docker://{}/acme/app:from-actions", reg.wharf.host());
    reg.helper_env(skopeo.cmd("copy"))
        .args([
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--authfile",
            &authfile,
        ])
        .arg(oci_ref(src.root(), "v1"))
        .arg(&dst)
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", reg.issuer.actions_url())
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", ACTIONS_REQUEST_TOKEN)
        .env("WHARF_AUDIENCE", AUDIENCE)
        .timeout(COPY_TIMEOUT)
        .run()?;
    let tags = reg
        .helper_env(skopeo.cmd("list-tags"))
        .args(["--tls-verify=false", "--authfile", &authfile])
        .arg(format!("docker://{}/acme/app", reg.wharf.host()))
        .env("WHARF_TOKEN_FILE", &token_file)
        .stdout()?;
    assert!(
        tags.contains("from-file") && tags.contains("from-actions"),
        "{tags}"
    );

    // A job whose identity the policy does not name gets nothing through the helper either.
    reg.issuer
        .set_actions_identity("evil/app", "refs/heads/main");
    let err = reg
        .helper_env(skopeo.cmd("copy"))
        .args([
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--authfile",
            &authfile,
        ])
        .arg(oci_ref(src.root(), "v1"))
        .arg(format!("docker://{}/acme/app:evil", reg.wharf.host()))
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", reg.issuer.actions_url())
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", ACTIONS_REQUEST_TOKEN)
        .timeout(COPY_TIMEOUT)
        .run();
    assert!(err.is_err(), "an identity outside the policy must not push");
    Ok(())
}

#[test]
fn docker_login_style_exchange_stores_only_a_refresh_token_that_clients_use() -> Result<()> {
    // Refresh tokens go to identities of interactive issuers only (a person's `docker login`).
    let reg = AuthRegistry::start_interactive()?;
    let id_token = reg.id_token("acme/app", "refs/heads/main");
    // What `docker login -u oidc --password-stdin` does: a Basic exchange asking for an
    // offline token, then `store` of the returned identity token through the helper.
    let login = Request::get(format!(
        "{}/token?service=wharf&offline_token=true&client_id=docker&account=oidc",
        reg.wharf.url()
    ))
    .header(
        "Authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("oidc:{id_token}"))
        ),
    )
    .send()?;
    login.expect_status(200)?;
    let refresh = login.json()?["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!refresh.is_empty(), "docker login gets an identity token");
    // The "token issued" line names the refresh-token family (what a revocation lists), never a
    // token.
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(refresh.split('.').nth(1).unwrap_or_default())?;
    let family = serde_json::from_slice::<serde_json::Value>(&payload)?["fam"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!family.is_empty(), "a refresh token carries its family");
    let logs = reg.wharf.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("token issued") && l.contains(&family)),
        "{logs}"
    );
    assert!(!logs.contains(&refresh) && !logs.contains(&id_token));
    let input = reg.path("store.json");
    std::fs::write(
        &input,
        serde_json::to_vec(&serde_json::json!({
            "ServerURL": reg.wharf.host(), "Username": "<token>", "Secret": refresh
        }))?,
    )?;
    reg.helper_env(wharf_e2e::cmd::Cmd::new("docker-credential-wharf"))
        .arg("store")
        .stdin_file(&input)
        .run()?;
    // A password is never stored.
    std::fs::write(
        &input,
        serde_json::to_vec(&serde_json::json!({
            "ServerURL": reg.wharf.host(), "Username": "alice", "Secret": "hunter2"
        }))?,
    )?;
    let refused = reg
        .helper_env(wharf_e2e::cmd::Cmd::new("docker-credential-wharf"))
        .arg("store")
        .stdin_file(&input)
        .output()?;
    assert!(!refused.status.success(), "storing a password must fail");

    let stored = std::fs::read_to_string(reg.path("credentials.json"))?;
    assert!(
        stored.contains(&refresh) && !stored.contains(&id_token) && !stored.contains("hunter2")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(reg.path("credentials.json"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the credential store is private");
    }

    // skopeo and podman now push and pull through the helper's identity token.
    let skopeo = Skopeo::new()?;
    let work = podman::lowercase_tempdir()?;
    let (src, digest) = sample(work.path(), 14)?;
    let authfile = reg.helper_authfile()?.display().to_string();
    let remote = format!("docker://{}/acme/app:v1", reg.wharf.host());
    reg.helper_env(skopeo.cmd("copy"))
        .args([
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--authfile",
            &authfile,
        ])
        .arg(oci_ref(src.root(), "v1"))
        .arg(&remote)
        .timeout(COPY_TIMEOUT)
        .run()?;

    let podman = Podman::new()?;
    podman.check_usable()?;
    let image = format!("{}/acme/app:v1", reg.wharf.host());
    let pulled = reg
        .helper_env(podman.cmd())
        .args([
            "pull",
            "--quiet",
            "--tls-verify=false",
            "--authfile",
            &authfile,
            &image,
        ])
        .timeout(COPY_TIMEOUT)
        .stdout()?;
    let (config, _) = src.image_blobs(&digest)?;
    assert_eq!(
        format!("sha256:{}", pulled.trim()),
        config.digest,
        "podman pulled the pushed image"
    );
    let pushed = format!("{}/acme/app:podman", reg.wharf.host());
    reg.helper_env(podman.cmd())
        .args(["tag", &image, &pushed])
        .run()?;
    reg.helper_env(podman.cmd())
        .args([
            "push",
            "--tls-verify=false",
            "--authfile",
            &authfile,
            &pushed,
        ])
        .timeout(COPY_TIMEOUT)
        .run()?;

    // Erasing the login leaves clients anonymous again.
    std::fs::write(&input, reg.wharf.host())?;
    reg.helper_env(wharf_e2e::cmd::Cmd::new("docker-credential-wharf"))
        .arg("erase")
        .stdin_file(&input)
        .run()?;
    let err = reg
        .helper_env(skopeo.cmd("inspect"))
        .args(["--raw", "--tls-verify=false", "--authfile", &authfile])
        .arg(&remote)
        .run();
    assert!(
        err.is_err(),
        "after erase the private image is out of reach"
    );
    Ok(())
}

/// Issue 16: `wharf serve` on a public address with `[auth]` and no `public_url` built its token
/// realm from each request's `Host` over plain http. It now refuses to start, naming the fix.
/// (The address is from TEST-NET-1, never bound: the check runs before any socket exists.)
#[test]
fn serve_beyond_loopback_with_auth_but_no_public_url_refuses_to_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"192.0.2.1:5000\"\ndata_dir = {:?}\n[auth]\npolicy = \"public = []\"\n",
            dir.path().join("data").display().to_string()
        ),
    )?;
    let out = wharf_e2e::cmd::Cmd::new(wharf_e2e::server::binary_path())
        .arg("serve")
        .env("WHARF_CONFIG", &config)
        .timeout(Duration::from_secs(30))
        .output()?;
    let text = wharf_e2e::cmd::streams(&out);
    assert!(!out.status.success(), "it must not start: {text}");
    assert!(
        text.contains("public_url"),
        "a clear error naming the fix: {text}"
    );
    Ok(())
}
