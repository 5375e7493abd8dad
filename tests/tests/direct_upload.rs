//! Direct uploads (ARCHITECTURE.md §6): the registry hands out a presigned PUT bound to the blob's
//! SHA-256 as a signed `x-amz-checksum-sha256`, and publishes the bytes only once the store reports
//! that SHA-256 for them (`HeadObject` with checksum mode).
//!
//! - On s3s-fs (checks SigV4, and verifies and records checksums): the store refuses other
//!   bytes, a refused blob never becomes visible, and the URL goes straight to the blob's key,
//!   so finishing copies nothing.
//! - On moto's S3, which compares nothing a client does not ask it to and checks no signature
//!   (TESTING.md "R2"): standing for a store that checks the signature but not the body, a
//!   client PUTs wrong bytes. The registry itself refuses them (`DIGEST_INVALID`) and they are
//!   never published under any key. By default the registry's checksum probe gives moto no
//!   direct path at all; `direct=on` skips the probe to expose the registry's own gate.

use anyhow::{Context, Result, ensure};
use wharf::oci::{Algorithm, Digest};
use wharf::storage::aws::{Endpoint, StaticCredentials};
use wharf::storage::s3::{DirectMode, S3BlobStore, S3Config};
use wharf::storage::{BlobStore, DirectFinish, DirectUpload};
use wharf_e2e::Wharf;
use wharf_e2e::cloud::{ACCESS_KEY, Moto, REGION, S3sFs, SECRET_KEY, endpoint};
use wharf_e2e::cmd::Cmd;
use wharf_e2e::image::sample_image;
use wharf_e2e::layout::Layout;
use wharf_e2e::server::binary_path;
use wharf_e2e::skopeo::oci_ref;

async fn store(s3: &S3sFs) -> Result<S3BlobStore> {
    let endpoint = Endpoint {
        url: Some(s3.endpoint()),
        region: Some(REGION.to_owned()),
        credentials: Some(StaticCredentials {
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
        }),
    };
    let store = S3BlobStore::connect(S3Config::new(BUCKET, endpoint)).await;
    wharf::storage::s3::admin::create_bucket(&store).await?;
    Ok(store)
}

fn client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder().build()?)
}

/// Sends `body` to the presigned request with its headers, but with `changed` replacing (or,
/// with `None` as its value, leaving out) one of them.
async fn put(
    client: &reqwest::Client,
    upload: &DirectUpload,
    body: Vec<u8>,
    changed: Option<(&str, Option<String>)>,
) -> Result<(u16, String)> {
    let mut req = client.put(&upload.url);
    for (k, v) in &upload.headers {
        match &changed {
            Some((name, Some(value))) if name == k => req = req.header(k, value),
            Some((name, None)) if name == k => {}
            _ => req = req.header(k, v),
        }
    }
    let res = match req.body(body).send().await {
        Ok(res) => res,
        // s3s-fs may answer a refused PUT and hang up before it has read the whole body; the
        // client then sees a broken pipe instead of the status. That is a refusal (status 0
        // here): what the store kept is checked by the caller's assertions after it.
        Err(e) if !e.is_connect() && !e.is_timeout() => {
            return Ok((0, format!("the store closed the connection: {e}")));
        }
        Err(e) => return Err(e.into()),
    };
    Ok((res.status().as_u16(), res.text().await?))
}

fn header<'a>(upload: &'a DirectUpload, name: &str) -> Option<&'a str> {
    upload
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Files under `dir`, recursively (s3s-fs keeps the empty directories of deleted keys).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Good bytes, and wrong bytes of the same length.
fn good_and_evil() -> (Vec<u8>, Vec<u8>) {
    let good: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut evil = good.clone();
    evil[1000] ^= 1;
    (good, evil)
}

