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
