//! Checks on a generated static site (the public catalog): every file, HTML parse errors as a
//! browser's parser (html5ever) reports them, and internal links that must resolve.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Every file under `root`, recursively, sorted.
pub fn files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `base` joined with the relative `link`, `..` resolved lexically; `None` if it leaves `root`.
pub fn resolve(root: &Path, base_dir: &Path, link: &str) -> Option<PathBuf> {
    let mut out = base_dir.to_path_buf();
    for c in Path::new(link).components() {
        match c {
            Component::ParentDir => {
                if !out.pop() || !out.starts_with(root) {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    out.starts_with(root).then_some(out)
}

/// Fails unless `link` (from the file in `base_dir`), without its fragment, names a file of
/// the site. External links (`scheme:`) outside `site_url` are not checked.
pub fn check_link(root: &Path, base_dir: &Path, site_url: &str, link: &str) -> Result<()> {
    let link = link.split('#').next().unwrap_or_default();
    if link.is_empty() {
        return Ok(());
    }
    let target = if let Some(rel) = link.strip_prefix(site_url) {
        resolve(root, root, rel)
    } else if link.contains(':') {
        bail!(
            "unexpected external link {link:?} in {}",
            base_dir.display()
        );
    } else {
        resolve(root, base_dir, link)
    };
    match target {
        Some(t) if t.is_file() => Ok(()),
        _ => bail!("broken link {link:?} in {}", base_dir.display()),
    }
}
