//! Router tests: every endpoint and error path, driven through `oneshot` with no socket, on the
//! real embedded backends in a temporary directory.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, router};
use crate::oci::{Algorithm, Digest, media};
use crate::storage::fs::FsBlobStore;
use crate::storage::redb::RedbMetaStore;

struct App {
    dir: tempfile::TempDir,
    router: Router,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

async fn state_in(dir: &std::path::Path) -> AppState {
    let blobs = FsBlobStore::open(dir).await.expect("blob store");
    let meta = RedbMetaStore::open(&dir.join("meta.redb")).expect("meta store");
    AppState::new(Arc::new(blobs), Arc::new(meta))
}

impl App {
    async fn new() -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let router = router(state_in(dir.path()).await);
        App { dir, router }
    }

    /// Drops the stores and opens them again on the same directory, as a restart would.
    async fn restart(self) -> App {
        let App { dir, router } = self;
        drop(router);
        let router = super::router(state_in(dir.path()).await);
        App { dir, router }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(body.into()).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, &[], Body::empty()).await
    }

    /// Pushes a blob in one POST and returns its digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Algorithm::Sha256.digest(data);
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        digest
    }

    /// Pushes config + one layer and an image manifest; returns the manifest bytes and digest.
    async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layer: &[u8],
        extra: Value,
    ) -> (Vec<u8>, Digest) {
        let config = self.push_blob(repo, b"{}").await;
        let layer_digest = self.push_blob(repo, layer).await;
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}]
        });
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        let bytes = serde_json::to_vec(&m).expect("json");
        let r = self
            .put_manifest(repo, tag, media::OCI_MANIFEST, &bytes)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let digest = Algorithm::Sha256.digest(&bytes);
        (bytes, digest)
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Reply {
        self.call(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            bytes.to_vec(),
        )
        .await
    }
}

mod bad_input;
mod blobs;
mod headers;
mod immutable;
mod limits;
mod listing;
mod manifests;
mod rate_limits;
mod sha512;
mod upload_pace;
mod uploads;
