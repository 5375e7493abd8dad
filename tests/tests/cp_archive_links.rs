//! `wharf cp docker-archive:` with a hostile archive: an entry that is a symbolic link to a file
//! outside the archive (here a secret in a temp directory; in an attack `~/.ssh/id_ed25519` or
//! a cloud credentials file) must never be read, let alone pushed. The copy fails naming the
//! entry, and no byte of the secret reaches the registry's storage.
//!
//! A link between two files of the same archive stays accepted: `docker save` writes one for a
//! layer an image holds twice (moby/moby#24003).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use wharf_e2e::Wharf;
use wharf_e2e::cmd::{Cmd, streams};
use wharf_e2e::digest::sha256;
use wharf_e2e::server::binary_path;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The secret: a tar itself, so that even a client that checked layers were tars would take it.
fn secret_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let body = b"AWS_SECRET_ACCESS_KEY=do-not-leak-me\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o600);
    b.append_data(&mut h, "credentials", &body[..])
        .expect("secret tar");
    b.into_inner().expect("secret tar")
}

/// A `docker save` archive whose one layer entry is `layer`: a file's bytes or a link.
enum LayerEntry<'a> {
    /// A symbolic link to this target.
    Symlink(&'a str),
    /// The bytes, stored once, plus a second layer entry linking to the first with `../`.
    TwiceLinked(&'a [u8]),
}

fn archive(layer: LayerEntry<'_>, layer_digest: &str) -> Result<Vec<u8>> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let layers = match layer {
        LayerEntry::Symlink(_) => json!(["abc123/layer.tar"]),
        LayerEntry::TwiceLinked(_) => json!(["abc123/layer.tar", "def456/layer.tar"]),
    };
    let manifest = serde_json::to_vec(&json!([{
        "Config": "config.json",
        "RepoTags": ["example/app:v1"],
        "Layers": layers,
    }]))?;
    let mut b = tar::Builder::new(Vec::new());
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, bytes)?;
        Ok(())
    };
    let link = |b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, path, target)?;
        Ok(())
    };
    file(&mut b, "manifest.json", &manifest)?;
    file(&mut b, "config.json", &config)?;
    match layer {
        LayerEntry::Symlink(target) => link(&mut b, "abc123/layer.tar", target)?,
        LayerEntry::TwiceLinked(bytes) => {
            file(&mut b, "abc123/layer.tar", bytes)?;
            link(&mut b, "def456/layer.tar", "../abc123/layer.tar")?;
        }
    }
    Ok(b.into_inner()?)
}

/// Every file under `dir` (the registry's data directory): none may hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            found.extend(files_holding(&path, needle)?);
        } else if meta.is_file() {
            let bytes = std::fs::read(&path)?;
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    Ok(found)
}

fn cp(archive: &Path, dst: &str) -> Result<std::process::Output> {
    Cmd::new(binary_path())
        .args(["cp", &format!("docker-archive:{}", archive.display()), dst])
        .timeout(TIMEOUT)
        .output()
}

#[test]
fn cp_docker_archive_with_a_layer_symlinked_to_a_local_secret_pushes_nothing() -> Result<()> {
    let wharf = Wharf::start()?;
    let work = tempfile::tempdir()?;
    let secret = secret_bytes();
    let secret_path = work.path().join("outside").join("credentials.tar");
    std::fs::create_dir_all(secret_path.parent().expect("parent"))?;
    std::fs::write(&secret_path, &secret)?;
    let secret_digest = sha256(&secret);

    let archive_dir = work.path().join("archive");
    std::fs::create_dir_all(&archive_dir)?;
    let relative = "../../outside/credentials.tar";
    let absolute = secret_path.display().to_string();
    for (case, target) in [("absolute", absolute.as_str()), ("relative", relative)] {
        let tar_path = archive_dir.join(format!("{case}.tar"));
        std::fs::write(
            &tar_path,
            // The config names another diff id, so the secret's digest appears nowhere.
            archive(
                LayerEntry::Symlink(target),
                &format!("sha256:{}", "0".repeat(64)),
            )?,
        )?;
        let out = cp(&tar_path, &format!("docker://{}/evil/{case}", wharf.host()))?;
        assert!(
            !out.status.success(),
            "{case}: the copy must fail\n{}",
            streams(&out)
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("abc123/layer.tar") && said.contains("symbolic link"),
            "{case}: the error names the entry and why: {said}"
        );
    }
    let leaked = files_holding(wharf.data_dir(), b"do-not-leak-me")?;
    assert!(
        leaked.is_empty(),
        "the secret reached the registry: {leaked:?}"
    );
    let hex = secret_digest.trim_start_matches("sha256:");
    let named = files_holding(wharf.data_dir(), hex.as_bytes())?;
    assert!(
        named.is_empty(),
        "the registry recorded the secret's digest: {named:?}"
    );
    Ok(())
}

#[test]
fn cp_docker_archive_with_a_layer_linked_inside_the_archive_still_copies() -> Result<()> {
    let wharf = Wharf::start()?;
    let work = tempfile::tempdir()?;
    let layer = secret_bytes();
    let digest = sha256(&layer);
    let tar_path = work.path().join("image.tar");
    std::fs::write(
        &tar_path,
        archive(LayerEntry::TwiceLinked(&layer), &digest)?,
    )?;
    let out = cp(&tar_path, &format!("docker://{}/ok/app", wharf.host()))?;
    assert!(out.status.success(), "{}", streams(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("ok/app:v1"), "{said}");
    Ok(())
}
