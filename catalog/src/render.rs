//! Templates (minijinja, autoescaped for HTML and XML) and the page contexts.

use minijinja::{AutoEscape, Environment, Value, context};

use crate::CatalogError;

/// The templates, compiled into the binary so a build needs no files besides its output.
const TEMPLATES: [(&str, &str); 7] = [
    ("base.html", include_str!("../templates/base.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("repo.html", include_str!("../templates/repo.html")),
    ("manifest.html", include_str!("../templates/manifest.html")),
    ("sitemap.xml", include_str!("../templates/sitemap.xml")),
    ("feed.xml", include_str!("../templates/feed.xml")),
];

/// The stylesheet.
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The search and copy-button script.
pub const SEARCH_JS: &str = include_str!("../assets/search.js");

/// Everything that shapes the output besides the data: a change re-renders every repository.
pub fn source_fingerprint() -> String {
    let mut all = String::new();
    for (name, text) in TEMPLATES {
        all.push_str(name);
        all.push_str(text);
    }
    all.push_str(STYLE_CSS);
    all.push_str(SEARCH_JS);
    crate::sha256_hex(all.as_bytes())
}

/// The template environment.
#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
    globals: Value,
}

impl Renderer {
    /// Compiles the templates; `globals` is merged into every page's context.
    pub fn new(globals: Value) -> Result<Self, CatalogError> {
        let mut env = Environment::new();
        // HTML escaping is also valid XML escaping (numeric references and the five entities).
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") || name.ends_with(".xml") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, text) in TEMPLATES {
            env.add_template(name, text)?;
        }
        Ok(Renderer { env, globals })
    }

    /// Renders `template` with `ctx` plus the globals.
    pub fn render(&self, template: &str, ctx: Value) -> Result<Vec<u8>, CatalogError> {
        let t = self.env.get_template(template)?;
        let merged = context! { ..ctx, ..self.globals.clone() };
        Ok(t.render(merged)?.into_bytes())
    }
}
