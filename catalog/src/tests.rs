//! Library-level builds over the embedded stores, filled through the `MetaStore` API.

use std::path::Path;

use bytes::Bytes;
use futures_util::stream;
use wharf::auth::Policy;
use wharf::oci::{Algorithm, Digest, RepoName, Tag, media};
use wharf::storage::fs::FsBlobStore;
use wharf::storage::redb::RedbMetaStore;
use wharf::storage::{BlobLink, BlobStore, ManifestRecord, ManifestWrite, MetaStore};

use crate::{FsWriter, Options, Report, build};

struct Stores {
    meta: RedbMetaStore,
    blobs: FsBlobStore,
    _dir: tempfile::TempDir,
}

async fn stores() -> Stores {
    let dir = tempfile::tempdir().expect("tempdir");
    Stores {
        meta: RedbMetaStore::open(&dir.path().join("meta.redb")).expect("redb"),
        blobs: FsBlobStore::open(dir.path()).await.expect("blobs"),
        _dir: dir,
    }
}

async fn put_blob(s: &Stores, repo: &RepoName, bytes: &[u8]) -> Digest {
    let digest = Algorithm::Sha256.digest(bytes);
    let id = format!("{:032x}", rand_id(bytes));
    let state = s.blobs.start_upload(&id).await.expect("start");
    let body = Box::pin(stream::iter([Ok(Bytes::copy_from_slice(bytes))]));
    let (state, _) = s
        .blobs
        .append_upload(&id, state, 0, body)
        .await
        .expect("append");
    s.blobs
        .finish_upload(&id, state, &digest)
        .await
        .expect("finish");
    s.meta
        .link_blob(
            repo,
            &digest,
            BlobLink {
                size: bytes.len() as u64,
            },
        )
        .await
        .expect("link");
    digest
}

fn rand_id(bytes: &[u8]) -> u128 {
    bytes.iter().fold(7u128, |h, b| {
        h.wrapping_mul(31).wrapping_add(u128::from(*b))
    })
}

/// Pushes a one-layer image tagged `tag` whose description annotation is `description`.
async fn push_image(s: &Stores, repo: &str, tag: &str, description: &str, at: u64) -> Digest {
    let repo = RepoName::parse(repo).expect("name");
    let config = serde_json::json!({"os": "linux", "architecture": "amd64",
        "config": {"Env": ["TOKEN=hunter2"]}});
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = put_blob(s, &repo, &config_bytes).await;
    let layer = put_blob(s, &repo, format!("layer of {repo}:{tag}").as_bytes()).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.to_string(), "size": 10}],
        "annotations": {"org.opencontainers.image.description": description},
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("json"));
    let digest = Algorithm::Sha256.digest(&bytes);
    s.meta
        .put_manifest(ManifestWrite {
            repo: repo.clone(),
            manifest: ManifestRecord {
                digest: digest.clone(),
                media_type: media::OCI_MANIFEST.into(),
                bytes,
            },
            tag: Some(Tag::parse(tag).expect("tag")),
            blobs: vec![config_digest, layer],
            manifests: vec![],
            referrer: None,
            pushed_ms: at,
        })
        .await
        .expect("put");
    digest
}

fn options() -> Options {
    Options {
        registry_host: "registry.test".into(),
        site_url: "https://registry.test/".into(),
        site_title: "Test catalog".into(),
        sweep: false,
    }
}

async fn run(s: &Stores, policy: &str, out: &Path) -> Report {
    let policy = Policy::parse(policy).expect("policy");
    build(
        &s.meta,
        &s.blobs,
        &policy,
        &FsWriter::new(out),
        &options(),
        &|_| {},
    )
    .await
    .expect("build")
}

fn read(out: &Path, path: &str) -> String {
    std::fs::read_to_string(out.join(path)).expect(path)
}

#[tokio::test]
async fn markup_in_annotations_is_escaped_and_env_values_never_appear() {
    let s = stores().await;
    push_image(&s, "pub/app", "v1", "<script>alert(1)</script> & co", 1_000).await;
    let out = tempfile::tempdir().expect("out");
    run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    for page in ["index.html", "r/pub/app/index.html"] {
        let html = read(out.path(), page);
        assert!(!html.contains("<script>alert"), "{page} is not escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; co"));
    }
    let json = read(out.path(), "r/pub/app/index.json");
    assert!(json.contains("TOKEN") && !json.contains("hunter2"));
}

