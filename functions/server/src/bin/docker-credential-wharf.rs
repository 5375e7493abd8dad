//! `docker-credential-wharf`: a docker credential helper (the `get`/`store`/`erase`/`list`
//! protocol) that needs no password.
//!
//! `get` answers, for the registry named on stdin: the ambient OIDC ID token when the
//! environment has one (GitHub Actions, a token file) and `WHARF_REGISTRIES` names that
//! registry, as a Basic password the registry trades for a registry token (a GitHub token is
//! asked with the registry's own URL as audience); else the refresh token stored for exactly
//! that host by `wharf login` or `docker login`, as an identity token; else "not found", which
//! docker takes as anonymous. `store` keeps identity tokens only: a plain password is refused, since Wharf
//! never has one.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use wharf_server::client::credentials::{CredentialStore, Stored};
use wharf_server::client::{ambient, registry_host};

/// The username docker uses to mark a secret as an identity (refresh) token.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// The username sent with an ambient ID token (the registry ignores it).
const OIDC_USER: &str = "oidc";

/// Docker's wording for "no credentials", which it treats as "log in anonymously".
const NOT_FOUND: &str = "credentials not found in native keychain";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Credentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    username: String,
    secret: String,
}

fn stdin() -> Result<String> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    Ok(input.trim().to_owned())
}

async fn get(server: &str) -> Result<Credentials> {
    // Docker asks for any host its configuration sends here (all of them, with `credsStore`):
    // the ambient identity goes only to registries named for it.
    if ambient::is_configured(server)
        && let Some((_, token)) = ambient::id_token(server).await?
    {
        return Ok(Credentials {
            server_url: server.to_owned(),
            username: OIDC_USER.into(),
            secret: token,
        });
    }
    let store = CredentialStore::load()?;
    match store.registries.get(&registry_host(server)) {
        Some(stored) => Ok(Credentials {
            server_url: server.to_owned(),
            username: IDENTITY_TOKEN_USER.into(),
            secret: stored.refresh_token.clone(),
        }),
        None => bail!(NOT_FOUND),
    }
}

fn store(input: &str) -> Result<()> {
    let creds: Credentials = serde_json::from_str(input).context("reading the credentials")?;
    if creds.username != IDENTITY_TOKEN_USER {
        bail!(
            "Wharf stores no passwords: log in with `wharf login`, or let the ambient identity be found"
        );
    }
    let mut store = CredentialStore::load()?;
    store.registries.insert(
        registry_host(&creds.server_url),
        Stored {
            refresh_token: creds.secret,
        },
    );
    store.save()
}

fn erase(server: &str) -> Result<()> {
    let mut store = CredentialStore::load()?;
    if store.registries.remove(&registry_host(server)).is_some() {
        store.save()?;
    }
    Ok(())
}

fn list() -> Result<String> {
    let store = CredentialStore::load()?;
    let map: std::collections::BTreeMap<&String, &str> = store
        .registries
        .keys()
        .map(|k| (k, IDENTITY_TOKEN_USER))
        .collect();
    Ok(serde_json::to_string(&map)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let action = std::env::args().nth(1).unwrap_or_default();
    let result = async {
        let mut out = std::io::stdout().lock();
        match action.as_str() {
            "get" => {
                let creds = get(&stdin()?).await?;
                serde_json::to_writer(&mut out, &creds)?;
            }
            "store" => store(&stdin()?)?,
            "erase" => erase(&stdin()?)?,
            "list" => out.write_all(list()?.as_bytes())?,
            "version" => out.write_all(
                concat!("docker-credential-wharf ", env!("CARGO_PKG_VERSION"), "\n").as_bytes(),
            )?,
            _ => bail!("usage: docker-credential-wharf <get|store|erase|list|version>"),
        }
        out.flush()?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        // Docker reads the helper's error from stdout.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{e:#}");
        std::process::exit(1);
    }
}
