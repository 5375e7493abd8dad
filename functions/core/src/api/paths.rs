//! Parsing raw OCI paths into canonical routes.
//!
//! `/v2/<name>/manifests/<reference>` and friends cannot be matched by a path router because
//! `<name>` holds slashes. [`canonical_path`] finds the endpoint from the right-hand end of the
//! path (the part after the name is fixed), validates the name against the spec grammar, and
//! rewrites it as one percent-encoded segment (`a/b` → `a%2Fb`). Handlers then extract the name
//! as a single path parameter. A name that fails the grammar never reaches a handler: the
//! request is answered `NAME_INVALID` here.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use tower::Service;

use crate::oci::{ErrorCode, OciError, RepoName};

/// The endpoint kinds that follow a repository name.
const NAMED_KINDS: [&str; 3] = ["manifests", "blobs", "referrers"];

/// Rewrites a raw request path into its canonical form. `Ok(None)` means "not a named-repository
/// path": leave it to the router (`/v2/`, `/v2/_catalog`, or a 404).
pub fn canonical_path(path: &str) -> Result<Option<String>, OciError> {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Ok(None);
    };
    if rest.is_empty() || rest == "_catalog" {
        return Ok(None);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    if n < 3 {
        return Ok(None);
    }
    let (name_segs, tail) = if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        (&segs[..n - 3], format!("blobs/uploads/{}", segs[n - 1]))
    } else if segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        (&segs[..n - 2], "blobs/uploads/".to_owned())
    } else if segs[n - 2] == "tags" && segs[n - 1] == "list" {
        (&segs[..n - 2], "tags/list".to_owned())
    } else if NAMED_KINDS.contains(&segs[n - 2]) {
        (&segs[..n - 2], format!("{}/{}", segs[n - 2], segs[n - 1]))
    } else {
        return Ok(None);
    };
    let name = name_segs.join("/");
    let repo =
        RepoName::parse(&name).map_err(|e| OciError::new(ErrorCode::NameInvalid, e.to_string()))?;
    Ok(Some(format!(
        "/v2/{}/{tail}",
        repo.as_str().replace('/', "%2F")
    )))
}

/// A service that canonicalizes OCI paths before handing the request to the inner router.
#[derive(Debug, Clone)]
pub struct OciPaths<S> {
    inner: S,
}

impl<S> OciPaths<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        OciPaths { inner }
    }
}

fn rewrite(request: &mut Request) -> Result<(), OciError> {
    let Some(path) = canonical_path(request.uri().path())? else {
        return Ok(());
    };
    let path_and_query = match request.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e| OciError::new(ErrorCode::NameInvalid, format!("{e}")))?,
    );
    *request.uri_mut() = Uri::from_parts(parts)
        .map_err(|e| OciError::new(ErrorCode::NameInvalid, format!("{e}")))?;
    Ok(())
}

impl<S> Service<Request> for OciPaths<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if let Err(e) = rewrite(&mut request) {
            return Box::pin(async move { Ok(e.into_response()) });
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> Option<String> {
        canonical_path(p).expect("valid")
    }

    #[test]
    fn names_with_slashes_become_one_segment() {
        assert_eq!(
            canon("/v2/a/b/c/manifests/latest").as_deref(),
            Some("/v2/a%2Fb%2Fc/manifests/latest")
        );
        assert_eq!(
            canon("/v2/a/blobs/sha256:x").as_deref(),
            Some("/v2/a/blobs/sha256:x")
        );
        assert_eq!(
            canon("/v2/a/b/blobs/uploads/").as_deref(),
            Some("/v2/a%2Fb/blobs/uploads/")
        );
        assert_eq!(
            canon("/v2/a/b/blobs/uploads").as_deref(),
            Some("/v2/a%2Fb/blobs/uploads/")
        );
        assert_eq!(
            canon("/v2/a/blobs/uploads/abc").as_deref(),
            Some("/v2/a/blobs/uploads/abc")
        );
        assert_eq!(canon("/v2/x/tags/list").as_deref(), Some("/v2/x/tags/list"));
        assert_eq!(
            canon("/v2/x/referrers/sha256:y").as_deref(),
            Some("/v2/x/referrers/sha256:y")
        );
    }

    #[test]
    fn names_that_look_like_endpoints_still_parse() {
        assert_eq!(
            canon("/v2/manifests/blobs/manifests/v1").as_deref(),
            Some("/v2/manifests%2Fblobs/manifests/v1")
        );
        assert_eq!(
            canon("/v2/tags/tags/list").as_deref(),
            Some("/v2/tags/tags/list")
        );
    }

    #[test]
    fn other_paths_are_left_alone() {
        for p in [
            "/v2/",
            "/v2/_catalog",
            "/v2/a/unknown/x",
            "/token",
            "/v2/a/b",
        ] {
            assert_eq!(canon(p), None, "{p}");
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        for p in [
            "/v2/../etc/manifests/latest",
            "/v2/%2e%2e/manifests/latest",
            "/v2/a%2Fb/manifests/latest",
            "/v2/A/manifests/latest",
            "/v2//a/manifests/latest",
            "/v2/a//b/blobs/uploads/",
        ] {
            let err = canonical_path(p).expect_err(p);
            assert_eq!(err.code(), ErrorCode::NameInvalid, "{p}");
        }
    }
}