#[tokio::test]
async fn a_repository_that_stops_being_public_disappears_with_every_file() {
    let s = stores().await;
    let a = push_image(&s, "pub/app", "v1", "app", 1_000).await;
    push_image(&s, "pub/other", "v1", "other", 2_000).await;
    let out = tempfile::tempdir().expect("out");
    let first = run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    assert_eq!(first.rendered, ["pub/app", "pub/other"]);
    let page = format!("r/pub/app/-/sha256-{}.html", a.hex());
    assert!(out.path().join(&page).is_file());

    let second = run(&s, r#"public = ["pub/other"]"#, out.path()).await;
    assert_eq!(second.removed, ["pub/app"]);
    assert!(second.rendered.is_empty(), "pub/other is unchanged");
    assert!(!out.path().join(&page).exists());
    assert!(!out.path().join("r/pub/app/index.html").exists());
    for site_file in ["index.html", "search-index.json", "sitemap.xml", "feed.xml"] {
        assert!(
            !read(out.path(), site_file).contains("pub/app"),
            "{site_file} still names pub/app"
        );
    }
}

#[tokio::test]
async fn a_retagged_repository_drops_the_page_of_its_untagged_manifest() {
    let s = stores().await;
    let old = push_image(&s, "pub/app", "v1", "first", 1_000).await;
    let out = tempfile::tempdir().expect("out");
    run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    let new = push_image(&s, "pub/app", "v1", "second", 2_000).await;
    let report = run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    assert_eq!(report.rendered, ["pub/app"]);
    assert!(
        !out.path()
            .join(format!("r/pub/app/-/sha256-{}.html", old.hex()))
            .exists()
    );
    assert!(
        out.path()
            .join(format!("r/pub/app/-/sha256-{}.html", new.hex()))
            .is_file()
    );
    assert!(read(out.path(), "index.html").contains("second"));
}

#[tokio::test]
async fn with_the_state_file_lost_pages_no_build_remembers_are_swept() {
    let s = stores().await;
    push_image(&s, "pub/app", "v1", "app", 1_000).await;
    push_image(&s, "pub/other", "v1", "other", 2_000).await;
    let out = tempfile::tempdir().expect("out");
    run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    assert!(out.path().join("r/pub/app/index.html").is_file());
    std::fs::remove_file(out.path().join(crate::STATE_FILE)).expect("lose the state");
    // pub/app turned private while the state was lost: no state names its files any more.
    let report = run(&s, r#"public = ["pub/other"]"#, out.path()).await;
    assert_eq!(report.rendered, ["pub/other"], "no state: a full render");
    assert!(!out.path().join("r/pub/app").join("index.html").exists());
    assert!(!out.path().join("r/pub/app/index.json").exists());
    assert!(out.path().join("r/pub/other/index.html").is_file());
}

/// Stores a manifest (untagged unless `tag`), with `referrer` recorded under its subject.
async fn put_raw(
    s: &Stores,
    repo: &RepoName,
    json: serde_json::Value,
    tag: Option<&str>,
    blobs: Vec<Digest>,
    manifests: Vec<Digest>,
    subject: Option<Digest>,
) -> Digest {
    let bytes = Bytes::from(serde_json::to_vec(&json).expect("json"));
    let digest = Algorithm::Sha256.digest(&bytes);
    let media_type = json["mediaType"].as_str().expect("mediaType").to_owned();
    let referrer = subject.map(|subject| {
        (
            subject,
            wharf::storage::ReferrerEntry {
                media_type: media_type.clone(),
                digest: digest.clone(),
                size: bytes.len() as u64,
                artifact_type: json["artifactType"].as_str().map(str::to_owned),
                annotations: Default::default(),
            },
        )
    });
    s.meta
        .put_manifest(ManifestWrite {
            repo: repo.clone(),
            manifest: ManifestRecord {
                digest: digest.clone(),
                media_type,
                bytes: bytes.clone(),
            },
            tag: tag.map(|t| Tag::parse(t).expect("tag")),
            blobs,
            manifests,
            referrer,
            pushed_ms: 5_000,
        })
        .await
        .expect("put");
    digest
}

#[tokio::test]
async fn a_referrer_pushed_onto_an_index_child_re_renders_the_repository() {
    let s = stores().await;
    let repo = RepoName::parse("pub/multi").expect("name");
    let child = push_image(&s, "pub/multi", "child", "arm64 child", 1_000).await;
    let child_size = s
        .meta
        .manifest(&repo, &child)
        .await
        .expect("read")
        .expect("child")
        .bytes
        .len();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": child.to_string(),
                       "size": child_size,
                       "platform": {"os": "linux", "architecture": "arm64"}}],
    });
    put_raw(
        &s,
        &repo,
        index,
        Some("latest"),
        vec![],
        vec![child.clone()],
        None,
    )
    .await;
    // Only the index is tagged: the child is reached through it alone.
    s.meta
        .delete_tag(&repo, &Tag::parse("child").expect("tag"))
        .await
        .expect("untag");
    let out = tempfile::tempdir().expect("out");
    run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    let unchanged = run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    assert!(
        unchanged.rendered.is_empty(),
        "children known: stable fingerprint"
    );

    // A signature on the child, not on anything tagged: no tag changes.
    let empty = put_blob(&s, &repo, b"{}").await;
    let signature = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": empty.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": empty.to_string(), "size": 2}],
        "subject": {"mediaType": media::OCI_MANIFEST, "digest": child.to_string(),
                    "size": child_size},
    });
    let sig = put_raw(
        &s,
        &repo,
        signature,
        None,
        vec![empty],
        vec![],
        Some(child.clone()),
    )
    .await;
    let report = run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    assert_eq!(report.rendered, ["pub/multi"]);
    let page = read(
        out.path(),
        &format!("r/pub/multi/-/sha256-{}.html", child.hex()),
    );
    assert!(
        page.contains(&format!("sha256-{}.html", sig.hex())),
        "{page}"
    );
}

#[tokio::test]
async fn a_sweep_deletes_repository_files_no_state_names() {
    let s = stores().await;
    push_image(&s, "pub/app", "v1", "app", 1_000).await;
    let out = tempfile::tempdir().expect("out");
    run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    // A page a concurrent build wrote but whose state lost the race.
    let orphan = out.path().join("r/pub/gone/index.html");
    std::fs::create_dir_all(orphan.parent().expect("dir")).expect("mkdir");
    std::fs::write(&orphan, "stale").expect("write");
    run(&s, r#"public = ["pub/*"]"#, out.path()).await;
    assert!(orphan.exists(), "without a sweep only the state decides");
    let policy = Policy::parse(r#"public = ["pub/*"]"#).expect("policy");
    let sweeping = Options {
        sweep: true,
        ..options()
    };
    build(
        &s.meta,
        &s.blobs,
        &policy,
        &FsWriter::new(out.path()),
        &sweeping,
        &|_| {},
    )
    .await
    .expect("build");
    assert!(!orphan.exists(), "swept");
    assert!(
        out.path().join("r/pub/app/index.html").is_file(),
        "owned files stay"
    );
}
