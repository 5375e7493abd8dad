//! Where the rendered site goes: a [`SiteWriter`] takes files by site-relative path. The
//! filesystem writer is here; the public-bucket writer (S3/R2, for the catalog function) is in
//! [`crate::s3`] and stores [`ContentKind`]'s `Content-Type` and `Cache-Control` with each
//! object.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// Cache lifetime of pages and JSON: short, because a push changes them and nothing in their
/// URL does.
const PAGE_MAX_AGE_SECS: u32 = 60;

/// Cache lifetime of the stylesheet and script: they change only with a new Wharf release, but
/// their names carry no version, so an hour bounds how long an old copy can linger.
const ASSET_MAX_AGE_SECS: u32 = 3600;

/// What a file is, which decides its content type and cache headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// An HTML page.
    Html,
    /// JSON data.
    Json,
    /// The stylesheet.
    Css,
    /// The search script.
    Js,
    /// `sitemap.xml`.
    Xml,
    /// The Atom feed.
    Atom,
}

impl ContentKind {
    /// The `Content-Type` to serve it with.
    pub fn content_type(self) -> &'static str {
        match self {
            ContentKind::Html => "text/html; charset=utf-8",
            ContentKind::Json => "application/json",
            ContentKind::Css => "text/css; charset=utf-8",
            ContentKind::Js => "text/javascript; charset=utf-8",
            ContentKind::Xml => "application/xml",
            ContentKind::Atom => "application/atom+xml",
        }
    }

    /// The `Cache-Control` to serve it with.
    pub fn cache_control(self) -> String {
        let age = match self {
            ContentKind::Css | ContentKind::Js => ASSET_MAX_AGE_SECS,
            _ => PAGE_MAX_AGE_SECS,
        };
        format!("public, max-age={age}")
    }
}

/// A site-output failure.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A path that is not a plain relative path inside the site.
    #[error("not a path inside the site: {0:?}")]
    BadPath(String),
    /// A site URL (`s3://…`) that cannot be used.
    #[error("site destination {0}")]
    BadTarget(String),
    /// The object store failed.
    #[error("object store, {path}: {message}")]
    Store {
        /// The site-relative path.
        path: String,
        /// The cause, as the store reported it.
        message: String,
    },
    /// The destination failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The site-relative path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A destination for the rendered site, addressed by site-relative paths (`r/a/b/index.html`).
#[async_trait]
pub trait SiteWriter: Send + Sync + Debug {
    /// Writes (or replaces) one file.
    async fn put(&self, path: &str, bytes: Vec<u8>, kind: ContentKind) -> Result<(), WriteError>;

    /// Reads a file back (the build's state file), or `None` if absent.
    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, WriteError>;

    /// Removes a file; removing a missing file is not an error.
    async fn delete(&self, path: &str) -> Result<(), WriteError>;

    /// Every file under the directory `dir` (site-relative paths), in any order. Used only when
    /// the state file is missing, to sweep files no build remembers writing.
    async fn list(&self, dir: &str) -> Result<Vec<String>, WriteError>;
}

/// Accepts a site path only if it is plain relative segments: none empty, `.` or `..`. Both
/// writers resolve paths through this, so no path escapes the site's root or prefix (an object
/// key `a//b` or `a/./b` would be a different object than the page links to).
pub(crate) fn check_path(path: &str) -> Result<(), WriteError> {
    let plain = !path.is_empty()
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if plain {
        Ok(())
    } else {
        Err(WriteError::BadPath(path.to_owned()))
    }
}

/// Writes the site into a directory. Each file is written to a temporary name and renamed, so
/// a web server never serves half a page.
#[derive(Debug, Clone)]
pub struct FsWriter {
    root: PathBuf,
}

impl FsWriter {
    /// A writer into `root` (created as needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsWriter { root: root.into() }
    }

    fn resolve(&self, path: &str) -> Result<PathBuf, WriteError> {
        check_path(path)?;
        Ok(self.root.join(path))
    }
}

fn io(path: &str) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

#[async_trait]
impl SiteWriter for FsWriter {
    async fn put(&self, path: &str, bytes: Vec<u8>, _kind: ContentKind) -> Result<(), WriteError> {
        let dest = self.resolve(path)?;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io(path))?;
        }
        let mut tmp = dest.clone().into_os_string();
        tmp.push(".tmp");
        tokio::fs::write(&tmp, bytes).await.map_err(io(path))?;
        tokio::fs::rename(&tmp, &dest).await.map_err(io(path))
    }

    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, WriteError> {
        match tokio::fs::read(self.resolve(path)?).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    async fn delete(&self, path: &str) -> Result<(), WriteError> {
        match tokio::fs::remove_file(self.resolve(path)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
            _ => Ok(()),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>, WriteError> {
        let mut out = Vec::new();
        let mut pending = vec![self.resolve(dir)?];
        while let Some(d) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&d).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(dir)(e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(io(dir))? {
                let path = entry.path();
                if entry.file_type().await.map_err(io(dir))?.is_dir() {
                    pending.push(path);
                } else if let Some(rel) = site_relative(&self.root, &path) {
                    out.push(rel);
                }
            }
        }
        Ok(out)
    }
}

/// `path` below `root` as a `/`-separated site path (`None` for a name that is not UTF-8,
/// which no build writes).
fn site_relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.iter().map(|p| p.to_str()).collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_writer_refuses_paths_outside_the_site() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = FsWriter::new(dir.path());
        for bad in ["../x", "/etc/x", "a/../../x", "", "a//b", "a/./b", "a/"] {
            assert!(
                matches!(
                    w.put(bad, vec![], ContentKind::Html).await,
                    Err(WriteError::BadPath(_))
                ),
                "{bad} must be refused"
            );
        }
        w.put("r/a/index.html", b"hi".to_vec(), ContentKind::Html)
            .await
            .expect("put");
        assert_eq!(
            w.get("r/a/index.html").await.expect("get"),
            Some(b"hi".to_vec())
        );
        assert_eq!(w.list("r").await.expect("list"), ["r/a/index.html"]);
        assert!(w.list("nothing-here").await.expect("list").is_empty());
        w.delete("r/a/index.html").await.expect("delete");
        w.delete("r/a/index.html").await.expect("delete again");
        assert_eq!(w.get("r/a/index.html").await.expect("get"), None);
    }
}
