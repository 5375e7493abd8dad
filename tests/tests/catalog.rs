//! The public catalog end to end: real pushes (skopeo, and a signature-like referrer through
//! the registry API) into `wharf serve` with `[auth]`, then `wharf catalog build`; the site shows
//! exactly the public repositories, parses, links, and rebuilds incrementally.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use serde_json::{Value, json};
use wharf_e2e::authreg::AuthRegistry;
use wharf_e2e::cmd::Cmd;
use wharf_e2e::curl::Request;
use wharf_e2e::layout::{Descriptor, Layout, OCI_MANIFEST};
use wharf_e2e::server::{binary_path, target_dir};
use wharf_e2e::skopeo::{Skopeo, oci_ref};
use wharf_e2e::{chromium, digest, image, site};

/// Upper bound on one copy of a small image.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// Upper bound on one catalog build of a handful of repositories.
const BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The registry host the catalog's pull commands name.
const HOST: &str = "registry.example.test";

/// Where the catalog says it is published.
const SITE_URL: &str = "https://registry.example.test/";

/// The referrer's artifact type.
const SIGNATURE: &str = "application/vnd.example.signature.v1+json";

/// The OCI empty descriptor's content.
const EMPTY_JSON: &[u8] = b"{}";

struct Pusher {
    /// `http://127.0.0.1:<port>` of the registry.
    url: String,
    /// `127.0.0.1:<port>`.
    host: String,
    skopeo: Skopeo,
    creds: String,
}

impl Pusher {
    /// Pushes `tag` of `layout`, every platform of an index.
    fn push(&self, layout: &Layout, tag: &str, repo_tag: &str) -> Result<()> {
        self.skopeo.copy(
            &oci_ref(layout.root(), tag),
            &format!("docker://{}/{repo_tag}", self.host),
            &["--all", "--dest-creds", &self.creds],
            COPY_TIMEOUT,
        )
    }

    /// A push token for `repo`, through the Basic exchange of the CI identity's ID token.
    fn token(&self, repo: &str) -> Result<String> {
        let basic = base64::engine::general_purpose::STANDARD.encode(&self.creds);
        let r = Request::get(format!(
            "{}/token?service=wharf&scope=repository:{repo}:pull,push",
            self.url
        ))
        .header("Authorization", format!("Basic {basic}"))
        .send()?;
        r.expect_status(200)?;
        r.json()?["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no token"))
    }

    /// Pushes a signature-like artifact whose subject is `subject`; returns its digest.
    fn push_signature(&self, repo: &str, subject: &Descriptor) -> Result<String> {
        let bearer = format!("Bearer {}", self.token(repo)?);
        let signature = br#"{"critical":{"type":"example signature"}}"#;
        for blob in [EMPTY_JSON, &signature[..]] {
            Request::new(
                "POST",
                format!(
                    "{}/v2/{repo}/blobs/uploads/?digest={}",
                    self.url,
                    digest::sha256(blob)
                ),
            )
            .header("Authorization", bearer.clone())
            .header("Content-Type", "application/octet-stream")
            .body(blob.to_vec())
            .send()?
            .expect_status(201)?;
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SIGNATURE,
            "config": { "mediaType": "application/vnd.oci.empty.v1+json",
                        "digest": digest::sha256(EMPTY_JSON), "size": 2 },
            "layers": [{ "mediaType": SIGNATURE, "digest": digest::sha256(signature),
                         "size": signature.len() }],
            "subject": { "mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.size },
            "annotations": { "org.example.signed-by": "release-bot" },
        }))?;
        let d = digest::sha256(&manifest);
        Request::new("PUT", format!("{}/v2/{repo}/manifests/{d}", self.url))
            .header("Authorization", bearer)
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest)
            .send()?
            .expect_status(201)?;
        Ok(d)
    }
}

/// Runs `wharf catalog build` on the (stopped) registry's data; returns its stderr.
fn build_catalog(reg: &AuthRegistry, out: &Path) -> Result<String> {
    let output = Cmd::new(binary_path())
        .arg("--config")
        .arg(reg.path("wharf.toml"))
        .args(["catalog", "build", "--registry-host", HOST, "--out"])
        .arg(out)
        .env("WHARF_DATA_DIR", reg.wharf.data_dir())
        .timeout(BUILD_TIMEOUT)
        .run()?;
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

fn repo_json(out: &Path, repo: &str) -> Result<Value> {
    let path = out.join("r").join(repo).join("index.json");
    Ok(serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )?)
}

fn tag_entry<'a>(repo: &'a Value, tag: &str) -> Result<&'a Value> {
    repo["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["tag"] == tag))
        .ok_or_else(|| anyhow!("tag {tag} missing in {repo}"))
}

/// The text of an HTML page, entities decoded, with attribute values (e.g. of inputs).
fn visible_text(html: &str) -> String {
    let doc = scraper::Html::parse_document(html);
    let mut out: String = doc.root_element().text().collect::<Vec<_>>().join(" ");
    for node in doc.tree.nodes() {
        if let Some(el) = node.value().as_element() {
            for (_, v) in el.attrs() {
                out.push(' ');
                out.push_str(v);
            }
        }
    }
    out
}

