//! Image content built by code into a [`Layout`]: deterministic gzip tar layers, a large layer of
//! random bytes, image configs, manifests and multi-arch indexes.
//!
//! Same inputs, same bytes: tar headers carry fixed owners, modes and times, and the gzip header
//! has no timestamp, so digests are stable from run to run.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::digest::sha256;
use crate::layout::{
    Descriptor, Layout, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST,
    Platform,
};

/// Random bytes per file in a sample layer: enough that gzip cannot shrink layers to nothing.
const SAMPLE_FILE_BYTES: usize = 48 * 1024;

/// Write size when streaming a random layer to disk.
const RANDOM_CHUNK: usize = 1024 * 1024;

/// A layer blob in a layout, with the digest of its uncompressed tar (the config's `diff_id`).
#[derive(Debug, Clone)]
pub struct Layer {
    /// The layer's descriptor (compressed bytes).
    pub descriptor: Descriptor,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

/// A file in a layer: path inside the image and content.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Relative path, e.g. `etc/wharf/a.txt`.
    pub path: String,
    /// Bytes.
    pub content: Vec<u8>,
}

/// Seeded random bytes: the same seed gives the same bytes.
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    SmallRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// A deterministic tar of `files` (directories are created as needed).
pub fn tar(files: &[FileEntry]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    let mut dirs: Vec<String> = Vec::new();
    for file in files {
        let parents = Path::new(&file.path)
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>();
        for parent in parents.into_iter().rev() {
            let dir = parent.to_string_lossy().into_owned();
            if dir.is_empty() || dirs.contains(&dir) {
                continue;
            }
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            header.set_mtime(0);
            builder.append_data(&mut header, format!("{dir}/"), std::io::empty())?;
            dirs.push(dir);
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(file.content.len() as u64);
        header.set_mtime(0);
        builder.append_data(&mut header, &file.path, file.content.as_slice())?;
    }
    Ok(builder.into_inner()?)
}

/// Gzips `bytes` with a header that carries no timestamp or name.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// Stores a gzip tar layer of `files` in the layout.
pub fn gzip_layer(layout: &Layout, files: &[FileEntry]) -> Result<Layer> {
    let tar = tar(files)?;
    let descriptor = layout.put_blob(OCI_LAYER_GZIP, &gzip(&tar)?)?;
    Ok(Layer {
        descriptor,
        diff_id: sha256(&tar),
    })
}

/// Streams `size` seeded random bytes into the layout as an uncompressed layer, hashing on the
/// way so the data is written once and never held in memory.
pub fn random_layer(layout: &Layout, size: u64, seed: u64) -> Result<Layer> {
    let staging = layout.root().join(format!("random-{seed}.partial"));
    let mut out = BufWriter::with_capacity(RANDOM_CHUNK, File::create(&staging)?);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; RANDOM_CHUNK];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(RANDOM_CHUNK as u64))?;
        rng.fill_bytes(&mut chunk[..n]);
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.into_inner()
        .context("flushing the random layer")?
        .sync_all()?;
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let descriptor = layout.adopt_blob(OCI_LAYER_TAR, &staging, &digest)?;
    if descriptor.size != size {
        bail!("random layer has {} bytes, not {size}", descriptor.size);
    }
    Ok(Layer {
        diff_id: digest,
        descriptor,
    })
}

/// Writes an image config and manifest for `platform` over `layers`; returns the manifest's
/// descriptor, carrying the platform (ready for an index).
pub fn image(layout: &Layout, platform: &Platform, layers: &[Layer]) -> Result<Descriptor> {
    let config = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": { "org.example.wharf-e2e": "true" },
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": layers
            .iter()
            .enumerate()
            .map(|(i, _)| json!({ "created": "2024-01-01T00:00:00Z", "created_by": format!("wharf-e2e layer {i}") }))
            .collect::<Vec<_>>(),
    });
    let config = layout.put_blob(OCI_CONFIG, &serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": layers.iter().map(|l| l.descriptor.to_json()).collect::<Vec<_>>(),
    });
    let manifest = layout.put_blob(OCI_MANIFEST, &serde_json::to_vec(&manifest)?)?;
    Ok(manifest.with_platform(platform.clone()))
}

/// Writes an image index over `manifests` (each with its platform).
pub fn index(layout: &Layout, manifests: &[Descriptor]) -> Result<Descriptor> {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
    });
    layout.put_blob(OCI_INDEX, &serde_json::to_vec(&index)?)
}

/// The files of sample layer `i` under `seed`: a text file and a random binary.
pub fn sample_files(seed: u64, i: usize) -> Vec<FileEntry> {
    vec![
        FileEntry {
            path: format!("etc/wharf-e2e/layer-{i}.txt"),
            content: format!("layer {i} of sample image {seed}\n").into_bytes(),
        },
        FileEntry {
            path: format!("opt/wharf-e2e/{seed}/blob-{i}.bin"),
            content: seeded_bytes(
                seed.wrapping_mul(1000).wrapping_add(i as u64),
                SAMPLE_FILE_BYTES,
            ),
        },
    ]
}

/// A single-platform image of `layers` sample layers, tagged `tag` in the layout.
pub fn sample_image(layout: &Layout, tag: &str, layers: usize, seed: u64) -> Result<Descriptor> {
    let layers = (0..layers)
        .map(|i| gzip_layer(layout, &sample_files(seed, i)))
        .collect::<Result<Vec<_>>>()?;
    let manifest = image(layout, &Platform::linux("amd64"), &layers)?;
    layout.tag(tag, &manifest)?;
    Ok(manifest)
}

/// A linux/amd64 + linux/arm64 index (two layers per platform, different content), tagged `tag`;
/// returns the index and its child manifests.
pub fn sample_index(
    layout: &Layout,
    tag: &str,
    seed: u64,
) -> Result<(Descriptor, Vec<Descriptor>)> {
    let mut children = Vec::new();
    for (n, arch) in ["amd64", "arm64"].into_iter().enumerate() {
        let arch_seed = seed.wrapping_mul(10).wrapping_add(n as u64);
        let layers = (0..2)
            .map(|i| gzip_layer(layout, &sample_files(arch_seed, i)))
            .collect::<Result<Vec<_>>>()?;
        children.push(image(layout, &Platform::linux(arch), &layers)?);
    }
    let index = index(layout, &children)?;
    layout.tag(tag, &index)?;
    Ok((index, children))
}
