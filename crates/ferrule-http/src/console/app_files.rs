//! Serving custom apps' files at `/apps/{tenant}/{app}/…`.
//!
//! An app is the tenant's own code, and the console must not trust it: an
//! editor's app opened by an owner must not act as the owner. So its pages
//! are served *sandboxed* (CSP `sandbox allow-scripts …` without
//! `allow-same-origin`): the browser gives them an opaque origin, so their
//! script can neither read the console's pages (and their CSRF token) nor
//! ride the session cookie, which the browser does not even send with
//! their requests. They call the API with the app's own key instead, which
//! `/api/v1` accepts cross-origin (CORS for bearer tokens; it never reads
//! cookies).
//!
//! Without cookies, the app's subresources need another proof of who may
//! load them: a *pass* in the path. A console user (session cookie, on the
//! top-level navigation, where the browser does send it) asking for
//! `/apps/{tenant}/{app}/{path}` is redirected to
//! `/apps/{tenant}/{app}/~{pass}/{path}`; relative URLs in the app then
//! carry the pass by themselves. A pass is an HMAC (the console's start-up
//! key) over the tenant, the app, an expiry and the hash of the session
//! that asked; it is honoured only while that session lives (logout ends
//! it) and for [`PASS_LIFETIME`]. An invalid or expired pass is sent back
//! to the plain path, which logs in or issues a fresh one. Another tenant's
//! app is not found, never refused.
//!
//! The app learns its settings (API paths, tenant, its key) from a
//! `<meta name="ferrule">` element added to each of its HTML pages, or
//! from `ferrule.json` beside them.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use ferrule_core::TenantId;
use ferrule_store::apps::AppRecord;
use serde_json::json;

use super::csrf;
use super::session::Console;
use crate::error::ApiError;
use crate::routes::app_bundle::{self, INDEX, SETTINGS};
use crate::routes::apps::{app_id, app_url, store};
use crate::state::AppState;

/// The policy of an app's files: an opaque origin (`sandbox` without
/// `allow-same-origin`); scripts, styles and images from this server only
/// (`'self'` still means the server's origin in a sandboxed page); calls to
/// the API and its live stream; no inline script, no `eval`, no framing.
pub const APP_CONTENT_SECURITY_POLICY: &str = "sandbox allow-scripts allow-forms allow-popups \
     allow-modals allow-downloads; default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; font-src 'self'; connect-src 'self' ws: wss:; \
     object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// How long a pass opens an app's files (while its session lives).
pub const PASS_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The HMAC purpose that keeps passes apart from CSRF tokens.
const PASS_PURPOSE: &str = "app-pass";

/// The routes of apps' own files, merged into the application beside the
/// console's (whose CSP they must not get).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{tenant}/{app}", get(to_root))
        .route("/apps/{tenant}/{app}/", get(root))
        .route("/apps/{tenant}/{app}/{*path}", get(file))
}

/// Relative links in the app's pages need the trailing slash.
async fn to_root(Path((tenant, app)): Path<(String, String)>) -> Response {
    match (
        ferrule_core::id::validate_slug(&tenant),
        ferrule_core::id::validate_slug(&app),
    ) {
        (Ok(()), Ok(())) => Redirect::permanent(&format!("/apps/{tenant}/{app}/")).into_response(),
        _ => ApiError::NotFound("app").into_response(),
    }
}

