//! The catalog published into a bucket, as the catalog function does it: real skopeo pushes into
//! `wharf serve` with `[auth]`, then `wharf catalog build --out s3://…` into s3s-fs (SigV4
//! checked). Objects are read back over the S3 API with curl: their keys sit under the prefix,
//! each carries the Content-Type and Cache-Control a public bucket must serve, no object holds
//! anything of a private repository, a rebuild after one push rewrites only what changed, and a
//! repository taken out of the public set disappears.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use wharf_e2e::authreg::AuthRegistry;
use wharf_e2e::cloud::{ACCESS_KEY, REGION, S3sFs, SECRET_KEY};
use wharf_e2e::cmd::Cmd;
use wharf_e2e::layout::Layout;
use wharf_e2e::server::binary_path;
use wharf_e2e::skopeo::{Skopeo, oci_ref};
use wharf_e2e::{digest, image};

/// Upper bound on one copy of a small image.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// Upper bound on one catalog build, or one S3 request.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The registry host the catalog's pull commands name.
const HOST: &str = "registry.example.test";

/// The public bucket, and the prefix the site lives under.
const SITE_BUCKET: &str = "public-site";
const PREFIX: &str = "catalog/v1/";

/// S3's `Last-Modified` has one-second resolution: rebuilds are this far apart so a rewrite
/// shows.
const CLOCK_STEP: Duration = Duration::from_millis(1100);

/// The public bucket on the S3 server.
struct Bucket<'a> {
    s3: &'a S3sFs,
}

impl Bucket<'_> {
    fn curl(&self, args: &[&str], path: &str) -> Result<String> {
        let user = format!("{ACCESS_KEY}:{SECRET_KEY}");
        let sigv4 = format!("aws:amz:{REGION}:s3");
        let url = format!("{}/{SITE_BUCKET}/{path}", self.s3.endpoint());
        Cmd::new("curl")
            .args(["--silent", "--show-error", "--fail", "--globoff"])
            .args(["--aws-sigv4", &sigv4, "--user", &user])
            // S3 wants the payload hash header; curl 7.88 signs but does not add it.
            .args(["--header", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .args(args)
            .arg(&url)
            .timeout(STEP_TIMEOUT)
            .stdout()
            .with_context(|| format!("curl {args:?} {url}"))
    }

    /// Every key in the bucket (one listing page is plenty here).
    fn keys(&self) -> Result<Vec<String>> {
        let xml = self.curl(&[], "?list-type=2&max-keys=1000")?;
        if xml.contains("<IsTruncated>true</IsTruncated>") {
            bail!("more keys than one page");
        }
        Ok(xml
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect())
    }

    /// The response headers of a HEAD, names lowercased.
    fn head(&self, key: &str) -> Result<BTreeMap<String, String>> {
        let text = self.curl(&["--head"], key)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect())
    }

    fn get(&self, key: &str) -> Result<String> {
        self.curl(&[], key)
    }

    /// `Last-Modified` of every key.
    fn stamps(&self) -> Result<BTreeMap<String, String>> {
        self.keys()?
            .into_iter()
            .map(|k| {
                let h = self.head(&k)?;
                let at = h
                    .get("last-modified")
                    .cloned()
                    .ok_or_else(|| anyhow!("{k}: no Last-Modified"))?;
                Ok((k, at))
            })
            .collect()
    }
}

/// The Content-Type and Cache-Control a site file must be served with.
fn expected_headers(key: &str) -> (&'static str, &'static str) {
    let ext = key.rsplit('.').next().unwrap_or_default();
    match ext {
        "html" => ("text/html; charset=utf-8", "public, max-age=60"),
        "json" => ("application/json", "public, max-age=60"),
        "css" => ("text/css; charset=utf-8", "public, max-age=3600"),
        "js" => ("text/javascript; charset=utf-8", "public, max-age=3600"),
        "xml" if key.ends_with("feed.xml") => ("application/atom+xml", "public, max-age=60"),
        "xml" => ("application/xml", "public, max-age=60"),
        _ => ("?", "?"),
    }
}

