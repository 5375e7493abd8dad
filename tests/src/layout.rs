//! OCI image layouts on disk (image-spec `image-layout.md`): `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`. Written to make fixtures a client can push, read back to compare what a
//! client pulled.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::digest::{hex_part, sha256, sha256_file};

/// `application/vnd.oci.image.manifest.v1+json`.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `application/vnd.oci.image.layer.v1.tar` (uncompressed).
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// The `index.json` annotation naming a reference (the tag in `oci:DIR:TAG`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `os`, e.g. `linux`.
    pub os: String,
    /// `architecture`, e.g. `amd64`.
    pub architecture: String,
}

impl Platform {
    /// `linux/<architecture>`.
    pub fn linux(architecture: &str) -> Self {
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
        }
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `mediaType`.
    pub media_type: String,
    /// `digest`, `sha256:<hex>`.
    pub digest: String,
    /// `size` in bytes.
    pub size: u64,
    /// `platform`, for index entries.
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// The descriptor as JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        });
        if let Some(p) = &self.platform {
            v["platform"] = json!({ "os": p.os, "architecture": p.architecture });
        }
        v
    }

    /// Parses a descriptor (its `platform` too, if any).
    pub fn from_json(v: &Value) -> Result<Self> {
        let field = |name: &str| {
            v[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("descriptor without {name}: {v}"))
        };
        let platform = v.get("platform").map(|p| Platform {
            os: p["os"].as_str().unwrap_or_default().to_owned(),
            architecture: p["architecture"].as_str().unwrap_or_default().to_owned(),
        });
        Ok(Descriptor {
            media_type: field("mediaType")?,
            digest: field("digest")?,
            size: v["size"]
                .as_u64()
                .ok_or_else(|| anyhow!("descriptor without size: {v}"))?,
            platform,
        })
    }

    /// The same descriptor with a platform.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates an empty layout at `root` (the directory may exist, empty).
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join("blobs/sha256"))
            .with_context(|| format!("creating layout {}", root.display()))?;
        std::fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let layout = Layout {
            root: root.to_owned(),
        };
        layout.write_index(&[])?;
        Ok(layout)
    }

    /// Opens an existing layout (e.g. one a client wrote).
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("oci-layout").is_file() {
            bail!(
                "{} is not an OCI layout (no oci-layout file)",
                root.display()
            );
        }
        Ok(Layout {
            root: root.to_owned(),
        })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_part(digest))
    }

    /// Stores `bytes` as a blob and describes it.
    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = sha256(bytes);
        std::fs::write(self.blob_path(&digest), bytes)?;
        Ok(Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size: bytes.len() as u64,
            platform: None,
        })
    }

    /// Moves `file` (on the same filesystem, with known `digest`) into the layout as a blob.
    pub fn adopt_blob(&self, media_type: &str, file: &Path, digest: &str) -> Result<Descriptor> {
        let target = self.blob_path(digest);
        std::fs::rename(file, &target)
            .with_context(|| format!("moving {} into the layout", file.display()))?;
        Ok(Descriptor {
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
            size: std::fs::metadata(&target)?.len(),
            platform: None,
        })
    }

    /// Reads a blob, failing if its bytes do not match its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = sha256(&bytes);
        if actual != digest {
            bail!("blob {digest} in {} holds {actual}", self.root.display());
        }
        Ok(bytes)
    }

    /// Reads and parses a JSON blob (a manifest, an index, a config).
    pub fn read_json(&self, digest: &str) -> Result<Value> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).with_context(|| format!("blob {digest} is not JSON"))
    }

    /// Checks, streaming, that the blob is present with the described size and digest.
    pub fn verify_blob(&self, desc: &Descriptor) -> Result<()> {
        let path = self.blob_path(&desc.digest);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("blob {} is missing", desc.digest))?
            .len();
        if size != desc.size {
            bail!("blob {} has {size} bytes, not {}", desc.digest, desc.size);
        }
        let actual = sha256_file(&path)?;
        if actual != desc.digest {
            bail!("blob {} holds {actual}", desc.digest);
        }
        Ok(())
    }

    /// The config and layer descriptors of the image manifest `digest`.
    pub fn image_blobs(&self, digest: &str) -> Result<(Descriptor, Vec<Descriptor>)> {
        let manifest = self.read_json(digest)?;
        let config = Descriptor::from_json(&manifest["config"])?;
        let layers = manifest["layers"]
            .as_array()
            .ok_or_else(|| anyhow!("manifest {digest} has no layers"))?
            .iter()
            .map(Descriptor::from_json)
            .collect::<Result<Vec<_>>>()?;
        Ok((config, layers))
    }

    /// The child manifest descriptors of the image index `digest`.
    pub fn index_children(&self, digest: &str) -> Result<Vec<Descriptor>> {
        let index = self.read_json(digest)?;
        index["manifests"]
            .as_array()
            .ok_or_else(|| anyhow!("index {digest} has no manifests"))?
            .iter()
            .map(Descriptor::from_json)
            .collect()
    }

    /// Names `desc` as `name` in `index.json` (replacing an older entry of that name).
    pub fn tag(&self, name: &str, desc: &Descriptor) -> Result<()> {
        let mut entries: Vec<Value> = self.index_entries()?;
        entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(name));
        let mut entry = desc.to_json();
        entry["annotations"] = json!({ REF_NAME: name });
        entries.push(entry);
        self.write_index(&entries)
    }

    /// The descriptor `index.json` names `name`.
    pub fn resolve(&self, name: &str) -> Result<Descriptor> {
        let entries = self.index_entries()?;
        let entry = entries
            .iter()
            .find(|e| e["annotations"][REF_NAME].as_str() == Some(name))
            .ok_or_else(|| anyhow!("no {name} in {}/index.json", self.root.display()))?;
        Descriptor::from_json(entry)
    }

    fn index_entries(&self) -> Result<Vec<Value>> {
        let path = self.root.join("index.json");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let index: Value = serde_json::from_slice(&bytes)?;
        Ok(index["manifests"].as_array().cloned().unwrap_or_default())
    }

    fn write_index(&self, entries: &[Value]) -> Result<()> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        std::fs::write(self.root.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }
}
