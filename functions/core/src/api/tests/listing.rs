//! Tag lists and the catalog, with pagination; bad input on every route.
use super::*;

#[tokio::test]
async fn tags_list_paginates_with_link() {
    let app = App::new().await;
    let (bytes, _) = app.push_image("t", "a", b"l", json!({})).await;
    for tag in ["e", "c", "b", "d"] {
        app.put_manifest("t", tag, media::OCI_MANIFEST, &bytes)
            .await;
    }
    let r = app.get("/v2/t/tags/list").await;
    assert_eq!(
        r.json(),
        json!({"name": "t", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert_eq!(r.header("link"), "");
    let r = app.get("/v2/t/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        "</v2/t/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = app.get("/v2/t/tags/list?n=2&last=b").await;
    assert_eq!(r.json()["tags"], json!(["c", "d"]));
    let r = app.get("/v2/t/tags/list?n=2&last=d").await;
    assert_eq!(r.json()["tags"], json!(["e"]));
    assert_eq!(r.header("link"), "");
    assert_eq!(
        app.get("/v2/t/tags/list?n=0").await.json()["tags"],
        json!([])
    );
    assert_eq!(
        app.get("/v2/t/tags/list?n=x").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/v2/unknown/tags/list").await.error_code(),
        "NAME_UNKNOWN"
    );
}

#[tokio::test]
async fn catalog_paginates_with_link() {
    let app = App::new().await;
    for repo in ["zeta", "alpha/one", "mid"] {
        app.push_blob(repo, b"x").await;
    }
    let r = app.get("/v2/_catalog").await;
    assert_eq!(
        r.json(),
        json!({"repositories": ["alpha/one", "mid", "zeta"]})
    );
    let r = app.get("/v2/_catalog?n=1").await;
    assert_eq!(r.json()["repositories"], json!(["alpha/one"]));
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?n=1&last=alpha/one>; rel=\"next\""
    );
    let r = app.get("/v2/_catalog?n=5&last=alpha/one").await;
    assert_eq!(r.json()["repositories"], json!(["mid", "zeta"]));
}

#[tokio::test]
async fn bad_names_digests_routes_and_methods() {
    let app = App::new().await;
    for path in [
        "/v2/UPPER/manifests/v1",
        "/v2/a/../b/manifests/v1",
        "/v2/%2e%2e/tags/list",
        "/v2/a//b/blobs/uploads/",
    ] {
        let r = app.get(path).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            "{path}"
        );
    }
    let r = app.get("/v2/a/blobs/sha256:ABC").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
    // A read by an invalid reference names no manifest (spec end-3 fails only with 404).
    let r = app.get("/v2/a/manifests/md5:abc").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let r = app.get("/v2/a/nothing/here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        !r.error_code().is_empty(),
        "unknown routes still get an OCI error body"
    );
    let r = app
        .call(Method::POST, "/v2/a/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
    let r = app
        .call(
            Method::POST,
            "/v2/a/blobs/uploads/?digest=sha512:00",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}

/// Follows `Link`s from `first`, returning every page's names.
async fn follow(router: &Router, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(uri) = next.take() {
        assert!(pages.len() < 1000, "the Links never end");
        let req = Request::get(&uri).body(Body::empty()).expect("request");
        let res = router.clone().oneshot(req).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
        let link = res
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let names: Vec<String> =
            serde_json::from_slice::<Value>(&body).expect("json")["repositories"]
                .as_array()
                .expect("list")
                .iter()
                .map(|v| v.as_str().expect("name").to_owned())
                .collect();
        pages.push(names);
        next = link.map(|l| {
            l.strip_prefix('<')
                .and_then(|l| l.split_once('>'))
                .map(|(uri, _)| uri.to_owned())
                .expect("a Link of the form <uri>; rel=\"next\"")
        });
    }
    pages
}

#[tokio::test]
async fn a_catalog_caller_who_sees_few_repositories_gets_bounded_pages_and_links_to_the_rest() {
    // 500 repositories, of which an anonymous caller may see every tenth (the public ones).
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state_in(dir.path()).await;
    let digest = Algorithm::Sha256.digest(b"x");
    let mut public = Vec::new();
    for i in 0..500 {
        let name = if i % 10 == 0 {
            format!("r{i:03}/pub")
        } else {
            format!("r{i:03}/private")
        };
        let repo = crate::oci::RepoName::parse(&name).expect("name");
        state
            .meta
            .link_blob(&repo, &digest, crate::storage::BlobLink { size: 1 })
            .await
            .expect("link");
        if i % 10 == 0 {
            public.push(name);
        }
    }
    let config: crate::config::AuthConfig =
        toml::from_str(r#"policy = 'public = ["*/pub"]'"#).expect("auth config");
    let auth = crate::auth::Auth::from_config(&config, dir.path()).expect("auth");
    let router = super::router(state.with_auth(Arc::new(auth)));
    // A page of 40 would take ten index pages of 41 to fill: one request reads at most
    // CATALOG_MAX_INDEX_READS of them and links to the rest, with a shorter page.
    let n = 40;
    let pages = follow(&router, &format!("/v2/_catalog?n={n}")).await;
    let bound = crate::api::catalog::CATALOG_MAX_INDEX_READS * (n + 1) / 10 + 1;
    assert!(
        pages[0].len() < n && pages[0].len() <= bound,
        "the first page holds {} names",
        pages[0].len()
    );
    assert!(pages.len() > 1, "the rest is linked");
    // Following the Links lists exactly what the caller may see, once each, in order.
    let listed: Vec<String> = pages.concat();
    assert_eq!(listed, public);
    // And a Link never names a repository the caller may not see: every page ends on a name it
    // was given (checked above), and the pages hold only public names.
    assert!(listed.iter().all(|name| name.ends_with("/pub")));
}

/// Issue 16 item 11: a caller who may see `zeta/*` and `zz/pub` asked `_catalog?n=10000` and the
/// request walked the whole index (2,000 names it may not see) to find three. The request now
/// reads only the index under the literal prefixes of the caller's patterns.
#[tokio::test]
async fn a_catalog_request_reads_only_the_index_under_the_callers_prefixes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state_in(dir.path()).await;
    let digest = Algorithm::Sha256.digest(b"x");
    let mut names: Vec<String> = (0..2000).map(|i| format!("a{i:04}/private")).collect();
    names.extend(
        [
            "zeta/one",
            "zeta/two/deep",
            "zeta2/not",
            "zz/pub",
            "zz/pubx",
        ]
        .map(String::from),
    );
    for name in &names {
        let repo = crate::oci::RepoName::parse(name).expect("name");
        state
            .meta
            .link_blob(&repo, &digest, crate::storage::BlobLink { size: 1 })
            .await
            .expect("link");
    }
    let config: crate::config::AuthConfig =
        toml::from_str(r#"policy = 'public = ["zeta/*", "zeta/**", "zz/pub"]'"#)
            .expect("auth config");
    let auth = Arc::new(crate::auth::Auth::from_config(&config, dir.path()).expect("auth"));
    let caller = crate::auth::Caller::Anonymous;
    let prefixes = caller.catalog_prefixes(Some(&auth));
    assert_eq!(prefixes, ["zeta/", "zz/pub"]);

    let scan = crate::api::catalog::visible_page(&*state.meta, &prefixes, 10_000, None, |r| {
        caller.may_list(Some(&auth), r)
    })
    .await
    .expect("scan");
    let listed: Vec<String> = scan.visible.iter().map(|r| r.to_string()).collect();
    assert_eq!(listed, ["zeta/one", "zeta/two/deep", "zz/pub"]);
    // The entries under `zeta/` and `zz/pub` (`zz/pubx` among them), nothing of the 2,000.
    assert_eq!(scan.entries_read, 4, "index entries read");

    // Through the router, the same answer in one page, and a resumed page stays in range.
    let router = super::router(state.clone().with_auth(auth.clone()));
    let pages = follow(&router, "/v2/_catalog?n=10000").await;
    assert_eq!(pages.len(), 1, "one page");
    assert_eq!(pages[0], listed);
    let pages = follow(&router, "/v2/_catalog?n=1").await;
    assert_eq!(pages.concat(), listed);
    let scan = crate::api::catalog::visible_page(
        &*state.meta,
        &prefixes,
        10_000,
        Some("zeta/one".into()),
        |r| caller.may_list(Some(&auth), r),
    )
    .await
    .expect("scan");
    assert_eq!(scan.entries_read, 3, "resumed after zeta/one");
}

#[test]
fn catalog_prefixes_follow_every_pattern_the_caller_may_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth_with = |public: &str| {
        let config: crate::config::AuthConfig =
            toml::from_str(&format!("policy = 'public = {public}'")).expect("auth config");
        crate::auth::Auth::from_config(&config, dir.path()).expect("auth")
    };
    let token = |catalog: &[&str], pulls: &[&str]| {
        crate::auth::Caller::Token(Box::new(crate::auth::AccessClaims {
            iss: "wharf".into(),
            sub: "someone".into(),
            aud: "wharf".into(),
            exp: 0,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            idp: None,
            access: pulls
                .iter()
                .map(|name| crate::auth::AccessEntry {
                    kind: "repository".into(),
                    name: (*name).into(),
                    actions: vec!["pull".into()],
                })
                .chain(std::iter::once(crate::auth::AccessEntry {
                    kind: "repository".into(),
                    name: "pushonly/app".into(),
                    actions: vec!["push".into()],
                }))
                .collect(),
            catalog: catalog.iter().map(|p| (*p).to_string()).collect(),
        }))
    };
    let auth = auth_with(r#"["pub/*"]"#);
    let caller = token(
        &["team/**", "team/a/*", "tools/x?"],
        &["other/app", "team/b"],
    );
    assert_eq!(
        caller.catalog_prefixes(Some(&auth)),
        ["other/app", "pub/", "team/", "tools/x?"],
        "a push-only grant lists nothing"
    );
    assert_eq!(
        crate::auth::Caller::Anonymous.catalog_prefixes(Some(&auth)),
        ["pub/"]
    );
    // A pattern that starts with a wildcard may match anywhere: the whole index.
    let caller = token(&["*/public"], &[]);
    assert_eq!(caller.catalog_prefixes(Some(&auth)), [""]);
    assert_eq!(
        crate::auth::Caller::Unrestricted.catalog_prefixes(Some(&auth)),
        [""]
    );
    assert_eq!(crate::auth::Caller::Anonymous.catalog_prefixes(None), [""]);
    // Nothing public and no token: no part of the index at all.
    let none = auth_with("[]");
    assert!(
        crate::auth::Caller::Anonymous
            .catalog_prefixes(Some(&none))
            .is_empty()
    );
}
