//! The credential store: refresh tokens per registry host, in one JSON file readable only by its
//! owner (`$WHARF_CREDENTIALS`, else `$XDG_CONFIG_HOME/wharf/credentials.json`, else
//! `~/.config/wharf/credentials.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What is kept for one registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The registry's refresh token (bounded lifetime, revocable, bound to the identity).
    pub refresh_token: String,
}

/// The store file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CredentialStore {
    /// Registry host → credential.
    pub registries: BTreeMap<String, Stored>,
}

/// Where the store lives.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WHARF_CREDENTIALS") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("wharf").join("credentials.json"))
}

impl CredentialStore {
    /// Loads the store (empty when the file does not exist).
    pub fn load() -> Result<CredentialStore> {
        let path = path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialStore::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the store with mode 0600 (its directory 0700).
    pub fn save(&self) -> Result<()> {
        let path = path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        let bytes = serde_json::to_vec_pretty(self)?;
        wharf::auth::token::write_private(&path, &bytes)
            .with_context(|| format!("writing {}", path.display()))
    }
}