/// Runs `wharf catalog build` on the (stopped) registry's data into the bucket.
fn build_into(reg: &AuthRegistry, s3: &S3sFs) -> Result<String> {
    build_into_with(reg, s3, &[])
}

fn build_into_with(reg: &AuthRegistry, s3: &S3sFs, extra: &[&str]) -> Result<String> {
    let out = format!(
        "s3://{SITE_BUCKET}/{PREFIX}?endpoint={}&region={REGION}",
        s3.endpoint()
    );
    let output = Cmd::new(binary_path())
        .arg("--config")
        .arg(reg.path("wharf.toml"))
        .args(["catalog", "build", "--registry-host", HOST, "--out", &out])
        .args(extra)
        .env("WHARF_DATA_DIR", reg.wharf.data_dir())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .timeout(STEP_TIMEOUT)
        .run()?;
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

fn create_bucket(s3: &S3sFs, scratch: &std::path::Path) -> Result<()> {
    Cmd::new(binary_path())
        .args(["admin", "create-bucket"])
        .env(
            "WHARF_BLOBS",
            format!(
                "s3://{SITE_BUCKET}?endpoint={}&region={REGION}",
                s3.endpoint()
            ),
        )
        .env("WHARF_DATA_DIR", scratch)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .timeout(STEP_TIMEOUT)
        .run()
        .map(|_| ())
}

fn under(stamps: &BTreeMap<String, String>, dir: &str) -> BTreeMap<String, String> {
    stamps
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{PREFIX}{dir}")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn catalog_published_to_a_bucket_has_right_headers_hides_private_repos_and_updates_incrementally()
-> Result<()> {
    let mut reg = AuthRegistry::start()?;
    let skopeo = Skopeo::new()?;
    let creds = format!("oidc:{}", reg.id_token("acme/app", "refs/heads/main"));
    let host = reg.wharf.host();
    let push = |layout: &Layout, tag: &str, dest: &str| {
        skopeo.copy(
            &oci_ref(layout.root(), tag),
            &format!("docker://{host}/{dest}"),
            &["--all", "--dest-creds", &creds],
            COPY_TIMEOUT,
        )
    };
    let work = tempfile::tempdir()?;
    let app = Layout::create(&work.path().join("app"))?;
    let v1 = image::sample_image(&app, "v1", 2, 81)?;
    push(&app, "v1", "public/app:v1")?;
    let multi = Layout::create(&work.path().join("multi"))?;
    let (index, _) = image::sample_index(&multi, "latest", 82)?;
    push(&multi, "latest", "public/multi:latest")?;
    let secret = Layout::create(&work.path().join("secret"))?;
    let hidden = image::sample_image(&secret, "v1", 1, 83)?;
    push(&secret, "v1", "acme/secret-project:v1")?;
    let (hidden_config, hidden_layers) = secret.image_blobs(&hidden.digest)?;
    reg.wharf.stop()?;

    let s3 = S3sFs::start()?;
    create_bucket(&s3, &work.path().join("admin"))?;
    let bucket = Bucket { s3: &s3 };
    build_into(&reg, &s3)?;

    // Keys: all under the prefix, the site's fixed files and both public repositories.
    let keys = bucket.keys()?;
    assert!(keys.iter().all(|k| k.starts_with(PREFIX)), "{keys:?}");
    let slug = |d: &str| d.replace(':', "-");
    for file in [
        "index.html".to_owned(),
        "search-index.json".to_owned(),
        "sitemap.xml".to_owned(),
        "feed.xml".to_owned(),
        "style.css".to_owned(),
        "search.js".to_owned(),
        "r/public/app/index.html".to_owned(),
        "r/public/app/index.json".to_owned(),
        format!("r/public/app/-/{}.html", slug(&v1.digest)),
        "r/public/multi/index.html".to_owned(),
        format!("r/public/multi/-/{}.html", slug(&index.digest)),
    ] {
        let key = format!("{PREFIX}{file}");
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }

    // Headers, and nothing of the private repository in any key or body.
    let mut secrets = vec!["secret-project".to_owned(), hidden.digest.clone()];
    secrets.push(hidden_config.digest.clone());
    secrets.extend(hidden_layers.iter().map(|l| l.digest.clone()));
    let secrets: Vec<String> = secrets
        .into_iter()
        .flat_map(|s| [digest::hex_part(&s).to_owned(), s])
        .collect();
    for key in &keys {
        let h = bucket.head(key)?;
        let (content_type, cache) = expected_headers(key);
        assert_eq!(
            h.get("content-type").map(String::as_str),
            Some(content_type),
            "{key}"
        );
        assert_eq!(
            h.get("cache-control").map(String::as_str),
            Some(cache),
            "{key}"
        );
        let body = bucket.get(key)?;
        for s in &secrets {
            assert!(!key.contains(s.as_str()), "{key} names {s}");
            assert!(!body.contains(s.as_str()), "{key} leaks {s}");
        }
    }
    let app_json: serde_json::Value =
        serde_json::from_str(&bucket.get(&format!("{PREFIX}r/public/app/index.json"))?)?;
    assert_eq!(app_json["tags"][0]["digest"], v1.digest);

    // One more push: the rebuild rewrites that repository and the site-wide files only.
    let before = bucket.stamps()?;
    std::thread::sleep(CLOCK_STEP);
    reg.wharf.start_again()?;
    let v2 = image::sample_image(&app, "v2", 1, 84)?;
    push(&app, "v2", "public/app:v2")?;
    reg.wharf.stop()?;
    let stderr = build_into(&reg, &s3)?;
    assert!(stderr.contains("1 re-rendered"), "{stderr}");
    let after = bucket.stamps()?;
    assert_eq!(
        under(&after, "r/public/multi/"),
        under(&before, "r/public/multi/"),
        "the unchanged repository's objects are not rewritten"
    );
    let page = format!("{PREFIX}r/public/app/index.html");
    assert_ne!(after.get(&page), before.get(&page), "{page} is rewritten");
    let new_page = format!("{PREFIX}r/public/app/-/{}.html", slug(&v2.digest));
    assert!(after.contains_key(&new_page), "{new_page}");
    let app_json: serde_json::Value =
        serde_json::from_str(&bucket.get(&format!("{PREFIX}r/public/app/index.json"))?)?;
    assert_eq!(app_json["tags"][0]["digest"], v2.digest);

    // public/multi leaves the public set: every object of it goes, and the index forgets it.
    let policy_file = reg.path("policy.toml");
    let policy = std::fs::read_to_string(&policy_file)?;
    let narrowed = policy.replace(r#"public = ["public/*"]"#, r#"public = ["public/app"]"#);
    assert_ne!(policy, narrowed, "the shared policy's public line");
    std::fs::write(&policy_file, narrowed)?;
    // Also a page no state names (left by an overlapping build), and objects that are not the
    // site's repository pages: the sweep deletes the first and keeps the others.
    let orphan = format!("{PREFIX}r/public/orphan/index.html");
    let outside = [
        "elsewhere/r/public/app/index.html",
        "catalog/v1-other/r/x.html",
    ];
    for key in [orphan.as_str()].into_iter().chain(outside) {
        bucket.curl(&["--request", "PUT", "--data-binary", "stale"], key)?;
    }
    let stderr = build_into_with(&reg, &s3, &["--sweep"])?;
    assert!(stderr.contains("1 removed"), "{stderr}");
    let keys = bucket.keys()?;
    assert!(!keys.contains(&orphan), "{orphan} is swept");
    for key in outside {
        assert!(
            keys.contains(&key.to_owned()),
            "{key} is outside the site: kept"
        );
    }
    assert!(!keys.iter().any(|k| k.contains("public/multi")), "{keys:?}");
    for site_file in ["index.html", "search-index.json", "sitemap.xml", "feed.xml"] {
        let body = bucket.get(&format!("{PREFIX}{site_file}"))?;
        assert!(!body.contains("public/multi"), "{site_file} still names it");
        assert!(!body.contains(&index.digest), "{site_file} still names it");
    }
    Ok(())
}
