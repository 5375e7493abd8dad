//! Immutable releases through the router, with `[auth]` on: nothing an immutable tag reaches
//! (an index's child manifests, their blobs) can be deleted by digest, even by an identity
//! granted `delete`; the refusal is `403 DENIED` naming the tag, and the store is unchanged. Nor
//! does garbage collection reclaim it afterwards.

use base64::Engine;

use super::*;
use crate::auth::Auth;
use crate::auth::testing::TestIssuer;
use crate::config::AuthConfig;
use crate::oci::RepoName;
use crate::storage::Page;

const AUD: &str = "wharf";
const REPO: &str = "acme/app";

/// A registry whose policy lets one identity pull, push and delete `acme/**`, where tags
/// `v*` are immutable.
struct Env {
    app: App,
    state: AppState,
    _issuer: TestIssuer,
    token: String,
}

impl Env {
    async fn new() -> Env {
        let issuer = TestIssuer::start();
        let policy = format!(
            r#"
[[identity]]
name = "release"
issuer = "{url}"
subject = "repo:acme/app:**"
[[identity.grant]]
repositories = ["acme/**"]
actions = ["pull", "push", "delete"]

[[immutable]]
repositories = ["acme/**"]
tags = ["v*"]
"#,
            url = issuer.url()
        );
        let config: AuthConfig = toml::from_str(&format!(
            "policy = {policy:?}\n[[issuer]]\nissuer = {url:?}\naudiences = [{AUD:?}]\n",
            url = issuer.url()
        ))
        .expect("auth config");
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = Auth::from_config(&config, dir.path()).expect("auth");
        let state = state_in(dir.path())
            .await
            .with_auth(std::sync::Arc::new(auth));
        let app = App {
            router: router(state.clone()),
            dir,
        };
        let id = issuer.mint(&issuer.github_claims(REPO, "refs/heads/main", AUD));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{id}"));
        let r = app
            .call(
                Method::GET,
                &format!("/token?service=wharf&scope=repository:{REPO}:pull,push,delete"),
                &[("authorization", &format!("Basic {basic}"))],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let token = r.json()["token"].as_str().expect("token").to_owned();
        Env {
            app,
            state,
            _issuer: issuer,
            token,
        }
    }

    async fn call(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let bearer = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", bearer.as_str())];
        if !content_type.is_empty() {
            headers.push(("content-type", content_type));
        }
        self.app
            .call(method, &format!("/v2/{REPO}/{path}"), &headers, body)
            .await
    }

    async fn blob(&self, data: &[u8]) -> Digest {
        let digest = Algorithm::Sha256.digest(data);
        let r = self
            .call(
                Method::POST,
                &format!("blobs/uploads/?digest={digest}"),
                "",
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        digest
    }

    async fn manifest(&self, reference: &str, media_type: &str, doc: &Value) -> Digest {
        let bytes = serde_json::to_vec(doc).expect("json");
        let r = self
            .call(
                Method::PUT,
                &format!("manifests/{reference}"),
                media_type,
                bytes.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        Algorithm::Sha256.digest(&bytes)
    }

    /// A platform image pushed by digest: (manifest, layer).
    async fn image(&self, platform: &str) -> (Digest, Digest) {
        let config = self
            .blob(format!("{{\"os\":\"{platform}\"}}").as_bytes())
            .await;
        let layer = self.blob(format!("layer of {platform}").as_bytes()).await;
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 1}]
        });
        let bytes = serde_json::to_vec(&doc).expect("json");
        let digest = Algorithm::Sha256.digest(&bytes);
        self.manifest(&digest.to_string(), media::OCI_MANIFEST, &doc)
            .await;
        (digest, layer)
    }

    /// A two-platform index under `tag`: (index, [(child, layer)]).
    async fn release(&self, tag: &str) -> (Digest, Vec<(Digest, Digest)>) {
        let children = vec![self.image("linux").await, self.image("windows").await];
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": children.iter().map(|(m, _)| json!({
                "mediaType": media::OCI_MANIFEST, "digest": m.to_string(), "size": 1
            })).collect::<Vec<_>>(),
        });
        let index = self.manifest(tag, media::OCI_INDEX, &doc).await;
        (index, children)
    }

    /// Every tag, manifest and blob link of the repository, as the store lists them.
    async fn contents(&self) -> (Vec<String>, Vec<Digest>, Vec<Digest>) {
        let repo = RepoName::parse(REPO).expect("name");
        let page = Page {
            last: None,
            n: 1000,
        };
        let meta = &self.state.meta;
        let tags = meta.list_tag_records(&repo, &page).await.expect("tags");
        let manifests = meta.list_manifests(&repo, &page).await.expect("manifests");
        (
            tags.iter()
                .map(|t| format!("{}={}", t.tag, t.digest))
                .collect(),
            manifests.into_iter().map(|m| m.digest).collect(),
            meta.list_blob_links(&repo, &page).await.expect("links"),
        )
    }
}

fn assert_denied_naming(r: &Reply, tag: &str, digest: &Digest) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let error = &r.json()["errors"][0];
    assert_eq!(error["code"], "DENIED");
    let message = error["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("immutable tag {tag} ")) && message.contains(&digest.to_string()),
        "the message names the tag and the digest: {message}"
    );
    assert_eq!(error["detail"]["tag"], tag);
    assert_eq!(error["detail"]["digest"], digest.to_string());
}

#[tokio::test]
async fn deleting_a_child_manifest_or_blob_of_an_immutable_release_is_denied_naming_the_tag() {
    let env = Env::new().await;
    let (index, children) = env.release("v1").await;
    // A mutable tag on the same index, which a refused delete must not take either.
    let bytes = env
        .call(Method::GET, "manifests/v1", "", Vec::new())
        .await
        .body;
    let r = env
        .call(
            Method::PUT,
            "manifests/latest",
            media::OCI_INDEX,
            bytes.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let before = env.contents().await;
    assert_eq!(before.0.len(), 2, "{before:?}");

    let (child, layer) = &children[1];
    let r = env
        .call(
            Method::DELETE,
            &format!("manifests/{child}"),
            "",
            Vec::new(),
        )
        .await;
    assert_denied_naming(&r, "v1", child);
    let r = env
        .call(Method::DELETE, &format!("blobs/{layer}"), "", Vec::new())
        .await;
    assert_denied_naming(&r, "v1", layer);
    assert_eq!(
        env.contents().await,
        before,
        "a refused delete changes nothing"
    );

    // The release still pulls whole.
    for path in [
        format!("manifests/{index}"),
        format!("manifests/{child}"),
        format!("blobs/{layer}"),
    ] {
        let r = env.call(Method::GET, &path, "", Vec::new()).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}");
    }

    // Garbage collection, however old it thinks everything is, keeps it all.
    let options = crate::gc::GcOptions {
        grace: std::time::Duration::ZERO,
        ..Default::default()
    };
    let report = crate::gc::run(&env.state, &options).await.expect("gc");
    assert_eq!(report.blobs(), 0, "{report:?}");
    assert_eq!(env.contents().await, before);
    let r = env
        .call(Method::GET, &format!("blobs/{layer}"), "", Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn the_same_content_under_a_mutable_tag_can_be_deleted() {
    let env = Env::new().await;
    let (_, children) = env.release("latest").await;
    let (child, layer) = &children[0];
    let r = env
        .call(Method::DELETE, &format!("blobs/{layer}"), "", Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let r = env
        .call(
            Method::DELETE,
            &format!("manifests/{child}"),
            "",
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
}
