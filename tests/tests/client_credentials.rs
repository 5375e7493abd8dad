//! The client side's handling of credentials, through the real `docker-credential-wharf`
//! binary: the store file it writes, and to whom it answers `get`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use wharf_e2e::cmd::{Cmd, streams};
use wharf_e2e::server::binary_path;

fn helper() -> PathBuf {
    binary_path().with_file_name("docker-credential-wharf")
}

#[cfg(unix)]
fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(unix)]
#[test]
fn storing_a_login_into_a_world_readable_store_in_a_shared_directory_makes_only_the_file_private()
-> Result<()> {
    let shared = tempfile::tempdir()?;
    chmod(shared.path(), 0o1777)?;
    let store = shared.path().join("x");
    std::fs::write(&store, br#"{"registries":{}}"#)?;
    chmod(&store, 0o644)?;
    let input = tempfile::NamedTempFile::new()?;
    std::fs::write(
        input.path(),
        serde_json::to_vec(&serde_json::json!({
            "ServerURL": "registry.example.com", "Username": "<token>", "Secret": "refresh-1"
        }))?,
    )?;
    let out = Cmd::new(helper())
        .arg("store")
        .env("WHARF_CREDENTIALS", &store)
        .stdin_file(input.path())
        .output()?;
    assert!(out.status.success(), "{}", streams(&out));
    assert_eq!(
        mode(&store)?,
        0o600,
        "the store holding a refresh token is private"
    );
    assert_eq!(
        mode(shared.path())?,
        0o1777,
        "the directory named by WHARF_CREDENTIALS is not Wharf's to chmod"
    );
    assert!(std::fs::read_to_string(&store)?.contains("refresh-1"));
    Ok(())
}

/// `docker-credential-wharf get` for `server`, in an environment holding an ambient identity.
fn get(server: &str, env: &[(&str, &str)]) -> Result<std::process::Output> {
    let input = tempfile::NamedTempFile::new()?;
    std::fs::write(input.path(), server)?;
    let store = tempfile::tempdir()?;
    let mut cmd = Cmd::new(helper())
        .arg("get")
        .env("WHARF_CREDENTIALS", store.path().join("none.json"))
        .stdin_file(input.path());
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.output()
}

/// The JSON payload of a JWT (unverified: the test reads what the helper asked for).
fn jwt_claims(token: &str) -> Result<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap_or_default();
    Ok(serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?,
    )?)
}

#[test]
fn credential_helper_gives_the_ambient_token_to_no_registry_it_was_not_configured_for() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJ.workload-token.sig")?;
    let token_file = token_file.display().to_string();
    let ambient = [
        ("WHARF_TOKEN_FILE", token_file.as_str()),
        ("WHARF_REGISTRIES", "registry.example.com, 127.0.0.1:5000"),
    ];
    for server in [
        "evil.example.com",
        "https://registry.example.com.evil.example/v2/",
    ] {
        let out = get(server, &ambient)?;
        assert!(!out.status.success(), "{server}: {}", streams(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("credentials not found") && !said.contains("workload-token"),
            "{server}: docker is told to go anonymous: {said}"
        );
    }
    for server in [
        "registry.example.com",
        "https://registry.example.com/v2/",
        "127.0.0.1:5000",
    ] {
        let out = get(server, &ambient)?;
        assert!(out.status.success(), "{server}: {}", streams(&out));
        let creds: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(creds["Secret"], "eyJ.workload-token.sig", "{server}");
    }
    // Without WHARF_REGISTRIES, no registry gets it.
    let out = get("registry.example.com", &ambient[..1])?;
    assert!(!out.status.success(), "{}", streams(&out));
    Ok(())
}

#[test]
fn credential_helper_asks_github_for_a_token_bound_to_the_registrys_own_url() -> Result<()> {
    let issuer = wharf::auth::testing::TestIssuer::start();
    issuer.set_actions_identity("acme/app", "refs/heads/main");
    let url = issuer.actions_url();
    let ambient = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", url.as_str()),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            wharf::auth::testing::ACTIONS_REQUEST_TOKEN,
        ),
        ("WHARF_REGISTRIES", "registry.example.com"),
    ];
    let out = get("registry.example.com", &ambient)?;
    assert!(out.status.success(), "{}", streams(&out));
    let creds: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let claims = jwt_claims(creds["Secret"].as_str().unwrap_or_default())?;
    assert_eq!(
        claims["aud"], "https://registry.example.com",
        "not the shared word `wharf`, which every deployment would accept"
    );
    let mut overridden = ambient.to_vec();
    overridden.push(("WHARF_AUDIENCE", "custom"));
    let out = get("registry.example.com", &overridden)?;
    let creds: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let claims = jwt_claims(creds["Secret"].as_str().unwrap_or_default())?;
    assert_eq!(claims["aud"], "custom");
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_relative_store_path_gets_its_missing_directories_created_private() -> Result<()> {
    let cwd = tempfile::tempdir()?;
    let input = tempfile::NamedTempFile::new()?;
    std::fs::write(
        input.path(),
        br#"{"ServerURL":"registry.example.com","Username":"<token>","Secret":"r"}"#,
    )?;
    let out = Cmd::new(helper())
        .arg("store")
        .cwd(cwd.path())
        .env("WHARF_CREDENTIALS", "sub/dir/credentials.json")
        .stdin_file(input.path())
        .output()?;
    assert!(out.status.success(), "{}", streams(&out));
    assert_eq!(mode(&cwd.path().join("sub"))?, 0o700);
    assert_eq!(mode(&cwd.path().join("sub/dir"))?, 0o700);
    assert_eq!(mode(&cwd.path().join("sub/dir/credentials.json"))?, 0o600);
    Ok(())
}