/// Every HTML file parses without errors, and every link of every page, the sitemap and the
/// feed names a file of the site.
fn check_site(out: &Path) -> Result<usize> {
    let links = scraper::Selector::parse("a[href], link[href], script[src]")
        .map_err(|e| anyhow!("selector: {e}"))?;
    let mut checked = 0;
    for file in site::files(out)? {
        let dir = file.parent().map(PathBuf::from).unwrap_or_default();
        let text = std::fs::read_to_string(&file)?;
        match file.extension().and_then(|e| e.to_str()) {
            Some("html") => {
                let doc = scraper::Html::parse_document(&text);
                assert!(
                    doc.errors.is_empty(),
                    "{} has HTML parse errors: {:?}",
                    file.display(),
                    doc.errors
                );
                for el in doc.select(&links) {
                    let v = el.value();
                    let link = v.attr("href").or_else(|| v.attr("src")).unwrap_or_default();
                    site::check_link(out, &dir, SITE_URL, link)?;
                    checked += 1;
                }
            }
            Some("xml") => {
                for link in xml_links(&text) {
                    site::check_link(out, &dir, SITE_URL, &link)?;
                    checked += 1;
                }
            }
            _ => {}
        }
    }
    Ok(checked)
}

/// The URLs of a sitemap (`<loc>`) or Atom feed (`href="…"`), entities decoded.
fn xml_links(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (open, close) in [("<loc>", "</loc>"), ("href=\"", "\"")] {
        let mut rest = xml;
        while let Some(i) = rest.find(open) {
            rest = &rest[i + open.len()..];
            if let Some(j) = rest.find(close) {
                out.push(rest[..j].replace("&#x2f;", "/").replace("&amp;", "&"));
                rest = &rest[j..];
            }
        }
    }
    out
}

fn rendered_repos(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = stderr
        .split(['\r', '\n'])
        .filter_map(|l| l.split("] rendered  ").nth(1))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn catalog_shows_public_pushes_hides_private_ones_and_rebuilds_only_what_changed() -> Result<()> {
    let mut reg = AuthRegistry::start()?;
    let pusher = Pusher {
        url: reg.wharf.url(),
        host: reg.wharf.host(),
        skopeo: Skopeo::new()?,
        creds: format!("oidc:{}", reg.id_token("acme/app", "refs/heads/main")),
    };
    let work = tempfile::tempdir()?;

    let app = Layout::create(&work.path().join("app"))?;
    let v1 = image::sample_image(&app, "v1", 2, 61)?;
    pusher.push(&app, "v1", "public/app:v1")?;
    let signature = pusher.push_signature("public/app", &v1)?;
    let multi = Layout::create(&work.path().join("multi"))?;
    let (index, children) = image::sample_index(&multi, "latest", 62)?;
    pusher.push(&multi, "latest", "public/multi:latest")?;
    let secret = Layout::create(&work.path().join("secret"))?;
    let hidden = image::sample_image(&secret, "v1", 1, 63)?;
    pusher.push(&secret, "v1", "acme/secret-project:v1")?;
    let (hidden_config, hidden_layers) = secret.image_blobs(&hidden.digest)?;
    reg.wharf.stop()?;

    let out = work.path().join("site");
    let first = build_catalog(&reg, &out)?;
    assert_eq!(rendered_repos(&first), ["public/app", "public/multi"]);

    // Nothing of the private repository anywhere: not its name, not one of its digests.
    let mut secrets = vec!["secret-project".to_owned(), hidden.digest.clone()];
    secrets.push(hidden_config.digest.clone());
    secrets.extend(hidden_layers.iter().map(|l| l.digest.clone()));
    let secrets: Vec<String> = secrets
        .into_iter()
        .flat_map(|s| [digest::hex_part(&s).to_owned(), s])
        .collect();
    let files = site::files(&out)?;
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file)?).into_owned();
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{} leaks {s}", file.display());
        }
        assert!(!file.display().to_string().contains("secret-project"));
    }

    // The image: its digest, size (config + layers) and platform, with pull commands.
    let app_json = repo_json(&out, "public/app")?;
    let (config, layers) = app.image_blobs(&v1.digest)?;
    let size = config.size + layers.iter().map(|l| l.size).sum::<u64>();
    let t = tag_entry(&app_json, "v1")?;
    assert_eq!(t["digest"], v1.digest);
    assert_eq!(t["size"], size);
    assert_eq!(t["platforms"], json!(["linux/amd64"]));
    assert_eq!(t["pull"]["tag"], format!("{HOST}/public/app:v1"));
    assert_eq!(
        t["pull"]["digest"],
        format!("{HOST}/public/app@{}", v1.digest)
    );
    // Its page lists the signature under its artifact type, linked, and env names only.
    let slug = |d: &str| d.replace(':', "-");
    let page =
        std::fs::read_to_string(out.join(format!("r/public/app/-/{}.html", slug(&v1.digest))))?;
    let text = visible_text(&page);
    assert!(
        text.contains(SIGNATURE),
        "referrers grouped by artifact type"
    );
    assert!(page.contains(&format!("href=\"{}.html\"", slug(&signature))));
    assert!(text.contains("PATH"), "env names are shown");
    assert!(!text.contains("/usr/local/sbin"), "env values are not");
    assert!(
        out.join(format!("r/public/app/-/{}.html", slug(&signature)))
            .is_file()
    );

    // The index: both platforms, children linked from the index page.
    let multi_json = repo_json(&out, "public/multi")?;
    let t = tag_entry(&multi_json, "latest")?;
    assert_eq!(t["digest"], index.digest);
    assert_eq!(t["platforms"], json!(["linux/amd64", "linux/arm64"]));
    for child in &children {
        assert!(
            out.join(format!("r/public/multi/-/{}.html", slug(&child.digest)))
                .is_file()
        );
    }
    let home = visible_text(&std::fs::read_to_string(out.join("index.html"))?);
    assert!(home.contains("public/app") && home.contains("public/multi"));
    let checked = check_site(&out)?;
    assert!(checked > 20, "only {checked} links checked");

    // Nothing changed: nothing is re-rendered.
    let again = build_catalog(&reg, &out)?;
    assert_eq!(rendered_repos(&again), Vec::<String>::new(), "{again}");

    // A push re-renders only its repository, and the new tag shows newest first.
    reg.wharf.start_again()?;
    let v2 = image::sample_image(&app, "v2", 1, 64)?;
    pusher.push(&app, "v2", "public/app:v2")?;
    reg.wharf.stop()?;
    let multi_page = out.join("r/public/multi/index.html");
    let before = std::fs::metadata(&multi_page)?.modified()?;
    let third = build_catalog(&reg, &out)?;
    assert_eq!(rendered_repos(&third), ["public/app"], "{third}");
    assert_eq!(std::fs::metadata(&multi_page)?.modified()?, before);
    let app_json = repo_json(&out, "public/app")?;
    assert_eq!(app_json["tags"][0]["tag"], "v2");
    assert_eq!(app_json["tags"][0]["digest"], v2.digest);
    assert!(std::fs::read_to_string(out.join("feed.xml"))?.contains(&v2.digest));
    check_site(&out)?;
    Ok(())
}

