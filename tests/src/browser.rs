//! [`Browser`]: a person's web browser, as far as approving a login needs one: cookies kept
//! across requests, redirects followed, HTML forms read and submitted. It runs no JavaScript: a
//! page that submits itself on load is submitted the way its `<noscript>` button would.
//!
//! Requests go through curl (a cookie jar in a private temp directory). The form reader knows
//! `<form>` and `<input>` and nothing else, which is all an OpenID provider's login pages use;
//! buttons are never submitted as fields, so a form's "abort" button is never pressed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::cmd::Cmd;

/// Upper bound on one page load, redirects included.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Redirects followed for one page load before giving up.
const MAX_REDIRECTS: &str = "10";

/// A browser profile: one cookie jar, removed with the handle.
#[derive(Debug)]
pub struct Browser {
    profile: TempDir,
}

/// A loaded page, after redirects.
#[derive(Debug, Clone)]
pub struct Page {
    /// The URL the page was finally loaded from.
    pub url: String,
    /// The final response's status.
    pub status: u16,
    /// The HTML.
    pub body: String,
}

/// One input of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// `name`.
    pub name: String,
    /// `type`, lower case (`text` when absent).
    pub kind: String,
    /// `value` (empty when absent), entities decoded.
    pub value: String,
}

/// The first form of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// Where it is submitted, resolved against the page URL.
    pub action: String,
    /// `get` or `post`.
    pub method: String,
    /// Its named inputs, in document order.
    pub inputs: Vec<Input>,
}

impl Page {
    /// The page's first form, if it has one.
    pub fn form(&self) -> Option<Form> {
        parse_form(&self.body, &self.url)
    }
}

impl Form {
    /// The inputs a person types into: visible ones without a value.
    pub fn blanks(&self) -> impl Iterator<Item = &Input> {
        self.inputs
            .iter()
            .filter(|i| i.kind != "hidden" && i.value.is_empty())
    }

    /// The value of input `name`, if the form has it.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.value.as_str())
    }

    /// Types `value` into input `name`; fails if the form has no such input.
    pub fn fill(&mut self, name: &str, value: &str) -> Result<()> {
        let input = self
            .inputs
            .iter_mut()
            .find(|i| i.name == name)
            .with_context(|| format!("the form has no input named {name:?}"))?;
        value.clone_into(&mut input.value);
        Ok(())
    }
}

impl Browser {
    /// A fresh profile with no cookies.
    pub fn new() -> Result<Self> {
        Ok(Browser {
            profile: tempfile::Builder::new()
                .prefix("wharf-browser-")
                .tempdir()?,
        })
    }

    /// Opens `url`.
    pub fn get(&self, url: &str) -> Result<Page> {
        self.load(self.curl(), url)
    }

    /// Submits `form` (as a person would by pressing its submit button).
    pub fn submit(&self, form: &Form) -> Result<Page> {
        let mut cmd = self.curl();
        if form.method == "get" {
            cmd = cmd.arg("--get");
        }
        for input in &form.inputs {
            cmd = cmd
                .arg("--data-urlencode")
                .arg(format!("{}={}", input.name, input.value));
        }
        self.load(cmd, &form.action)
    }

    fn jar(&self) -> PathBuf {
        self.profile.path().join("cookies.txt")
    }

    /// curl with the cookie jar, following redirects the way browsers do (a `POST` answered by
    /// a 302 or 303 continues as a `GET`).
    fn curl(&self) -> Cmd {
        Cmd::new("curl")
            .args(["--silent", "--show-error", "--globoff", "--location"])
            .args(["--max-redirs", MAX_REDIRECTS])
            .arg("--max-time")
            .arg(PAGE_TIMEOUT.as_secs().to_string())
            .arg("--cookie")
            .arg(self.jar())
            .arg("--cookie-jar")
            .arg(self.jar())
            .timeout(PAGE_TIMEOUT + Duration::from_secs(5))
    }

    fn load(&self, cmd: Cmd, url: &str) -> Result<Page> {
        let body_path = self.profile.path().join("page.html");
        let out = cmd
            .arg("--output")
            .arg(&body_path)
            .args(["--write-out", "%{http_code} %{url_effective}"])
            .arg(url)
            .stdout()?;
        let (status, final_url) = out
            .split_once(' ')
            .with_context(|| format!("curl wrote no status and URL: {out:?}"))?;
        let body = std::fs::read_to_string(&body_path).unwrap_or_default();
        Ok(Page {
            url: final_url.to_owned(),
            status: status
                .parse()
                .with_context(|| format!("curl wrote no status code: {out:?}"))?,
            body,
        })
    }
}

