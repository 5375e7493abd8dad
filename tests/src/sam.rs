//! The HTTP API routes of `infra/template.yaml`, matched the way API Gateway matches them, so
//! tests can route requests to the function the deployed API would invoke.
//!
//! The stand-in is at least as strict as API Gateway HTTP APIs are documented to be ("Working
//! with routes for HTTP APIs", API Gateway developer guide; serverless-application-model#1949):
//! - a route path must start with `/` and must not end with `/`: API Gateway refuses such a
//!   route ("invalid route name ending in /"), and SAM's OpenAPI import drops it silently, so
//!   its requests would fall to `$default`. Loading a template with one is an error here.
//! - a greedy `{name+}` parameter may only be the last segment.
//! - a request path with a trailing slash matches the route without it (`/x/` reaches `/x`); the
//!   function still sees the slash in `rawPath`.
//! - each `{param}` matches exactly one non-empty segment.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_norway::Value;

/// One `HttpApi` event of a function.
#[derive(Debug, Clone)]
pub struct Route {
    /// The function's logical id.
    pub function: String,
    /// The function's binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    /// Upper-case method, or `ANY`.
    pub method: String,
    /// The route path, with `{param}` segments.
    pub path: String,
}

impl Route {
    /// Whether this route matches `method path` (same segment count, literals equal, each
    /// `{param}` non-empty), the request's one trailing slash ignored as API Gateway does.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.method != method && self.method != "ANY" {
            return false;
        }
        let path = match path.strip_suffix('/') {
            Some(stripped) if !stripped.is_empty() => stripped,
            _ => path,
        };
        let want: Vec<&str> = self.path.split('/').collect();
        let got: Vec<&str> = path.split('/').collect();
        want.len() == got.len()
            && want.iter().zip(&got).all(|(w, g)| {
                if w.starts_with('{') && w.ends_with('}') {
                    !g.is_empty()
                } else {
                    w == g
                }
            })
    }
}

/// Refuses a route path API Gateway would not route (see the module doc).
pub fn check_route_path(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        bail!("route path {path:?} does not start with /");
    }
    if path.len() > 1 && path.ends_with('/') {
        bail!(
            "route path {path:?} ends in /: API Gateway refuses it, and SAM's import drops it \
             without an error (serverless-application-model#1949); declare it without the slash"
        );
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            bail!("route path {path:?} has an empty segment");
        }
        let greedy = segment.starts_with('{') && segment.ends_with("+}");
        if greedy && i + 1 != segments.len() {
            bail!("route path {path:?}: a greedy parameter must be the last segment");
        }
    }
    Ok(())
}

/// The routed part of the template.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Every explicit route.
    pub routes: Vec<Route>,
    /// The binary behind the `$default` catch-all.
    pub catch_all: String,
}

/// Path of the template.
pub fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml")
}

impl Routes {
    /// Reads `infra/template.yaml`.
    pub fn load() -> Result<Routes> {
        let text = std::fs::read_to_string(template_path()).context("infra/template.yaml")?;
        Routes::parse(&text)
    }

    /// Reads a template's text; a route API Gateway would not route is an error.
    pub fn parse(text: &str) -> Result<Routes> {
        let root: Value = serde_norway::from_str(text)?;
        let mut routes = Vec::new();
        let mut catch_all = None;
        let resources = root["Resources"].as_mapping().context("Resources")?;
        for (id, resource) in resources {
            if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
                continue;
            }
            let function = id.as_str().context("logical id")?.to_owned();
            let binary = resource["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .with_context(|| format!("{function} names no Binary"))?
                .to_owned();
            let Some(events) = resource["Properties"]["Events"].as_mapping() else {
                continue;
            };
            for event in events
                .values()
                .filter(|e| e["Type"].as_str() == Some("HttpApi"))
            {
                let props = &event["Properties"];
                match (props["Method"].as_str(), props["Path"].as_str()) {
                    (Some(method), Some(path)) => {
                        check_route_path(path).with_context(|| function.clone())?;
                        routes.push(Route {
                            function: function.clone(),
                            binary: binary.clone(),
                            method: method.to_ascii_uppercase(),
                            path: path.to_owned(),
                        })
                    }
                    (None, None) if catch_all.is_none() => catch_all = Some(binary.clone()),
                    (None, None) => bail!("{function}: a second $default route"),
                    _ => {
                        bail!("{function}: an HttpApi event needs both Method and Path or neither")
                    }
                }
            }
        }
        Ok(Routes {
            routes,
            catch_all: catch_all.context("no $default route")?,
        })
    }

    /// The routes matching `method path`.
    pub fn matching(&self, method: &str, path: &str) -> Vec<&Route> {
        self.routes
            .iter()
            .filter(|r| r.matches(method, path))
            .collect()
    }

    /// The binary API Gateway would invoke for `method path`.
    pub fn binary_for(&self, method: &str, path: &str) -> &str {
        match self.matching(method, path).first() {
            Some(route) => &route.binary,
            None => &self.catch_all,
        }
    }
}

/// The template's functions: (logical id, resource).
pub fn functions(root: &Value) -> Vec<(String, &Value)> {
    root["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, r)| (k.as_str().expect("logical id").to_owned(), r))
        .collect()
}

/// The IAM statements of a function's inline policies (the only kind the template may use).
pub fn statements(function: &Value) -> Vec<&Value> {
    let policies = function["Properties"]["Policies"]
        .as_sequence()
        .expect("Policies as a list");
    policies
        .iter()
        .flat_map(|p| {
            p["Statement"]
                .as_sequence()
                .unwrap_or_else(|| panic!("only inline policy documents are allowed, got {p:?}"))
        })
        .collect()
}

/// A statement's actions.
pub fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Sequence(list) => list
            .iter()
            .map(|a| a.as_str().expect("action").to_owned())
            .collect(),
        other => panic!("unexpected Action {other:?}"),
    }
}

/// IAM's `StringLike` ("IAM JSON policy elements: Condition operators", IAM user guide): `*`
/// matches any run of characters (`/` included), `?` exactly one, everything else itself,
/// case-sensitively.
pub fn string_like(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && go(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    go(&p, &v)
}
