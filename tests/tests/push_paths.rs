//! The serverless push paths (ARCHITECTURE.md §6) end to end, with authentication on: the
//! registry's functions under the Lambda runtime emulator on s3s-fs + moto, with a body limit that
//! no 50 MB layer passes, and an upload lane (`wharf serve --only uploads`) on the same bucket and
//! table.
//!
//! - the functions refuse an oversized body with `SIZE_INVALID`/413 naming the limit;
//! - skopeo pushes a 50 MB layer through the lane: its upload URLs carry a capability, so
//!   the lane needs no `Authorization`, and no layer byte passes through a function;
//! - `wharf cp` copies a 50 MB layer straight into the bucket through a presigned PUT bound to
//!   its digest: the functions only open the session, the lane only completes it (empty body);
//! - skopeo pulls both images back through the functions, digests intact;
//! - `wharf doctor` passes every check against the stack (direct path included) and deletes
//!   what it pushed.
//!
//! One stack serves every step: starting the emulator (and compiling the functions on a cold
//! cache) is the slow part.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wharf::auth::testing::TestIssuer;
use wharf_e2e::Wharf;
use wharf_e2e::cmd::Cmd;
use wharf_e2e::doctor;
use wharf_e2e::emulator::LambdaStack;
use wharf_e2e::image::{image, random_layer};
use wharf_e2e::layout::{Layout, Platform};
use wharf_e2e::server::binary_path;
use wharf_e2e::skopeo::{Skopeo, oci_ref};

/// Body limit of the functions in this test: far under the layer, like the ≈4 MB of a real
/// deployment.
const BODY_LIMIT: u64 = 1_000_000;
/// The big layer.
const LAYER_BYTES: u64 = 50 * 1024 * 1024;
/// skopeo on a warm emulator takes seconds; the margin covers cold function starts, each of
/// which runs `cargo run` and may wait for the build directory's lock.
const COPY_TIMEOUT: Duration = Duration::from_secs(900);
/// Per-check limit of `wharf doctor`: a function's first request on the emulator may start it.
const DOCTOR_CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// The audience the registry accepts from the test issuer.
const AUDIENCE: &str = "wharf";

/// The `[auth]` table every process gets (`WHARF_AUTH`): the test issuer trusted, `acme/**`
/// pushable by `acme/app`'s main branch (which may also run `wharf doctor` under
/// `wharf-doctor`), one signing key shared through a file.
fn auth_table(issuer: &str, key: &std::path::Path, public_url: &str) -> String {
    format!(
        r#"service = "wharf"
public_url = "{public_url}"
signing_keys = [{key:?}]
policy = '''
[[identity]]
name = "acme-release"
issuer = "{issuer}"
subject = "repo:acme/app:ref:refs/heads/main"
audience = "{AUDIENCE}"
[[identity.grant]]
repositories = ["acme/**"]
actions = ["pull", "push"]
[[identity.grant]]
repositories = ["wharf-doctor", "wharf-doctor/**"]
actions = ["pull", "push", "delete"]
'''

[[issuer]]
issuer = "{issuer}"
audiences = ["{AUDIENCE}"]
"#,
        key = key.display().to_string()
    )
}

struct Serverless {
    stack: LambdaStack,
    lane: Wharf,
    issuer: TestIssuer,
    _keys: tempfile::TempDir,
}

impl Serverless {
    fn start() -> Result<Self> {
        let issuer = TestIssuer::start();
        let keys = tempfile::tempdir()?;
        let key = keys.path().join("registry.pem");
        std::fs::write(&key, wharf::auth::token::generate_pem()?)?;
        let mut lane = None;
        let stack = LambdaStack::start_with(|setup| {
            let auth = auth_table(issuer.url(), &key, &format!("http://{}", setup.host));
            let mut env = setup.backend_env.clone();
            env.push(("WHARF_AUTH".into(), auth.clone()));
            let started = Wharf::start_lane(env)?;
            let url = started.url();
            lane = Some(started);
            Ok(vec![
                ("WHARF_AUTH".into(), auth),
                ("WHARF_UPLOAD_LANE_URL".into(), url),
                ("WHARF_MAX_UPLOAD_BODY".into(), BODY_LIMIT.to_string()),
            ])
        })?;
        let lane = lane.context("the lane was started")?;
        Ok(Serverless {
            stack,
            lane,
            issuer,
            _keys: keys,
        })
    }

