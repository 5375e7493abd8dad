//! `wharf cp SRC DST`: copies an image or an index into a Wharf repository, blobs first (in
//! parallel, skipping those already there), then manifests, children before their index.
//!
//! Blobs go straight to the object store when the registry offers direct uploads (a presigned
//! PUT bound to the blob's SHA-256, so the store refuses other bytes; the registry then checks
//! the object is there before linking it): no blob byte passes through a function, whatever
//! the deployment's body limit. Other registries get chunked or monolithic pushes.
//!
//! Sources: `oci:PATH[:TAG]`, `docker-archive:PATH`, `docker://HOST/NAME[:TAG|@DIGEST]`.
//! Destination: `docker://HOST/NAME[:TAG]` (or `HOST/NAME[:TAG]`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::Value;
use wharf_server::client::ambient;
use wharf_server::client::credentials::CredentialStore;
use wharf_server::client::login::registry_base;
use wharf_server::client::registry_host;

mod archive;
pub(crate) mod progress;
pub(crate) mod registry;
mod source;

use progress::Bars;
use registry::{Credentials, Pushed, Repository};
use source::Source;

/// Blobs copied at once: enough to keep a link busy while one blob waits on the store, few
/// enough not to drown a laptop's uplink or a small registry.
pub const DEFAULT_PARALLEL: usize = 4;

/// How long one HTTP request may take at most (a 5 GiB blob on a slow link included).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// `wharf cp` arguments.
#[derive(clap::Args, Debug)]
pub struct CpArgs {
    /// `oci:PATH[:TAG]`, `docker-archive:PATH` or `docker://HOST/NAME[:TAG|@DIGEST]`.
    pub src: String,
    /// `docker://HOST/NAME[:TAG]`: the Wharf repository to copy into (the tag defaults to the
    /// source's).
    pub dst: String,
    /// Credentials for the source registry, `USER:SECRET` (default: the stored login, else
    /// anonymous).
    #[arg(long, env = "WHARF_SRC_CREDS", hide_env_values = true)]
    pub src_creds: Option<String>,
    /// Credentials for the destination, `USER:SECRET` (default: the ambient OIDC identity,
    /// else the login stored by `wharf login`).
    #[arg(long, env = "WHARF_DEST_CREDS", hide_env_values = true)]
    pub dest_creds: Option<String>,
    /// Blobs copied at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    pub parallel: usize,
}

/// A `HOST/NAME[:TAG|@DIGEST]` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteRef {
    host: String,
    name: String,
    reference: Option<String>,
}

fn parse_remote(raw: &str) -> Result<RemoteRef> {
    let rest = raw.strip_prefix("docker://").unwrap_or(raw);
    let (host, path) = rest
        .split_once('/')
        .with_context(|| format!("{raw:?} is not HOST/NAME[:TAG]"))?;
    let (name, reference) = if let Some((n, d)) = path.split_once('@') {
        (n, Some(d.to_owned()))
    } else {
        match path.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_owned())),
            _ => (path, None),
        }
    };
    wharf::oci::RepoName::parse(name).with_context(|| format!("invalid repository {name:?}"))?;
    Ok(RemoteRef {
        host: host.to_owned(),
        name: name.to_owned(),
        reference,
    })
}

fn explicit(creds: Option<&str>) -> Result<Option<Credentials>> {
    let Some(c) = creds else { return Ok(None) };
    let (user, secret) = c.split_once(':').context("credentials are USER:SECRET")?;
    Ok(Some(Credentials::Basic(user.to_owned(), secret.to_owned())))
}

/// The login logic of `docker-credential-wharf`: the ambient identity (for the destination),
/// else the refresh token `wharf login` stored for the host, else anonymous. Unlike the helper,
/// which docker asks about any host, no `WHARF_REGISTRIES` is needed: the user named `host`.
pub(crate) async fn resolve(
    host: &str,
    given: Option<&str>,
    ambient_ok: bool,
) -> Result<Credentials> {
    if let Some(c) = explicit(given)? {
        return Ok(c);
    }
    // The user named this registry: its ambient token (audience: the registry's URL) may go
    // there, to a realm on its own origin only (`client::realm`).
    if ambient_ok && let Some((_, token)) = ambient::id_token(host).await? {
        return Ok(Credentials::Basic("oidc".into(), token));
    }
    let store = CredentialStore::load()?;
    Ok(match store.registries.get(&registry_host(host)) {
        Some(stored) => Credentials::Refresh(stored.refresh_token.clone()),
        None => Credentials::Anonymous,
    })
}