async fn root(
    State(state): State<AppState>,
    console: Console,
    uri: OriginalUri,
    Path((tenant, app)): Path<(String, String)>,
) -> Response {
    issue_pass(&state, &console, &tenant, &app, "", uri.query())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn file(
    State(state): State<AppState>,
    uri: OriginalUri,
    Path((tenant, app, path)): Path<(String, String, String)>,
    console: Result<Console, super::session::NoSession>,
) -> Response {
    let answer = match path.strip_prefix('~') {
        Some(rest) => {
            let (pass, path) = rest.split_once('/').unwrap_or((rest, ""));
            with_pass(&state, &tenant, &app, pass, path, uri.query()).await
        }
        None => match console {
            Ok(console) => issue_pass(&state, &console, &tenant, &app, &path, uri.query()).await,
            Err(login) => return login.into_response(),
        },
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

/// A console user asks for an app's file: checked, then sent to the same
/// file under a fresh pass.
async fn issue_pass(
    state: &AppState,
    console: &Console,
    tenant: &str,
    app: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    // Another tenant's app is not found, never refused: its existence is
    // not for this user to learn.
    if console.caller.tenant.as_str() != tenant {
        return Err(ApiError::NotFound("app"));
    }
    let record = store(state)?
        .get_app(&console.caller.tenant, app_id(app)?)
        .await?;
    // A path that could never be served is not worth a pass (and `..` in
    // the redirect would leave the app).
    let file = path.trim_end_matches('/');
    if !file.is_empty() {
        app_bundle::check_path(file).map_err(|_| ApiError::NotFound("file"))?;
    }
    let session = ferrule_core::secret::hash_token(&console.token);
    let expires = now_secs() + PASS_LIFETIME.as_secs();
    let pass = Pass {
        tenant: record.tenant.as_str(),
        app: &record.id,
        expires,
        session: &session,
    };
    Ok(see_other(&format!(
        "{}~{}/{}{}",
        app_url(&record.tenant, &record.id),
        pass.encode(),
        path,
        query.map(|q| format!("?{q}")).unwrap_or_default()
    )))
}

/// A file asked for under a pass (the app's own requests carry no cookie).
async fn with_pass(
    state: &AppState,
    tenant: &str,
    app: &str,
    pass: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let tenant_id = TenantId::new(tenant).map_err(|_| ApiError::NotFound("app"))?;
    app_id(app)?;
    if !pass_holds(state, &tenant_id, app, pass).await? {
        // Back to the plain path: it logs in, or issues a fresh pass.
        return Ok(see_other(&format!(
            "{}{}{}",
            app_url(&tenant_id, app),
            path,
            query.map(|q| format!("?{q}")).unwrap_or_default()
        )));
    }
    let record = store(state)?.get_app(&tenant_id, app).await?;
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}{INDEX}")
    } else {
        path.to_owned()
    };
    if path == SETTINGS {
        let mut r = Json(settings(&record)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The app's own page has an opaque origin: its fetch is
        // cross-origin. The pass in the path is what protects this.
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return Ok(r);
    }
    app_bundle::check_path(&path).map_err(|_| ApiError::NotFound("file"))?;
    let body = store(state)?
        .app_file(&record.tenant, &record.id, &path)
        .await?;
    let content_type = app_bundle::content_type(&path);
    let body = if content_type.starts_with("text/html") {
        with_settings_meta(body, &record)
    } else {
        body
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(APP_CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    // The pass is in every URL: no page of the app's may hand it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(r)
}

/// What an app's pages are told.
fn settings(record: &AppRecord) -> serde_json::Value {
    json!({
        "api": "/api/v1",
        "stream": "/api/v1/stream",
        "tenant": record.tenant.as_str(),
        "app": record.id,
        "token": record.key_secret,
    })
}

/// Adds `<meta name="ferrule" content="{settings}">` at the top of an HTML
/// page (after `<head>` when there is one), so its script can read its
/// settings without a request.
fn with_settings_meta(page: Vec<u8>, record: &AppRecord) -> Vec<u8> {
    let meta = format!(
        "<meta name=\"ferrule\" content=\"{}\">",
        escape_attribute(&settings(record).to_string())
    );
    let at = find_ascii_case_insensitive(&page, b"<head")
        .and_then(|start| {
            page[start..]
                .iter()
                .position(|&b| b == b'>')
                .map(|end| start + end + 1)
        })
        .unwrap_or(0);
    let mut out = Vec::with_capacity(page.len() + meta.len());
    out.extend_from_slice(&page[..at]);
    out.extend_from_slice(meta.as_bytes());
    out.extend_from_slice(&page[at..]);
    out
}

fn find_ascii_case_insensitive(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A pass: `{expires}.{session hash}.{tag}`.
#[derive(Clone, Copy)]
struct Pass<'a> {
    tenant: &'a str,
    app: &'a str,
    expires: u64,
    session: &'a str,
}

impl Pass<'_> {
    fn message(&self) -> String {
        format!(
            "{}\0{}\0{}\0{}",
            self.tenant, self.app, self.expires, self.session
        )
    }

    fn encode(&self) -> String {
        format!(
            "{}.{}.{}",
            self.expires,
            self.session,
            csrf::tag(PASS_PURPOSE, &self.message())
        )
    }
}

/// Whether a pass opens this app now: its tag, its expiry, and its session
/// still alive for a user of this tenant (or an admin).
async fn pass_holds(
    state: &AppState,
    tenant: &TenantId,
    app: &str,
    encoded: &str,
) -> Result<bool, ApiError> {
    let mut parts = encoded.splitn(3, '.');
    let (Some(expires), Some(session), Some(tag)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(false);
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return Ok(false);
    };
    let pass = Pass {
        tenant: tenant.as_str(),
        app,
        expires,
        session,
    };
    if !csrf::verify_tag(PASS_PURPOSE, &pass.message(), tag) || expires <= now_secs() {
        return Ok(false);
    }
    let Some((session, user)) = state.store().find_session(session).await? else {
        return Ok(false);
    };
    let alive = session.expires_at > jiff::Timestamp::now();
    Ok(alive && (user.role.is_admin() || &user.tenant == tenant))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AppRecord {
        AppRecord {
            tenant: TenantId::new("acme").unwrap(),
            id: "board".into(),
            name: "Board".into(),
            key_id: "k".into(),
            key_secret: "fk_\"<x>&".into(),
            files: 1,
            bytes: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn settings_go_right_after_the_head_tag_escaped() {
        let page = b"<!doctype html><HTML><Head lang=en><title>t</title></head>".to_vec();
        let out = String::from_utf8(with_settings_meta(page, &record())).unwrap();
        let at = out.find("<meta name=\"ferrule\"").unwrap();
        assert_eq!(&out[..at], "<!doctype html><HTML><Head lang=en>");
        assert!(out.contains("fk_\\&quot;&lt;x&gt;&amp;"), "{out}");
        assert!(!out.contains("<x>"));
    }

    #[test]
    fn a_page_without_head_gets_the_settings_first() {
        let out = with_settings_meta(b"<p>hi</p>".to_vec(), &record());
        assert!(out.starts_with(b"<meta name=\"ferrule\""));
        assert!(out.ends_with(b"<p>hi</p>"));
    }

    #[test]
    fn a_pass_is_bound_to_its_app_tenant_expiry_and_session() {
        let pass = Pass {
            tenant: "acme",
            app: "board",
            expires: 10,
            session: "abc",
        };
        let encoded = pass.encode();
        let tag = encoded.rsplit('.').next().unwrap();
        assert!(csrf::verify_tag(PASS_PURPOSE, &pass.message(), tag));
        for other in [
            Pass {
                app: "other",
                ..pass
            },
            Pass {
                tenant: "evil",
                ..pass
            },
            Pass {
                expires: 11,
                ..pass
            },
            Pass {
                session: "abd",
                ..pass
            },
        ] {
            assert!(!csrf::verify_tag(PASS_PURPOSE, &other.message(), tag));
        }
    }
}