/// The first `<form>…</form>` of `html`, its action resolved against `base`.
fn parse_form(html: &str, base: &str) -> Option<Form> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<form")?;
    let end = lower[start..]
        .find("</form")
        .map_or(html.len(), |e| start + e);
    let (form_attrs, inner) = tag_attributes(&html[start + "<form".len()..end]);
    let attr = |name: &str| {
        form_attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let method = attr("method").unwrap_or_else(|| "get".to_owned());
    let mut inputs = Vec::new();
    let mut rest = inner;
    while let Some(at) = rest.to_ascii_lowercase().find("<input") {
        let (attrs, after) = tag_attributes(&rest[at + "<input".len()..]);
        rest = after;
        let get = |name: &str| attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        if let Some(name) = get("name") {
            inputs.push(Input {
                name: name.clone(),
                kind: get("type").map_or_else(|| "text".to_owned(), |t| t.to_ascii_lowercase()),
                value: get("value").cloned().unwrap_or_default(),
            });
        }
    }
    Some(Form {
        action: resolve(base, &attr("action").unwrap_or_default()),
        method: method.to_ascii_lowercase(),
        inputs,
    })
}

/// Reads the attributes of a tag whose name was just consumed, up to its `>`; returns them
/// (names lower case, values entity-decoded) and the text after the tag.
fn tag_attributes(text: &str) -> (Vec<(String, String)>, &str) {
    let mut attrs = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return (attrs, rest);
        }
        if let Some(after) = rest.strip_prefix('>') {
            return (attrs, after);
        }
        let name_end = rest
            .find(|c: char| c.is_ascii_whitespace() || matches!(c, '=' | '>' | '/'))
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let mut value = String::new();
        if let Some(after_eq) = rest.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            let (raw, after) = match after_eq.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after_eq[1..];
                    let close = body.find(q).unwrap_or(body.len());
                    (&body[..close], body.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let stop = after_eq
                        .find(|c: char| c.is_ascii_whitespace() || c == '>')
                        .unwrap_or(after_eq.len());
                    after_eq.split_at(stop)
                }
            };
            value = decode_entities(raw);
            rest = after;
        }
        attrs.push((name, value));
    }
}

/// Decodes the character references HTML attribute values use in practice.
fn decode_entities(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `reference` (a form action) resolved against the page URL `base`.
fn resolve(base: &str, reference: &str) -> String {
    if reference.is_empty() {
        return base.to_owned();
    }
    if reference.contains("://") {
        return reference.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if reference.starts_with('/') {
        return format!("{}{reference}", &base[..origin_end]);
    }
    let path = base.split(['?', '#']).next().unwrap_or(base);
    let dir_end = path
        .rfind('/')
        .filter(|&i| i >= origin_end)
        .map_or(path.len(), |i| i);
    format!("{}/{reference}", &path[..dir_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hidden_and_blank_inputs_but_not_buttons() -> Result<()> {
        let html = r#"<p>Sign-in</p><FORM autocomplete="off" action="/interaction/a&amp;b" method="POST">
  <input type="hidden" name="prompt" value="login"/>
  <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
  <input required type=password name='password' >
  <button type="submit" name="abort" value="yes">Sign-in</button>
</form><input name="outside" value="x">"#;
        let mut form =
            parse_form(html, "http://127.0.0.1:9/device?user_code=A").context("no form found")?;
        assert_eq!(form.action, "http://127.0.0.1:9/interaction/a&b");
        assert_eq!(form.method, "post");
        assert_eq!(form.value("prompt"), Some("login"));
        let blanks: Vec<&str> = form.blanks().map(|i| i.name.as_str()).collect();
        assert_eq!(blanks, ["login", "password"]);
        form.fill("login", "alice")?;
        assert_eq!(form.value("login"), Some("alice"));
        assert!(form.fill("abort", "yes").is_err(), "buttons are not fields");
        assert!(form.value("outside").is_none());
        Ok(())
    }

    #[test]
    fn resolves_actions_like_a_browser() {
        let page = "http://127.0.0.1:9/a/b?x=1";
        assert_eq!(resolve(page, ""), page);
        assert_eq!(resolve(page, "/device"), "http://127.0.0.1:9/device");
        assert_eq!(resolve(page, "c"), "http://127.0.0.1:9/a/c");
        assert_eq!(resolve(page, "http://h/x"), "http://h/x");
    }

    #[test]
    fn a_page_without_a_form_has_none() {
        assert!(parse_form("<h1>Sign-in Success</h1>", "http://h/").is_none());
    }
}
