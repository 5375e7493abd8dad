//! [`AuthRegistry`]: `wharf serve` with authentication, trusting a test OIDC issuer on loopback
//! (`wharf::auth::testing::TestIssuer`) and any [`TrustedIssuer`] a test adds, and what clients
//! need to use the credential helper.

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

/// One more issuer for the registry to trust, beside the test issuer (e.g. a real OpenID
/// provider people log in with).
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The issuer URL, exactly as in its tokens' `iss`.
    pub issuer: String,
    /// The audience its tokens must carry (for a person's login: the OAuth client id).
    pub audience: String,
}

/// One `[[auth.issuer]]` table of the server configuration; an `interactive` issuer's people
/// get refresh tokens.
fn issuer_table(issuer: &str, audience: &str, interactive: bool) -> String {
    format!(
        "\n[[auth.issuer]]\nissuer = {issuer:?}\naudiences = [{audience:?}]\n\
         interactive = {interactive}\n"
    )
}

impl AuthRegistry {
    /// Starts the issuer and a registry trusting it.
    pub fn start() -> Result<Self> {
        Self::start_trusting(&[], "")
    }

    /// Like [`AuthRegistry::start`], with the test issuer marked interactive (as for people),
    /// so its identities get refresh tokens.
    pub fn start_interactive() -> Result<Self> {
        Self::start_with(&[], "", true)
    }

    /// Like [`AuthRegistry::start`], also trusting `issuers`, with `identities` (policy
    /// `[[identity]]` tables, in TOML) added to the shared policy.
    pub fn start_trusting(issuers: &[TrustedIssuer], identities: &str) -> Result<Self> {
        Self::start_with(issuers, identities, false)
    }

    fn start_with(issuers: &[TrustedIssuer], identities: &str, interactive: bool) -> Result<Self> {
        let issuer = TestIssuer::start();
        let dir = tempfile::Builder::new().prefix("wharf-auth-").tempdir()?;
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(
            &policy_file,
            format!("{}\n{identities}", policy(issuer.url())),
        )?;
        let mut config = format!(
            "[auth]\npolicy_file = {:?}\n{}",
            policy_file.display().to_string(),
            issuer_table(issuer.url(), AUDIENCE, interactive)
        );
        for trusted in issuers {
            config.push_str(&issuer_table(&trusted.issuer, &trusted.audience, true));
        }
        let config_file = dir.path().join("wharf.toml");
        std::fs::write(&config_file, config)?;
        let wharf = Wharf::start_with_env(vec![(
            "WHARF_CONFIG".into(),
            config_file.display().to_string(),
        )])?;
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
            // The helper hands the ambient identity only to registries named for it.
            .env("WHARF_REGISTRIES", self.wharf.host())
    }
}
