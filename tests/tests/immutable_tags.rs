//! Tag immutability from the `[auth]` policy, end to end with skopeo: an immutable tag is
//! created once and may be re-pushed at the same digest, but pushing another image under it is
//! refused with `DENIED`; a tag the rule exempts (`latest`) moves freely.

use std::time::Duration;

use anyhow::Result;
use wharf_e2e::authreg::AuthRegistry;
use wharf_e2e::cmd::Cmd;
use wharf_e2e::image::sample_image;
use wharf_e2e::layout::Layout;
use wharf_e2e::server::binary_path;
use wharf_e2e::skopeo::{Skopeo, oci_ref};

const COPY_TIMEOUT: Duration = Duration::from_secs(120);

const RULES: &str = r#"
[[immutable]]
repositories = ["acme/**"]
tags = ["v*"]
except = ["latest"]
"#;

#[test]
fn an_immutable_tag_cannot_be_moved_but_can_be_pushed_again() -> Result<()> {
    let reg = AuthRegistry::start_trusting(&[], RULES)?;
    let skopeo = Skopeo::new()?;
    let work = tempfile::tempdir()?;
    let layout = Layout::create(work.path())?;
    sample_image(&layout, "a", 1, 21)?;
    sample_image(&layout, "b", 1, 22)?;
    let creds = format!("oidc:{}", reg.id_token("acme/app", "refs/heads/main"));
    let push = |src: &str, tag: &str| {
        skopeo.copy(
            &oci_ref(work.path(), src),
            &format!("docker://{}/acme/app:{tag}", reg.wharf.host()),
            &["--dest-creds", &creds],
            COPY_TIMEOUT,
        )
    };
    push("a", "v1")?;
    push("a", "v1")?;
    let err = push("b", "v1").expect_err("moving an immutable tag must fail");
    let text = format!("{err:#}");
    assert!(
        text.contains("denied") || text.contains("DENIED"),
        "refused as DENIED: {text}"
    );
    assert!(text.contains("immutable"), "the message says why: {text}");
    let tags_log = reg.wharf.logs();
    assert!(!tags_log.contains(&creds[5..]), "the token is never logged");

    // The exempt tag moves.
    push("a", "latest")?;
    push("b", "latest")?;

    // The audit trail names who pushed and moved what, and holds no token.
    let mut reg = reg;
    reg.wharf.stop()?;
    let out = Cmd::new(binary_path())
        .arg("audit")
        .args(["--repo", "acme/app", "--since", "1h"])
        .env("WHARF_CONFIG", reg.path("wharf.toml"))
        .env("WHARF_DATA_DIR", reg.wharf.data_dir())
        .env("WHARF_LOG", "warn")
        .timeout(Duration::from_secs(60))
        .stdout()?;
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["tag"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("push", "v1"),
            ("push", "v1"),
            ("push", "latest"),
            ("tag_move", "latest")
        ],
        "{out}"
    );
    for e in &events {
        assert_eq!(e["subject"], "repo:acme/app:ref:refs/heads/main", "{e}");
        assert_eq!(e["issuer"], reg.issuer.url(), "{e}");
    }
    assert!(
        events[3]["previous"].is_string(),
        "a move names the old digest"
    );
    let trail = std::fs::read_to_string(reg.wharf.data_dir().join("audit.jsonl"))?;
    assert!(!trail.contains(&creds[5..]), "no token in the trail");
    Ok(())
}
