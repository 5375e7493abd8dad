//! [`AuthRegistry`]: `wharf serve` with authentication, trusting a test OIDC issuer on loopback
//! (`wharf::auth::testing::TestIssuer`), and what clients need to use the credential helper.

use std::path::PathBuf;

use anyhow::Result;
use tempfile::TempDir;
use wharf::auth::testing::TestIssuer;

use crate::Wharf;
use crate::cmd::Cmd;
use crate::server::binary_path;

/// The audience CI identities ask for and the registry accepts.
pub const AUDIENCE: &str = "wharf";

/// A registry with `[auth]` and the issuer it trusts.
#[derive(Debug)]
pub struct AuthRegistry {
    /// The trusted issuer.
    pub issuer: TestIssuer,
    /// The registry.
    pub wharf: Wharf,
    dir: TempDir,
}

/// The policy every test shares: `acme/app`'s main branch may push `acme/**` and `public/*`;
/// `acme/reader` may pull `acme/**`; `public/*` is public.
fn policy(issuer: &str) -> String {
    format!(
        r#"public = ["public/*"]

[[identity]]
name = "acme-release"
issuer = "{issuer}"
subject = "repo:acme/app:ref:refs/heads/main"
audience = "{AUDIENCE}"
claims = {{ repository_owner = "acme" }}
[[identity.grant]]
repositories = ["acme/**", "public/*"]
actions = ["pull", "push"]

[[identity]]
name = "acme-readers"
issuer = "{issuer}"
subject = "repo:acme/reader:**"
[[identity.grant]]
repositories = ["acme/**"]
actions = ["pull"]
"#
    )
}

impl AuthRegistry {
    /// Starts the issuer and a registry trusting it.
    pub fn start() -> Result<Self> {
        let issuer = TestIssuer::start();
        let dir = tempfile::Builder::new().prefix("wharf-auth-").tempdir()?;
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, policy(issuer.url()))?;
        let config = dir.path().join("wharf.toml");
        std::fs::write(
            &config,
            format!(
                "[auth]\npolicy_file = {:?}\n\n[[auth.issuer]]\nissuer = {:?}\naudiences = [{AUDIENCE:?}]\n",
                policy_file.display().to_string(),
                issuer.url()
            ),
        )?;
        let wharf =
            Wharf::start_with_env(vec![("WHARF_CONFIG".into(), config.display().to_string())])?;
        Ok(AuthRegistry { issuer, wharf, dir })
    }

    /// A GitHub Actions-shaped ID token for `repo` on `git_ref`.
    pub fn id_token(&self, repo: &str, git_ref: &str) -> String {
        self.issuer
            .mint(&self.issuer.github_claims(repo, git_ref, AUDIENCE))
    }

    /// A private path for client files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a containers/docker auth file that sends this registry to `docker-credential-wharf`.
    pub fn helper_authfile(&self) -> Result<PathBuf> {
        let path = self.path("auth.json");
        let body = serde_json::json!({ "credHelpers": { self.wharf.host(): "wharf" } });
        std::fs::write(&path, serde_json::to_vec(&body)?)?;
        Ok(path)
    }

    /// The environment under which clients find `docker-credential-wharf` and its store.
    pub fn helper_env(&self, cmd: Cmd) -> Cmd {
        let bin_dir = binary_path()
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", bin_dir.display()))
            .env("WHARF_CREDENTIALS", self.path("credentials.json"))
    }
}
