//! `/api/docs`: a readable reference of the API, rendered once at start-up
//! from the same OpenAPI document `/api/openapi.json` serves, so the two can
//! never disagree. Plain HTML and one stylesheet, both from the binary: no
//! script, no CDN, nothing fetched by the reader's browser from elsewhere.

use axum::extract::Extension;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

const TEMPLATE: &str = include_str!("../../templates/api_docs.html");
const STYLESHEET: &str = include_str!("../../assets/api_docs.css");

/// The rendered reference page.
#[derive(Clone)]
pub struct ApiDocsPage(Bytes);

impl ApiDocsPage {
    /// Renders the page for `api`. Fails only on a template bug, which the
    /// unit test below catches.
    pub fn render(api: &utoipa::openapi::OpenApi) -> Result<Self, minijinja::Error> {
        let doc = serde_json::to_value(api).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
        })?;
        let mut env = minijinja::Environment::new();
        env.add_template("api_docs.html", TEMPLATE)?;
        let html = env
            .get_template("api_docs.html")?
            .render(minijinja::context! {
                info => doc.get("info"),
                tags => sections(&doc),
                schemas => doc.pointer("/components/schemas"),
                version => env!("CARGO_PKG_VERSION"),
            })?;
        Ok(Self(Bytes::from(html)))
    }
}

/// One tag's operations, in the order the document declares its tags.
#[derive(Serialize)]
struct Section<'a> {
    name: &'a str,
    description: Option<&'a str>,
    operations: Vec<Operation<'a>>,
}

#[derive(Serialize)]
struct Operation<'a> {
    method: &'static str,
    path: &'a str,
    anchor: String,
    spec: &'a Value,
}

const METHODS: &[&str] = &["get", "put", "post", "patch", "delete", "head", "options"];

fn sections(doc: &Value) -> Vec<Section<'_>> {
    let mut by_tag: BTreeMap<&str, Vec<Operation<'_>>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for &method in METHODS {
            let Some(spec) = item.get(method) else {
                continue;
            };
            let tag = spec["tags"][0].as_str().unwrap_or("other");
            by_tag.entry(tag).or_default().push(Operation {
                method,
                path,
                anchor: anchor(method, path),
                spec,
            });
        }
    }
    let mut out = Vec::new();
    for tag in doc["tags"].as_array().into_iter().flatten() {
        let Some(name) = tag["name"].as_str() else {
            continue;
        };
        if let Some(operations) = by_tag.remove(name) {
            out.push(Section {
                name,
                description: tag["description"].as_str(),
                operations,
            });
        }
    }
    // Operations whose tag the document does not declare still get listed.
    out.extend(by_tag.into_iter().map(|(name, operations)| Section {
        name,
        description: None,
        operations,
    }));
    out
}

/// `post /api/v1/devices/{id}` → `post-api-v1-devices-id`.
fn anchor(method: &str, path: &str) -> String {
    let mut a = method.to_owned();
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !part.is_empty() {
            a.push('-');
            a.push_str(part);
        }
    }
    a
}

/// The reference page.
#[utoipa::path(get, operation_id = "getApiReference", path = "/api/docs", tag = "ops", security(()),
    responses((status = 200, description = "The API reference as HTML", content_type = "text/html", body = String)))]
pub async fn page(Extension(page): Extension<ApiDocsPage>) -> Html<Bytes> {
    Html(page.0.clone())
}

/// The reference page's stylesheet.
#[utoipa::path(get, operation_id = "getApiReferenceStylesheet", path = "/api/docs/style.css", tag = "ops", security(()),
    responses((status = 200, description = "The stylesheet of /api/docs", content_type = "text/css", body = String)))]
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_and_schema_is_on_the_page() {
        let api = crate::openapi();
        let page = ApiDocsPage::render(&api).expect("renders");
        let page = std::str::from_utf8(&page.0).unwrap();
        let doc = serde_json::to_value(&api).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for &method in METHODS {
                if item.get(method).is_some() {
                    let id = format!("id=\"{}\"", anchor(method, path));
                    assert!(page.contains(&id), "{method} {path} missing");
                }
            }
        }
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                page.contains(&format!("id=\"schema-{name}\"")),
                "schema {name} missing"
            );
        }
        assert!(!page.contains("<script"), "the page runs no script");
    }

    #[test]
    fn anchors_are_stable_slugs() {
        assert_eq!(
            anchor("post", "/api/v1/devices/{id}/credentials"),
            "post-api-v1-devices-id-credentials"
        );
    }
}
