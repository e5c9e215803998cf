//! Rendering: the templates (embedded, autoescaped), the layout every page
//! shares, and error pages.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use ferrule_store::PageRequest;
use minijinja::{Environment, Value, context};
use rust_embed::RustEmbed;

use super::assets;
use super::session::Console;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(RustEmbed)]
#[folder = "console/templates/"]
struct Templates;

/// What console pages may load: our own files only; no inline script or
/// style (htmx is told not to add any), no framing, forms post here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Most tenants an admin's tenant switch lists.
const MAX_TENANTS_LISTED: u32 = 500;

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // `.html` templates are HTML-escaped by minijinja's default; stated
        // here so that no later change turns it off by accident.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        // Our own URLs, known safe: written as they are.
        env.add_function("asset", |name: &str| -> Result<Value, minijinja::Error> {
            assets::url(name)
                .map(|u| Value::from_safe_string(u.to_owned()))
                .ok_or_else(|| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("no console asset {name}"),
                    )
                })
        });
        env.add_filter("bytes", human_bytes);
        for name in Templates::iter() {
            let Some(file) = Templates::get(&name) else {
                continue;
            };
            let source = match file.data {
                std::borrow::Cow::Borrowed(b) => String::from_utf8_lossy(b).into_owned(),
                std::borrow::Cow::Owned(v) => String::from_utf8_lossy(&v).into_owned(),
            };
            if let Err(e) = env.add_template_owned(name.into_owned(), source) {
                tracing::error!(error = %e, "a console template does not parse");
            }
        }
        env
    })
}

/// `1536` → `1.5 KiB`: sizes as people read them.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A template error with its causes (an include's own error is a cause).
fn describe(e: &minijinja::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Renders a template to HTML.
pub fn render(name: &str, ctx: Value) -> Result<String, Failure> {
    environment()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| {
            Failure::from(ApiError::Internal(format!(
                "console template {name}: {}",
                describe(&e)
            )))
        })
}

/// A whole page with the console's layout around it.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, Html(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// What every page's layout needs: who is logged in, where, the CSRF token,
/// the nav entry to mark, and for admins the tenants to switch to.
pub async fn chrome(state: &AppState, console: &Console, nav: &str) -> Value {
    let tenants: Vec<String> = if console.is_admin() {
        state
            .store()
            .list_tenants(&PageRequest {
                limit: MAX_TENANTS_LISTED,
                after: None,
            })
            .await
            .map(|p| p.items.into_iter().map(|t| t.id.to_string()).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    context! {
        csrf => console.csrf,
        tenant => console.caller.tenant.to_string(),
        role => console.caller.role.to_string(),
        can_write => console.caller.role.can_write(),
        is_admin => console.is_admin(),
        tenants => tenants,
        nav => nav,
        version => env!("CARGO_PKG_VERSION"),
        can_manage_access => console.caller.role.can_manage_access(),
    }
}

/// A page that could not be shown: an HTML page saying why and what to do,
/// with the status the API would answer.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
}

impl Failure {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        if let ApiError::Internal(cause) = &e {
            tracing::error!(%cause, "internal error serving a console page");
        }
        let (status, _, detail, _) = e.parts();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        Failure::new(status, title, detail)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = render(
            "error.html",
            context! {
                title => self.title,
                detail => self.detail,
                status => self.status.as_u16(),
                version => env!("CARGO_PKG_VERSION"),
            },
        )
        .unwrap_or_else(|_| format!("{}: {}", self.title, self.detail));
        html(self.status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_escapes_html() {
        let env = environment();
        let names: Vec<_> = Templates::iter().collect();
        assert!(names.len() >= 6, "{names:?}");
        for name in &names {
            env.get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        let html = render(
            "error.html",
            context! { title => "t", detail => "<script>x</script>", status => 400 },
        )
        .unwrap();
        assert!(
            html.contains("&lt;script&gt;x&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert!(!html.contains("<script>x"), "{html}");
    }
}