#[tokio::test]
async fn the_store_refuses_bytes_that_do_not_match_the_bound_digest() -> Result<()> {
    let s3 = S3sFs::start()?;
    let store = store(&s3).await?;
    let client = client()?;
    let (good, evil) = good_and_evil();
    let digest = Algorithm::Sha256.digest(&good);
    let id = "00000000000000000000000000000abc";
    let upload = store
        .direct_upload(id, &digest, good.len() as u64)
        .await?
        .expect("s3s-fs verifies and reports SHA-256 checksums: the probe passes");
    assert_eq!(upload.method, "PUT");
    // S3 spells the checksum as the base64 of the digest's 32 bytes.
    let b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        hex::decode(digest.hex())?,
    );
    assert_eq!(header(&upload, "x-amz-checksum-sha256"), Some(b64.as_str()));
    assert_eq!(header(&upload, "if-none-match"), Some("*"));
    assert!(
        upload
            .url
            .contains(&format!("/wharf-direct/blobs/sha256/{}?", digest.hex())),
        "no blob there yet: the PUT goes straight to the blob's key, so finishing copies \
         nothing: {}",
        upload.url
    );

    // Wrong bytes of the right length, with the signed headers as given: the store refuses
    // (s3s-fs answers 500 InternalError, the x-amz-content-sha256 mismatch surfacing as a
    // failed body stream; S3 answers 400 BadDigest for the checksum) and keeps nothing.
    let (status, text) = put(&client, &upload, evil.clone(), None).await?;
    assert!(
        !(200..300).contains(&status),
        "wrong body accepted: {status} {text}"
    );
    assert_eq!(
        store.finish_direct_upload(id, &digest).await?,
        DirectFinish::Missing
    );
    assert_eq!(store.stat(&digest).await?, None, "never visible");

    // Wrong bytes with a header changed to their own hash, or left out: the signature no
    // longer holds.
    let evil_b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        hex::decode(Algorithm::Sha256.digest(&evil).hex())?,
    );
    for changed in [
        ("x-amz-checksum-sha256", Some(evil_b64)),
        ("x-amz-checksum-sha256", None),
        ("x-amz-meta-wharf-upload", Some("0".repeat(32))),
    ] {
        let (status, text) = put(&client, &upload, evil.clone(), Some(changed.clone())).await?;
        // 403 SignatureDoesNotMatch, or a hang-up before the body was read (0): refused both.
        assert!(
            status == 403 || status == 0,
            "{changed:?} accepted: {status} {text}"
        );
    }
    assert_eq!(
        store.finish_direct_upload(id, &digest).await?,
        DirectFinish::Missing
    );

    // The right bytes pass, and finishing only reads the store's SHA-256 back.
    let (status, text) = put(&client, &upload, good.clone(), None).await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        store.finish_direct_upload(id, &digest).await?,
        DirectFinish::Stored(good.len() as u64)
    );
    assert_eq!(store.stat(&digest).await?, Some(good.len() as u64));
    // The URL only creates: sent again, it cannot replace the blob.
    let (status, _) = put(&client, &upload, good.clone(), None).await?;
    assert_eq!(
        status, 412,
        "a second PUT through the URL replaced the blob"
    );

    // Another upload of the same digest proves possession in its own staging area, and
    // finishing drops that copy.
    let other = "00000000000000000000000000000def";
    assert_eq!(
        store.finish_direct_upload(other, &digest).await?,
        DirectFinish::Missing,
        "naming a stored digest is no proof of holding it"
    );
    let upload = store
        .direct_upload(other, &digest, good.len() as u64)
        .await?
        .expect("direct");
    assert!(
        upload.url.contains(&format!("/uploads/{other}/")),
        "{}",
        upload.url
    );
    let (status, text) = put(&client, &upload, good.clone(), None).await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        store.finish_direct_upload(other, &digest).await?,
        DirectFinish::Stored(good.len() as u64)
    );
    let staged = files_under(&s3.root().join(BUCKET).join("uploads"));
    assert!(staged.is_empty(), "the staged copy is gone: {staged:?}");
    Ok(())
}

/// `wharf serve` on the S3 server at `endpoint` (bucket [`BUCKET`]), the metadata embedded.
fn registry_on(endpoint: &str, direct: Option<&str>) -> Result<Wharf> {
    let option = direct.map(|d| format!("&direct={d}")).unwrap_or_default();
    Wharf::start_with_env(vec![
        (
            "WHARF_BLOBS".to_owned(),
            format!("s3://{BUCKET}?endpoint={endpoint}&region={REGION}{option}"),
        ),
        ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), SECRET_KEY.to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
    ])
}

const BUCKET: &str = "wharf-direct";

/// Every object in moto's bucket, with its bytes (moto checks no signature, so plain HTTP
/// reads it).
async fn bucket_objects(http: &reqwest::Client, moto: &Moto) -> Result<Vec<(String, Vec<u8>)>> {
    let list = http
        .get(format!("{}/{BUCKET}?list-type=2", moto.endpoint()))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    ensure!(
        !list.contains("<IsTruncated>true"),
        "more objects than one page"
    );
    let mut out = Vec::new();
    for part in list.split("<Key>").skip(1) {
        let key = part.split("</Key>").next().context("unterminated Key")?;
        let bytes = http
            .get(format!("{}/{BUCKET}/{key}", moto.endpoint()))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        out.push((key.to_owned(), bytes.to_vec()));
    }
    Ok(out)
}