fn http() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Runs `wharf cp`.
pub async fn run(args: CpArgs) -> Result<()> {
    let client = http()?;
    let scratch = tempfile::Builder::new().prefix("wharf-cp-").tempdir()?;
    let (src, src_ref, src_tag) = open_source(&args, &client, scratch.path()).await?;
    let dst = parse_remote(&args.dst)?;
    let creds = resolve(&dst.host, args.dest_creds.as_deref(), true).await?;
    let repo = Repository::connect(
        client,
        &registry_base(&dst.host),
        &dst.name,
        &creds,
        "pull,push",
    )
    .await?;
    let (media_type, bytes) = src.root_manifest(src_ref.as_deref()).await?;
    let tag = dst
        .reference
        .clone()
        .or(src_tag)
        .unwrap_or_else(|| "latest".to_owned());
    let bars = Bars::new();
    let root: Value = serde_json::from_slice(&bytes).context("the manifest is not JSON")?;
    let mut children = Vec::new();
    if let Some(list) = root["manifests"].as_array() {
        for m in list {
            let digest = m["digest"].as_str().context("descriptor without digest")?;
            let media = m["mediaType"].as_str().unwrap_or_default();
            children.push((digest.to_owned(), src.manifest(digest, media).await?));
        }
    }
    let mut blobs = BTreeSet::new();
    collect_blobs(&root, &mut blobs)?;
    for (_, (_, child)) in &children {
        collect_blobs(&serde_json::from_slice(child)?, &mut blobs)?;
    }
    let results: Vec<Result<Pushed>> = futures_util::stream::iter(blobs)
        .map(|(digest, size)| {
            let (src, repo, bars) = (&src, &repo, &bars);
            async move {
                let meter = bars.blob(&short(&digest), size);
                let file = src.blob_file(&digest, &meter).await?;
                let pushed = repo
                    .push_blob(&file, &digest, size, &meter)
                    .await
                    .with_context(|| format!("pushing {digest}"))?;
                meter.finish(match pushed {
                    Pushed::Present => "already there",
                    Pushed::Direct => "direct to the store",
                    Pushed::Through => "through the registry",
                });
                Ok(pushed)
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    let mut counts = [0usize; 3];
    for r in results {
        counts[r? as usize] += 1;
    }
    for (digest, (media, bytes)) in &children {
        repo.put_manifest(digest, media, bytes).await?;
    }
    repo.put_manifest(&tag, &media_type, &bytes).await?;
    let digest = wharf::oci::Algorithm::Sha256.digest(&bytes);
    eprintln!(
        "copied {} to {}/{}:{tag} ({digest}): {} blobs direct to the store, {} through the registry, {} already there",
        args.src,
        dst.host,
        dst.name,
        counts[Pushed::Direct as usize],
        counts[Pushed::Through as usize],
        counts[Pushed::Present as usize],
    );
    Ok(())
}

fn short(digest: &str) -> String {
    digest
        .split_once(':')
        .map(|(_, h)| h.chars().take(12).collect())
        .unwrap_or_default()
}

/// The config and layers of an image manifest (an index has none of its own).
fn collect_blobs(manifest: &Value, into: &mut BTreeSet<(String, u64)>) -> Result<()> {
    let descriptors = manifest["config"]
        .as_object()
        .map(|_| &manifest["config"])
        .into_iter()
        .chain(manifest["layers"].as_array().into_iter().flatten());
    for d in descriptors {
        let digest = d["digest"].as_str().context("descriptor without digest")?;
        let size = d["size"].as_u64().context("descriptor without size")?;
        into.insert((digest.to_owned(), size));
    }
    Ok(())
}

async fn open_source(
    args: &CpArgs,
    client: &reqwest::Client,
    scratch: &std::path::Path,
) -> Result<(Source, Option<String>, Option<String>)> {
    if let Some(rest) = args.src.strip_prefix("oci:") {
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && !p.is_empty() => (p, Some(t.to_owned())),
            _ => (rest, None),
        };
        let source = Source::Layout {
            root: PathBuf::from(path),
            extra: Default::default(),
        };
        return Ok((source, tag.clone(), tag));
    }
    if let Some(path) = args.src.strip_prefix("docker-archive:") {
        let into = scratch.join("archive");
        std::fs::create_dir_all(&into)?;
        let (source, tag) = Source::docker_archive(std::path::Path::new(path), &into)?;
        return Ok((source, None, tag));
    }
    if args.src.starts_with("docker://") {
        let src = parse_remote(&args.src)?;
        let creds = resolve(&src.host, args.src_creds.as_deref(), false).await?;
        let repo = Repository::connect(
            client.clone(),
            &registry_base(&src.host),
            &src.name,
            &creds,
            "pull",
        )
        .await?;
        let downloads = scratch.join("blobs");
        std::fs::create_dir_all(&downloads)?;
        return Ok((
            Source::Registry {
                repo,
                scratch: downloads,
            },
            src.reference.clone(),
            src.reference.filter(|r| !r.contains(':')),
        ));
    }
    bail!(
        "unknown source {:?}: use oci:PATH[:TAG], docker-archive:PATH or docker://HOST/NAME:TAG",
        args.src
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_references() {
        let r = parse_remote("docker://127.0.0.1:5000/a/b:v1").expect("ref");
        assert_eq!(
            (r.host.as_str(), r.name.as_str(), r.reference.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("v1"))
        );
        let r = parse_remote("registry.example.com/a").expect("ref");
        assert_eq!(r.reference, None);
        let r = parse_remote("h:1/a@sha256:00").expect("ref");
        assert_eq!(r.reference.as_deref(), Some("sha256:00"));
        assert!(parse_remote("docker://nohost").is_err());
        assert!(parse_remote("docker://h/UPPER").is_err());
    }
}
