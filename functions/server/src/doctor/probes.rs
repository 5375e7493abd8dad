//! Checks that push nothing: the `/v2/` challenge and the upload routes.

use reqwest::header::{CONTENT_LENGTH, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::Doctor;
use super::report::{Check, Line};
use crate::cp::registry::Repository;

/// `404 NAME_UNKNOWN`-style summary of an answer: its status and the OCI error code of its
/// body, if it has one. Consumes the body; never includes it otherwise.
pub(super) async fn answer(res: Response) -> String {
    let status = res.status();
    let code = res
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned));
    match code {
        Some(code) => format!("{} {code}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The parameters of a `Bearer` challenge, or why it is malformed. Stricter than a client
/// needs: every parameter must be `key="value"`, so a header cut or merged on the way (several
/// headers joined by a proxy, a value truncated) is noticed.
pub(super) fn parse_challenge(value: &str) -> Result<Vec<(String, String)>, String> {
    let rest = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| format!("not a Bearer challenge: {value:?}"))?;
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, tail) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("malformed parameter in {value:?}"))?;
        let (val, tail) = tail
            .split_once('"')
            .ok_or_else(|| format!("unterminated value in {value:?}"))?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("malformed parameter name {key:?} in {value:?}"));
        }
        params.push((key.to_owned(), val.to_owned()));
        rest = tail.trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err(format!("junk after {key}=\"…\" in {value:?}")),
        };
    }
    Ok(params)
}

/// `GET /v2/` without credentials: 401 with exactly one well-formed Bearer challenge whose
/// realm is https (or the scheme of a plain-http URL the user gave, said so in the line).
pub(super) async fn challenge(http: &reqwest::Client, base: &str) -> Line {
    let check = Check::Challenge;
    let res = match http.get(format!("{base}/v2/")).send().await {
        Ok(res) => res,
        Err(e) => return Line::fail(check, format!("GET /v2/: {e}")),
    };
    if res.status() != StatusCode::UNAUTHORIZED {
        return Line::fail(
            check,
            format!(
                "GET /v2/ without credentials answered {}, not 401 with a challenge: is \
                 authentication off?",
                answer(res).await
            ),
        );
    }
    let headers: Vec<&str> = res
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let [value] = headers[..] else {
        return Line::fail(
            check,
            format!(
                "401 with {} WWW-Authenticate headers, not one",
                headers.len()
            ),
        );
    };
    let params = match parse_challenge(value) {
        Ok(p) => p,
        Err(e) => return Line::fail(check, e),
    };
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(realm), Some(service)) = (get("realm"), get("service")) else {
        return Line::fail(
            check,
            format!("the challenge lacks realm or service: {value}"),
        );
    };
    let plain_base = base.starts_with("http://");
    if realm.starts_with("https://") {
        Line::ok(check, format!("Bearer realm {realm}, service {service:?}"))
    } else if realm.starts_with("http://") && plain_base {
        Line::ok(
            check,
            format!(
                "Bearer realm {realm}, service {service:?} (plain http, accepted because the \
                 URL given is http; a deployment must name an https realm)"
            ),
        )
    } else {
        Line::fail(
            check,
            format!(
                "the realm {realm:?} is not https: clients would send the identity in clear, \
                 or fail (set public_url, or redeploy)"
            ),
        )
    }
}

/// `POST …/blobs/uploads/` and `…/blobs/uploads` at depths 1 and 5: each must reach the uploads
/// function (202, `Location`, `Docker-Upload-UUID`), not a catch-all's 404. Each session opened
/// is cancelled again.
pub(super) async fn uploads_route(d: &Doctor) -> Line {
    let mut failures = Vec::new();
    for (depth, name, repo) in [
        (1, &d.names.depth1, &d.depth1),
        (super::DEEPEST, &d.names.deepest, &d.deepest),
    ] {
        for tail in ["blobs/uploads/", "blobs/uploads"] {
            let path = format!("/v2/{name}/{tail}");
            if let Err(why) = open_session(repo, tail).await {
                failures.push(format!("depth {depth}, POST {path}: {why}"));
            }
        }
    }
    if failures.is_empty() {
        Line::ok(
            Check::UploadsRoute,
            "202 with Location and Docker-Upload-UUID at depths 1 and 5, with and without the \
             trailing slash",
        )
    } else {
        Line::fail(Check::UploadsRoute, failures.join("; "))
    }
}

/// Opens an upload session by `POST <repo>/<tail>` and cancels it; why not, if it failed.
async fn open_session(repo: &Repository, tail: &str) -> Result<(), String> {
    let res = repo
        .request(Method::POST, &repo.url(tail))
        .header(CONTENT_LENGTH, "0")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let location = res
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let uuid = res.headers().contains_key("docker-upload-uuid");
    match (status, location) {
        (StatusCode::ACCEPTED, Some(location)) if uuid => {
            // Best effort: an abandoned session expires anyway.
            let url = repo.resolve(&location);
            let _ = repo.session_request(Method::DELETE, &url).send().await;
            Ok(())
        }
        (StatusCode::ACCEPTED, _) => Err("202 without Location or Docker-Upload-UUID".into()),
        (StatusCode::NOT_FOUND, _) => Err(format!(
            "{}: not the uploads function (does the API have this route?)",
            answer(res).await
        )),
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => Err(format!(
            "{} (does the identity have push on this repository?)",
            answer(res).await
        )),
        _ => Err(answer(res).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_challenges_parse() {
        let p = parse_challenge(
            r#"Bearer realm="https://r.example/token",service="wharf",scope="repository:a:pull""#,
        )
        .expect("parses");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], ("realm".into(), "https://r.example/token".into()));
        assert!(parse_challenge(r#"Bearer realm="https://r/token", service="w""#).is_ok());
    }

    #[test]
    fn damaged_challenges_are_refused() {
        for bad in [
            r#"Basic realm="x""#,
            r#"Bearer realm="https://r/tok"#,
            r#"Bearer realm="https://r/token"service="w""#,
            r#"Bearer realm="https://r/token", Bearer realm="https://r/token""#,
            r#"Bearer realm=https://r/token"#,
        ] {
            assert!(parse_challenge(bad).is_err(), "{bad}");
        }
    }
}
