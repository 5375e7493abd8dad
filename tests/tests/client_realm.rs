//! `wharf cp` never sends a credential to a token realm a registry's challenge names on another
//! origin (or over plain HTTP off loopback): a hostile registry (or a `Host` header copied into
//! the challenge) would otherwise collect the ambient OIDC ID token. The registry and the realm
//! here are real HTTP servers on loopback; the realm records every request it gets.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use wharf_e2e::cmd::{Cmd, streams};
use wharf_e2e::image;
use wharf_e2e::layout::Layout;
use wharf_e2e::server::binary_path;

const TIMEOUT: Duration = Duration::from_secs(60);

/// What the ID token says; it must never reach the realm.
const ID_TOKEN: &str = "eyJ.ambient-id-token-do-not-leak.sig";

/// Servers on loopback: a registry whose challenge names `realm` (with `{realm}` replaced by the
/// realm server's origin), and that realm server, which records the requests it gets.
struct Hostile {
    registry: String,
    realm_origin: String,
    seen: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

fn hostile(realm: &str) -> Result<Hostile> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let bind = || runtime.block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)));
    let (registry, collector) = (bind()?, bind()?);
    let realm_origin = format!("http://127.0.0.1:{}", collector.local_addr()?.port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let collect = axum::Router::new().fallback(move |headers: HeaderMap, uri: axum::http::Uri| {
        let recorded = recorded.clone();
        async move {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            recorded.lock().expect("lock").push(format!("{uri} {auth}"));
            StatusCode::UNAUTHORIZED
        }
    });
    let challenge = format!(
        "Bearer realm=\"{}\",service=\"registry\"",
        realm.replace("{realm}", &realm_origin)
    );
    let app = axum::Router::new().fallback(move || {
        let challenge = challenge.clone();
        async move {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                "",
            )
                .into_response()
        }
    });
    let registry_host = format!("127.0.0.1:{}", registry.local_addr()?.port());
    runtime.spawn(async move { axum::serve(registry, app).await });
    runtime.spawn(async move { axum::serve(collector, collect).await });
    Ok(Hostile {
        registry: registry_host,
        realm_origin,
        seen,
        _runtime: runtime,
    })
}

/// `wharf cp` of a small image to `host`, with an ambient ID token in a token file.
fn cp_with_ambient_token(host: &str, allow: Option<&str>) -> Result<std::process::Output> {
    let work = tempfile::tempdir()?;
    let src = Layout::create(&work.path().join("src"))?;
    image::sample_image(&src, "v1", 1, 5)?;
    let token = work.path().join("token");
    std::fs::write(&token, ID_TOKEN)?;
    let mut cmd = Cmd::new(binary_path())
        .args([
            "cp",
            &format!("oci:{}:v1", src.root().display()),
            &format!("docker://{host}/acme/app:v1"),
        ])
        .env("WHARF_TOKEN_FILE", &token)
        .env("WHARF_CREDENTIALS", work.path().join("none.json"))
        .timeout(TIMEOUT);
    if let Some(origin) = allow {
        cmd = cmd.env("WHARF_ALLOW_REALM", origin);
    }
    cmd.output()
}

#[test]
fn cp_refuses_to_send_the_ambient_token_to_a_realm_on_another_origin() -> Result<()> {
    let h = hostile("{realm}/token")?;
    let out = cp_with_ambient_token(&h.registry, None)?;
    assert!(!out.status.success(), "{}", streams(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refusing to send credentials") && said.contains("WHARF_ALLOW_REALM"),
        "the refusal says why and how to allow it: {said}"
    );
    assert!(
        h.seen.lock().expect("lock").is_empty(),
        "the realm on another origin was contacted: {:?}",
        h.seen.lock().expect("lock")
    );

    // Allowed by name, the realm gets the token (and, being hostile, refuses it).
    let out = cp_with_ambient_token(&h.registry, Some(&h.realm_origin))?;
    assert!(!out.status.success(), "{}", streams(&out));
    let seen = h.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("/token?"), "{seen:?}");
    Ok(())
}

#[test]
fn cp_refuses_to_send_the_ambient_token_to_a_plain_http_realm_off_loopback() -> Result<()> {
    // A name that would resolve nowhere here; the refusal must come before any connection.
    let h = hostile("http://registry.invalid/token")?;
    let out = cp_with_ambient_token(&h.registry, Some("http://registry.invalid"))?;
    assert!(!out.status.success(), "{}", streams(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refusing to send credentials") && said.contains("not HTTPS"),
        "{said}"
    );
    Ok(())
}