/// Opens a direct upload of `digest` in `repo`: the session URL and the presigned request.
async fn open_direct(
    http: &reqwest::Client,
    wharf: &Wharf,
    repo: &str,
    digest: &Digest,
    size: usize,
) -> Result<(String, Option<DirectUpload>)> {
    let res = http
        .post(format!("{}/v2/{repo}/blobs/uploads/", wharf.url()))
        .header("wharf-direct-digest", digest.to_string())
        .header("wharf-direct-size", size.to_string())
        .send()
        .await?;
    ensure!(res.status() == 202, "POST answered {}", res.status());
    let location = res
        .headers()
        .get("location")
        .context("no Location")?
        .to_str()?
        .to_owned();
    let direct = res
        .headers()
        .get("wharf-direct-upload")
        .is_some_and(|v| v == "1");
    let upload = if direct {
        Some(res.json().await?)
    } else {
        None
    };
    Ok((format!("{}{location}", wharf.url()), upload))
}

async fn status_of(http: &reqwest::Client, url: String) -> Result<u16> {
    Ok(http.get(url).send().await?.status().as_u16())
}

#[tokio::test]
async fn wrong_bytes_put_directly_are_refused_by_the_registry_and_never_published() -> Result<()> {
    let moto = Moto::start()?;
    let http = client()?;
    http.put(format!("{}/{BUCKET}", moto.endpoint()))
        .send()
        .await?
        .error_for_status()?;
    let wharf = registry_on(&moto.endpoint(), Some("on"))?;
    let (good, evil) = good_and_evil();
    let digest = Algorithm::Sha256.digest(&good);

    // Without the checksum header (a store that checks the signature but not the body would
    // keep these bytes and record no SHA-256), and with it (moto records nothing it was not
    // told to compute: it gets no `x-amz-sdk-checksum-algorithm`).
    for left_out in [Some("x-amz-checksum-sha256"), None] {
        let (location, upload) =
            open_direct(&http, &wharf, "acme/app", &digest, good.len()).await?;
        let upload = upload.context("direct=on offers a direct upload")?;
        let changed = left_out.map(|h| (h, None));
        let (status, text) = put(&http, &upload, evil.clone(), changed).await?;
        assert_eq!(status, 200, "moto keeps whatever it is sent: {text}");

        let res = http
            .put(format!("{location}?digest={digest}"))
            .header("content-length", "0")
            .send()
            .await?;
        let status = res.status().as_u16();
        let body = res.text().await?;
        assert_eq!(status, 400, "finish with {left_out:?} left out: {body}");
        assert!(body.contains("DIGEST_INVALID"), "{body}");
        // The session is over.
        assert_eq!(status_of(&http, location).await?, 404);

        for repo in ["acme/app", "acme/other", "library/base"] {
            let url = format!("{}/v2/{repo}/blobs/{digest}", wharf.url());
            assert_eq!(status_of(&http, url).await?, 404, "{repo} serves the blob");
        }
        let objects = bucket_objects(&http, &moto).await?;
        let kept: Vec<&String> = objects
            .iter()
            .filter(|(_, bytes)| *bytes == evil)
            .map(|(k, _)| k)
            .collect();
        assert!(kept.is_empty(), "the wrong bytes are stored at {kept:?}");
    }

    // A normal push of the real content works, and reads back intact.
    let res = http
        .post(format!(
            "{}/v2/acme/app/blobs/uploads/?digest={digest}",
            wharf.url()
        ))
        .body(good.clone())
        .send()
        .await?;
    assert_eq!(res.status(), 201, "{}", res.text().await?);
    let res = http
        .get(format!("{}/v2/acme/app/blobs/{digest}", wharf.url()))
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await? == good, "the blob reads back intact");
    Ok(())
}