    /// `ci:<OIDC token>`: skopeo's credentials, exchanged at the token function.
    fn creds(&self) -> String {
        let id = self.issuer.mint(&self.issuer.github_claims(
            "acme/app",
            "refs/heads/main",
            AUDIENCE,
        ));
        format!("ci:{id}")
    }

    /// A registry token for push and pull on `repo`, from the token function.
    fn token(&self, repo: &str) -> Result<String> {
        let out = Cmd::new("curl")
            .args(["-sf", "-u", &self.creds()])
            .timeout(COPY_TIMEOUT)
            .arg(format!(
                "http://{}/token?service=wharf&scope=repository:{repo}:pull,push",
                self.stack.host()
            ))
            .stdout()?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .context("no token in the answer")
    }
}

fn big_image(dir: &std::path::Path, seed: u64) -> Result<(Layout, String)> {
    let src = Layout::create(dir)?;
    let layer = random_layer(&src, LAYER_BYTES, seed)?;
    let manifest = image(
        &src,
        &Platform::linux("amd64"),
        std::slice::from_ref(&layer),
    )?;
    src.tag("v1", &manifest)?;
    Ok((src, manifest.digest))
}

/// Pulls `remote` with skopeo and checks every blob against its digest.
fn pull_and_verify(
    skopeo: &Skopeo,
    remote: &str,
    creds: &str,
    into: &std::path::Path,
    expected: &str,
) -> Result<()> {
    skopeo.copy(
        remote,
        &oci_ref(into, "v1"),
        &["--src-creds", creds],
        COPY_TIMEOUT,
    )?;
    let dst = Layout::open(into)?;
    let pulled = dst.resolve("v1")?;
    if pulled.digest != expected {
        bail!("manifest digest changed: {} != {expected}", pulled.digest);
    }
    let (config, layers) = dst.image_blobs(&pulled.digest)?;
    dst.verify_blob(&config)?;
    for layer in &layers {
        dst.verify_blob(layer)?;
        if layer.size != LAYER_BYTES {
            bail!("layer of {} bytes, not {LAYER_BYTES}", layer.size);
        }
    }
    Ok(())
}

