//! Console sessions: the login session's token in an HttpOnly cookie, and
//! an admin's chosen tenant in a second cookie, both checked on every
//! request.
//!
//! The session is the same one `POST /api/v1/auth/login` issues (same
//! store, lifetime, throttling and logout), but the cookie is read only
//! here: `/api/v1` keeps Bearer tokens, so a cookie a browser sends on its
//! own never authenticates an API call.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use ferrule_core::secret::TokenKind;
use ferrule_core::{PrincipalKind, TenantId};
use ferrule_store::AuthError;

use super::csrf;
use super::page::Failure;
use crate::Caller;
use crate::server::OverTls;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "ferrule_session";
pub const TENANT_COOKIE: &str = "ferrule_tenant";
/// The pre-login nonce the login form's CSRF token is bound to.
pub const LOGIN_COOKIE: &str = "ferrule_login";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session token of the request's cookie, if it looks like one (an API
/// key or device token in the cookie is ignored).
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE).filter(|t| TokenKind::of(t) == Some(TokenKind::Session))
}

/// `Set-Cookie` for a console cookie: HttpOnly, SameSite=Lax, the whole
/// site, and `Secure` when the request came over HTTPS. `max_age` zero
/// deletes it; `None` makes it last as long as the browser session.
pub fn set_cookie(
    parts_secure: bool,
    name: &str,
    value: &str,
    max_age: Option<i64>,
) -> HeaderValue {
    let mut c = format!("{name}={value}; HttpOnly; SameSite=Lax; Path=/");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if parts_secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Whether the request came over the HTTPS listener.
pub fn secure(parts: &Parts) -> bool {
    parts.extensions.get::<OverTls>().is_some()
}

/// Where to go after login: a path on this site only. Anything else —
/// another host (`//evil`, `https://…`, `/\evil`), control characters —
/// goes to the overview, so a crafted link cannot send a user elsewhere.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// A logged-in console user, acting in a tenant.
#[derive(Debug, Clone)]
pub struct Console {
    pub caller: Caller,
    /// For the forms and `hx-headers` of pages rendered for this session.
    pub csrf: String,
    /// The session token, to end the session on logout.
    pub(super) token: String,
    pub secure: bool,
}

impl Console {
    pub fn is_admin(&self) -> bool {
        self.caller.role.is_admin()
    }
}

/// Why a request has no console session: sent to the login page.
pub struct LoginFirst {
    next: String,
    htmx: bool,
}

impl IntoResponse for LoginFirst {
    fn into_response(self) -> Response {
        let target = format!(
            "/login?next={}",
            form_urlencoded::byte_serialize(self.next.as_bytes()).collect::<String>()
        );
        if self.htmx {
            // htmx would swap the login page into a fragment; it follows
            // this header with a full page load instead.
            let mut r = axum::http::StatusCode::NO_CONTENT.into_response();
            if let Ok(v) = HeaderValue::from_str(&target) {
                r.headers_mut().insert("hx-redirect", v);
            }
            r
        } else {
            Redirect::to(&target).into_response()
        }
    }
}

pub enum NoSession {
    Login(LoginFirst),
    Failed(Failure),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Login(l) => l.into_response(),
            NoSession::Failed(f) => f.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NoSession> {
        let login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            // A fragment's own URL is no page to come back to.
            let htmx = parts.headers.contains_key("hx-request");
            let next = if htmx {
                parts
                    .headers
                    .get("hx-current-url")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|u| u.split_once("://"))
                    .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
                    .unwrap_or_else(|| "/".into())
            } else {
                next.to_owned()
            };
            NoSession::Login(LoginFirst {
                next: local_path(Some(&next)),
                htmx,
            })
        };
        let Some(token) = session_token(&parts.headers).map(str::to_owned) else {
            return Err(login());
        };
        let principal = match state.identity.authenticate_bearer(&token).await {
            Ok(p) => p,
            Err(AuthError::Store(e)) => {
                return Err(NoSession::Failed(crate::error::ApiError::from(e).into()));
            }
            Err(_) => return Err(login()),
        };
        let PrincipalKind::User { role, .. } = principal.kind else {
            return Err(login());
        };
        let mut tenant = principal.tenant.clone();
        // An admin's chosen tenant, checked again on every request: a
        // deleted tenant falls back to the admin's own. Anyone else's
        // cookie is ignored: they never leave their tenant.
        if role.is_admin()
            && let Some(chosen) = cookie(&parts.headers, TENANT_COOKIE)
            && let Ok(chosen) = TenantId::new(chosen)
            && state.store().get_tenant(&chosen).await.is_ok()
        {
            tenant = chosen;
        }
        Ok(Console {
            csrf: csrf::session_token(&token),
            caller: Caller {
                principal,
                tenant,
                role,
            },
            token,
            secure: secure(parts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/devices?q=a")), "/devices?q=a");
        for bad in [
            "//evil.io",
            "https://evil.io",
            "/\\evil.io",
            "\\\\evil.io",
            "evil.io",
            "/\nLocation: x",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x_ferrule_session=no; ferrule_session=fs_1"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("fs_1"));
        assert_eq!(cookie(&h, TENANT_COOKIE), None);
    }
}