#[test]
fn a_person_finds_an_image_and_copies_its_pull_command_in_chromium() -> Result<()> {
    let mut reg = AuthRegistry::start()?;
    let pusher = Pusher {
        url: reg.wharf.url(),
        host: reg.wharf.host(),
        skopeo: Skopeo::new()?,
        creds: format!("oidc:{}", reg.id_token("acme/app", "refs/heads/main")),
    };
    let work = tempfile::tempdir()?;
    let app = Layout::create(&work.path().join("app"))?;
    image::sample_image(&app, "v1", 2, 71)?;
    pusher.push(&app, "v1", "public/app:v1")?;
    let multi = Layout::create(&work.path().join("multi"))?;
    image::sample_index(&multi, "latest", 72)?;
    pusher.push(&multi, "latest", "public/multi:latest")?;
    reg.wharf.stop()?;
    let out = work.path().join("site");
    build_catalog(&reg, &out)?;

    // Kept in the build directory, as CI artifacts.
    let shots = target_dir().join("catalog-screenshots");
    let report =
        chromium::check_catalog(&out, &shots, &format!("docker pull {HOST}/public/app:v1"))?;
    assert!(report.contains("\"ok\":true"), "{report}");
    for name in [
        "index-desktop",
        "repo-desktop",
        "manifest-desktop",
        "index-phone",
        "repo-phone",
    ] {
        let shot = shots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&shot)?.len() > 1000,
            "{} is empty",
            shot.display()
        );
    }
    Ok(())
}

#[test]
fn the_html_check_catches_broken_markup() {
    // Guards the parse check above: html5ever must report what a browser would repair.
    let doc = scraper::Html::parse_document("<!doctype html><title>t</title><p>a</div><b><i>x</b>");
    assert!(!doc.errors.is_empty());
    let ok = scraper::Html::parse_document("<!doctype html><html lang=en><title>t</title><p>a</p>");
    assert!(ok.errors.is_empty(), "{:?}", ok.errors);
}

#[test]
fn catalog_build_without_auth_refuses_because_nothing_would_be_public() -> Result<()> {
    let work = tempfile::tempdir()?;
    let out = work.path().join("site");
    let output = Cmd::new(binary_path())
        .args(["catalog", "build", "--out"])
        .arg(&out)
        .env("WHARF_DATA_DIR", work.path().join("data"))
        .timeout(BUILD_TIMEOUT)
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no [auth] section"), "{stderr}");
    assert!(!out.exists(), "nothing is written");
    Ok(())
}