#[tokio::test]
async fn a_store_that_keeps_a_mismatched_checksum_gets_no_direct_path_and_wharf_cp_pushes_through_the_registry()
-> Result<()> {
    let moto = Moto::start()?;
    let mut config = S3Config::new(BUCKET, endpoint(moto.endpoint()));
    assert_eq!(config.direct, DirectMode::Auto, "the probe is the default");
    let store = S3BlobStore::connect(config.clone()).await;
    wharf::storage::s3::admin::create_bucket(&store).await?;
    let digest = Algorithm::Sha256.digest(b"x");
    assert_eq!(
        store.direct_upload("ab", &digest, 1).await?,
        None,
        "moto kept a PUT whose checksum did not match, and reports none: no direct path"
    );
    config.direct = DirectMode::On;
    let trusting = S3BlobStore::connect(config).await;
    assert!(trusting.direct_upload("ab", &digest, 1).await?.is_some());

    // Through the registry, the client is offered a normal session, and `wharf cp`-style
    // clients push through it.
    let http = client()?;
    let wharf = registry_on(&moto.endpoint(), None)?;
    let (_, upload) = open_direct(&http, &wharf, "acme/app", &digest, 1).await?;
    assert!(upload.is_none(), "moto was offered a direct upload");
    // The probe leaves nothing behind.
    let objects = bucket_objects(&http, &moto).await?;
    assert!(objects.is_empty(), "{objects:?}");

    // `wharf cp` then pushes every blob through the registry, and the image reads back.
    let work = tempfile::tempdir()?;
    let layout = Layout::create(&work.path().join("src"))?;
    sample_image(&layout, "v1", 2, 0xd2)?;
    let said = cp_image(&wharf, &layout, "acme/app")?;
    assert!(
        said.contains("0 blobs direct to the store, 3 through"),
        "{said}"
    );
    verify_pull(&http, &wharf, "acme/app", &image_blobs(&layout)?).await?;
    Ok(())
}

/// `wharf cp` of the image tagged `v1` in `layout` into `repo`; what it said.
fn cp_image(wharf: &Wharf, layout: &Layout, repo: &str) -> Result<String> {
    let out = Cmd::new(binary_path())
        .arg("cp")
        .arg(oci_ref(layout.root(), "v1"))
        .arg(format!("docker://{}/{repo}:v1", wharf.host()))
        .timeout(std::time::Duration::from_secs(300))
        .run()?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Reads every blob back from `repo` (following the redirect to the store) and checks it
/// against its digest.
async fn verify_pull(
    http: &reqwest::Client,
    wharf: &Wharf,
    repo: &str,
    blobs: &[String],
) -> Result<()> {
    for digest in blobs {
        let url = format!("{}/v2/{repo}/blobs/{digest}", wharf.url());
        let bytes = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let got = Algorithm::Sha256.digest(&bytes).to_string();
        ensure!(got == *digest, "{repo} serves {got} as {digest}");
    }
    Ok(())
}

/// The config and layer digests of the image tagged `v1`.
fn image_blobs(layout: &Layout) -> Result<Vec<String>> {
    let manifest = layout.resolve("v1")?;
    let (config, layers) = layout.image_blobs(&manifest.digest)?;
    Ok(std::iter::once(config)
        .chain(layers)
        .map(|d| d.digest)
        .collect())
}

#[tokio::test]
async fn wharf_cp_puts_blobs_straight_to_their_keys_and_falls_back_where_direct_is_off()
-> Result<()> {
    let work = tempfile::tempdir()?;
    let layout = Layout::create(&work.path().join("src"))?;
    sample_image(&layout, "v1", 2, 0xd1)?;
    let blobs = image_blobs(&layout)?;
    let http = client()?;

    // s3s-fs passes the checksum probe: every blob goes straight to its key, and a second
    // repository proves possession through its staging area.
    let s3 = S3sFs::start()?;
    store(&s3).await?;
    let wharf = registry_on(&s3.endpoint(), None)?;
    let said = cp_image(&wharf, &layout, "acme/a")?;
    assert!(
        said.contains("3 blobs direct to the store, 0 through"),
        "{said}"
    );
    let said = cp_image(&wharf, &layout, "acme/b")?;
    assert!(
        said.contains("3 blobs direct to the store, 0 through"),
        "{said}"
    );
    verify_pull(&http, &wharf, "acme/a", &blobs).await?;
    verify_pull(&http, &wharf, "acme/b", &blobs).await?;
    let staged = files_under(&s3.root().join(BUCKET).join("uploads"));
    assert!(staged.is_empty(), "staging left behind: {staged:?}");

    // With direct uploads off, `wharf cp` pushes through the registry.
    let wharf = registry_on(&s3.endpoint(), Some("off"))?;
    let said = cp_image(&wharf, &layout, "acme/c")?;
    assert!(
        said.contains("0 blobs direct to the store, 3 through"),
        "{said}"
    );
    verify_pull(&http, &wharf, "acme/c", &blobs).await?;
    Ok(())
}