#[test]
fn big_layers_are_pushed_around_the_functions_body_limit() -> Result<()> {
    let _heavy = crate::heavy();
    let work = tempfile::tempdir()?;
    let (src, manifest) = big_image(&work.path().join("src"), 0x5e7)?;
    let (cp_src, cp_manifest) = big_image(&work.path().join("cp-src"), 0xc0b1)?;
    let env = Serverless::start()?;
    let host = env.stack.host();

    // 1. A body over the limit gets the OCI error naming it, not a gateway failure.
    let token = match env.token("acme/direct") {
        Ok(t) => t,
        Err(e) => bail!("no token: {e:#}\n{}", env.stack.logs()),
    };
    let blob = work.path().join("two-mb");
    std::fs::write(&blob, vec![9u8; 2 * BODY_LIMIT as usize])?;
    let out = Cmd::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "--data-binary"])
        .arg(format!("@{}", blob.display()))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", "Content-Type: application/octet-stream"])
        .arg(format!(
            "http://{host}/v2/acme/direct/blobs/uploads/?digest=sha256:{}",
            "0".repeat(64)
        ))
        .timeout(COPY_TIMEOUT)
        .stdout()?;
    let (body, status) = out.rsplit_once('\n').context("status line")?;
    assert_eq!(status, "413", "{body}\n{}", env.stack.logs());
    assert!(
        body.contains("SIZE_INVALID") && body.contains(&BODY_LIMIT.to_string()),
        "{body}"
    );

    // 2. skopeo pushes the 50 MB layer through the lane.
    let skopeo = Skopeo::new()?;
    let creds = env.creds();
    let remote = format!("docker://{host}/acme/lane:v1");
    let started = Instant::now();
    if let Err(e) = skopeo.copy(
        &oci_ref(src.root(), "v1"),
        &remote,
        &["--dest-creds", &creds],
        COPY_TIMEOUT,
    ) {
        bail!(
            "push through the lane failed: {e:#}\n{}\n{}",
            env.stack.logs(),
            env.lane.logs()
        );
    }
    eprintln!("skopeo push through the lane: {:?}", started.elapsed());
    let on_lane = env.lane.requests();
    let written: Vec<_> = on_lane
        .iter()
        .filter(|r| matches!(r.method.as_str(), "PATCH" | "PUT") && r.status < 300)
        .collect();
    assert!(
        written.len() >= 2,
        "the layer went through the lane: {on_lane:#?}"
    );
    let forwarded = env.stack.forwarded();
    assert!(
        forwarded
            .iter()
            .all(|f| !(f.binary == "uploads" && matches!(f.method.as_str(), "PATCH" | "PUT"))),
        "no upload body reached a function: {forwarded:#?}"
    );
    pull_and_verify(
        &skopeo,
        &remote,
        &creds,
        &work.path().join("lane-pull"),
        &manifest,
    )?;

    // 3. `wharf cp` puts the other 50 MB layer straight into the bucket.
    let started = Instant::now();
    let out = Cmd::new(binary_path())
        .arg("cp")
        .arg(oci_ref(cp_src.root(), "v1"))
        .arg(format!("docker://{host}/acme/cp:v1"))
        .args(["--dest-creds", &creds])
        .env("WHARF_CREDENTIALS", work.path().join("no-credentials.json"))
        .timeout(COPY_TIMEOUT)
        .run();
    let out = match out {
        Ok(out) => out,
        Err(e) => bail!(
            "wharf cp failed: {e:#}\n{}\n{}",
            env.stack.logs(),
            env.lane.logs()
        ),
    };
    eprintln!("wharf cp, direct to the store: {:?}", started.elapsed());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("2 blobs direct to the store"), "{said}");
    let cp_on_lane: Vec<_> = env
        .lane
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v2/acme/cp/"))
        .collect();
    assert!(
        cp_on_lane.iter().all(|r| r.method == "PUT"),
        "the lane only completed the direct uploads: {cp_on_lane:#?}"
    );
    let cp_forwarded: Vec<_> = env
        .stack
        .forwarded()
        .into_iter()
        .filter(|f| f.path.starts_with("/v2/acme/cp/blobs/uploads"))
        .collect();
    assert!(
        cp_forwarded.iter().all(|f| f.method == "POST"),
        "the functions only opened sessions: {cp_forwarded:#?}"
    );
    pull_and_verify(
        &skopeo,
        &format!("docker://{host}/acme/cp:v1"),
        &creds,
        &work.path().join("cp-pull"),
        &cp_manifest,
    )?;

    // 4. `wharf doctor` passes against the stack, then leaves nothing behind.
    let started = Instant::now();
    let doctor_repo = "wharf-doctor/ci";
    let report = doctor::run(
        &format!("http://{host}"),
        &creds,
        doctor_repo,
        DOCTOR_CHECK_TIMEOUT,
    )?;
    eprintln!("wharf doctor: {:?}\n{}", started.elapsed(), report.output);
    let all_ok: Vec<(&str, &str)> = doctor::CHECKS.iter().map(|c| (*c, "ok")).collect();
    if let Err(e) = report.expect(&all_ok) {
        bail!("{e:#}\n{}\n{}", env.stack.logs(), env.lane.logs());
    }
    assert_eq!(report.verdict, "verdict: PASS (9 ok, 0 failed, 0 skipped)");
    assert!(report.success, "{}", report.output);
    for (check, says) in [
        (
            "challenge",
            "plain http, accepted because the URL given is http",
        ),
        ("blob push", "direct to the object store"),
        ("blob GET redirect", "307 to 127.0.0.1;"),
        ("direct upload, wrong bytes", "the blob GET answers 404"),
    ] {
        let (_, why) = report.get(check)?;
        assert!(why.contains(says), "{check}: {why}");
    }
    let (_, id_token) = creds.split_once(':').context("creds")?;
    assert!(!report.output.contains(id_token), "{}", report.output);
    assert!(!report.output.contains("eyJ"), "{}", report.output);
    assert!(
        !report.output.contains("X-Amz-Signature"),
        "{}",
        report.output
    );
    let token = env.token(doctor_repo)?;
    let left = Cmd::new("curl")
        .args(["-s", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://{host}/v2/{doctor_repo}/tags/list"))
        .timeout(COPY_TIMEOUT)
        .stdout()?;
    let left: serde_json::Value = serde_json::from_str(&left)?;
    assert!(
        left["tags"].as_array().is_none_or(|t| t.is_empty()),
        "the doctor deleted its tags: {left}"
    );

    // 5. Capabilities and presigned URLs are secrets while they live: no log shows one.
    for (who, log) in [("lane", env.lane.logs()), ("functions", env.stack.logs())] {
        assert!(!log.contains("_cap="), "the {who} log shows a capability");
        assert!(
            !log.contains("X-Amz-Signature"),
            "the {who} log shows a presigned URL"
        );
    }
    Ok(())
}
