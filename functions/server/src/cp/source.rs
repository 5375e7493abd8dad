//! Where `wharf cp` reads an image from: an OCI image layout directory, a `docker save`
//! archive, or another registry. Each hands out manifests by reference and blobs as files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use wharf::oci::{Algorithm, Digest, DigestStream};

use super::progress::Meter;
use super::registry::Repository;

/// OCI media types `wharf cp` writes for images read from a docker archive.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation naming a manifest's tag in an OCI layout's `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image source.
#[derive(Debug)]
pub enum Source {
    /// An OCI image layout directory (also what a docker archive is unpacked or converted to).
    Layout {
        /// Its root.
        root: PathBuf,
        /// Manifests made up for the copy (docker archives), by digest.
        extra: BTreeMap<String, (String, Vec<u8>)>,
    },
    /// A repository on a registry.
    Registry {
        /// The repository.
        repo: Repository,
        /// Where downloaded blobs go.
        scratch: PathBuf,
    },
}

/// A manifest: media type and bytes.
pub type Manifest = (String, Vec<u8>);

/// The SHA-256 digest and size of a file, read once.
pub fn file_digest(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = DigestStream::new(Some(Algorithm::Sha256));
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher
        .digest(Algorithm::Sha256)
        .context("the stream hashes SHA-256")?;
    Ok((digest.to_string(), hasher.len()))
}

fn is_gzip(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 2];
    let mut f = std::fs::File::open(path)?;
    Ok(f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b])
}

fn blob_path(root: &Path, digest: &str) -> Result<PathBuf> {
    let d = Digest::parse(digest).with_context(|| format!("invalid digest {digest}"))?;
    Ok(root
        .join("blobs")
        .join(d.algorithm().as_str())
        .join(d.hex()))
}

impl Source {
    /// The manifest a layout's `index.json` names `tag` (or its only manifest when no tag is
    /// given); for a registry, the manifest of `reference`.
    pub async fn root_manifest(&self, reference: Option<&str>) -> Result<Manifest> {
        match self {
            Source::Layout { root, extra } => {
                let index: Value = serde_json::from_slice(
                    &std::fs::read(root.join("index.json"))
                        .with_context(|| format!("{} is not an OCI layout", root.display()))?,
                )?;
                let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
                let chosen = match reference {
                    Some(tag) => manifests
                        .iter()
                        .find(|m| m["annotations"][REF_NAME].as_str() == Some(tag))
                        .with_context(|| format!("no manifest tagged {tag:?} in the layout"))?,
                    None if manifests.len() == 1 => &manifests[0],
                    None => bail!("the layout holds several manifests: name one with oci:PATH:TAG"),
                };
                let digest = chosen["digest"]
                    .as_str()
                    .context("descriptor without digest")?;
                if let Some(m) = extra.get(digest) {
                    return Ok(m.clone());
                }
                let media_type = chosen["mediaType"].as_str().unwrap_or(OCI_MANIFEST);
                Ok((
                    media_type.to_owned(),
                    std::fs::read(blob_path(root, digest)?)?,
                ))
            }
            Source::Registry { repo, .. } => repo.manifest(reference.unwrap_or("latest")).await,
        }
    }

    /// A manifest by digest.
    pub async fn manifest(&self, digest: &str, media_type: &str) -> Result<Manifest> {
        match self {
            Source::Layout { root, extra } => match extra.get(digest) {
                Some(m) => Ok(m.clone()),
                None => Ok((
                    media_type.to_owned(),
                    std::fs::read(blob_path(root, digest)?)?,
                )),
            },
            Source::Registry { repo, .. } => repo.manifest(digest).await,
        }
    }

    /// A blob as a local file (downloaded first from a registry).
    pub async fn blob_file(&self, digest: &str, meter: &Meter) -> Result<PathBuf> {
        match self {
            Source::Layout { root, .. } => blob_path(root, digest),
            Source::Registry { repo, scratch } => {
                let file = scratch.join(digest.replace(':', "-"));
                repo.download(digest, &file, meter).await?;
                let (actual, _) = file_digest(&file)?;
                if actual != digest {
                    bail!("the source registry sent {actual} for {digest}");
                }
                meter.reset();
                Ok(file)
            }
        }
    }

    /// Unpacks a `docker save` archive into `into` and reads it as a layout: archives written
    /// by Docker 25+ are OCI layouts already; older ones get an OCI manifest made up from
    /// their `manifest.json` (layers keep their bytes, so their digests are the archive's).
    pub fn docker_archive(archive: &Path, into: &Path) -> Result<(Source, Option<String>)> {
        // Links and paths are checked there: nothing outside `into` is ever read.
        super::archive::unpack(archive, into)
            .with_context(|| format!("reading {}", archive.display()))?;
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(into.join("manifest.json"))
                .context("the archive has no manifest.json")?,
        )?;
        let entry = manifest
            .as_array()
            .and_then(|a| a.first())
            .context("manifest.json lists no image")?;
        let tag = entry["RepoTags"][0]
            .as_str()
            .and_then(|t| t.rsplit_once(':'))
            .map(|(_, t)| t.to_owned());
        if into.join("oci-layout").is_file() && into.join("index.json").is_file() {
            let source = Source::Layout {
                root: into.to_owned(),
                extra: BTreeMap::new(),
            };
            return Ok((source, None));
        }
        let inside = |p: &Value| -> Result<PathBuf> {
            let rel = p.as_str().context("path expected in manifest.json")?;
            if rel.split('/').any(|s| s == ".." || s.is_empty()) || rel.starts_with('/') {
                bail!("unsafe path {rel:?} in manifest.json");
            }
            let path = into.join(rel);
            // Unpacking made nothing but files and directories; a regular file is required
            // all the same, so a link could never be read through here.
            if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                bail!("manifest.json names {rel:?}, which is not a file of the archive");
            }
            Ok(path)
        };
        let descriptor = |path: PathBuf, media_type: &str| -> Result<Value> {
            let (digest, size) = file_digest(&path)?;
            let dst = blob_path(into, &digest)?;
            if let Some(dir) = dst.parent() {
                std::fs::create_dir_all(dir)?;
            }
            if !dst.exists() {
                std::fs::rename(&path, &dst)?;
            }
            Ok(json!({ "mediaType": media_type, "digest": digest, "size": size }))
        };
        let config = descriptor(inside(&entry["Config"])?, OCI_CONFIG)?;
        let mut layers = Vec::new();
        for layer in entry["Layers"].as_array().context("no Layers")? {
            let path = inside(layer)?;
            let gzip = is_gzip(&path)?;
            layers.push(descriptor(
                path,
                if gzip { OCI_LAYER_GZIP } else { OCI_LAYER_TAR },
            )?);
        }
        let bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        }))?;
        let digest = wharf::oci::Algorithm::Sha256.digest(&bytes).to_string();
        std::fs::write(
            into.join("index.json"),
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "manifests": [{ "mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len() }],
            }))?,
        )?;
        let mut extra = BTreeMap::new();
        extra.insert(digest, (OCI_MANIFEST.to_owned(), bytes));
        Ok((
            Source::Layout {
                root: into.to_owned(),
                extra,
            },
            tag,
        ))
    }
}
