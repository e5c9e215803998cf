//! `GET/POST /login`, `POST /logout`, and an admin's `POST /tenant`.

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use ferrule_core::TenantId;
use ferrule_store::AuthError;
use minijinja::context;
use serde::Deserialize;

use super::csrf;
use super::form;
use super::page::{self, Failure};
use super::session::{
    self, Console, LOGIN_COOKIE, SESSION_COOKIE, TENANT_COOKIE, local_path, set_cookie,
};
use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::state::AppState;

/// How long a login form stays valid.
const LOGIN_FORM_SECONDS: i64 = 3600;

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

fn login_page(
    status: StatusCode,
    nonce: &str,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Result<Response, Failure> {
    let body = page::render(
        "login.html",
        context! {
            csrf => csrf::login_token(nonce),
            next => next,
            email => email,
            error => error,
            version => env!("CARGO_PKG_VERSION"),
        },
    )?;
    Ok(page::html(status, body))
}

fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The login form. A browser already logged in goes straight on.
pub async fn form(
    State(state): State<AppState>,
    parts: Parts,
    Query(q): Query<NextQuery>,
) -> Result<Response, Failure> {
    let next = local_path(q.next.as_deref());
    if let Some(token) = session::session_token(&parts.headers)
        && state.identity.authenticate_bearer(token).await.is_ok()
    {
        return Ok(Redirect::to(&next).into_response());
    }
    let nonce = session::cookie(&parts.headers, LOGIN_COOKIE)
        .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or_else(new_nonce);
    let mut resp = login_page(StatusCode::OK, &nonce, &next, "", None)?;
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            session::secure(&parts),
            LOGIN_COOKIE,
            &nonce,
            Some(LOGIN_FORM_SECONDS),
        ),
    );
    Ok(resp)
}

/// Checks the password with the API's login (same throttling and lockout)
/// and starts a session in a new cookie.
pub async fn submit(
    State(state): State<AppState>,
    ClientIp(source): ClientIp,
    parts: Parts,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: LoginForm = form::parse(&body)?;
    let next = local_path(f.next.as_deref());
    let Some(nonce) = session::cookie(&parts.headers, LOGIN_COOKIE).map(str::to_owned) else {
        return Err(expired_form());
    };
    if !csrf::verify_login(&nonce, &f.csrf) {
        return Err(expired_form());
    }
    let issued = match state.identity.login(&f.email, &f.password, source).await {
        Ok(s) => s,
        Err(e) => {
            let (status, message, retry_after) = match e {
                AuthError::Invalid
                | AuthError::Disabled
                | AuthError::Expired
                | AuthError::Revoked => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong email or password. Check both and try again.".to_owned(),
                    None,
                ),
                // Backoff and a busy hashing pool: the API's words and wait.
                e => {
                    let api = ApiError::from(e);
                    let retry_after = match &api {
                        ApiError::TooManyRequests { retry_after, .. }
                        | ApiError::Busy { retry_after, .. } => Some(*retry_after),
                        _ => None,
                    };
                    let (status, _, detail, _) = api.parts();
                    (status, format!("Login failed: {detail}."), retry_after)
                }
            };
            let mut page = login_page(status, &nonce, &next, &f.email, Some(&message))?;
            if let Some(seconds) = retry_after {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            return Ok(page);
        }
    };
    let secure = session::secure(&parts);
    let lifetime = (issued.expires_at.as_second() - jiff::Timestamp::now().as_second()).max(1);
    let mut resp = Redirect::to(&next).into_response();
    let headers = resp.headers_mut();
    // A new token every login: a session cookie planted before login
    // (fixation) is replaced, never adopted.
    headers.append(
        header::SET_COOKIE,
        set_cookie(secure, SESSION_COOKIE, &issued.token, Some(lifetime)),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(secure, TENANT_COOKIE, "", Some(0)),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(secure, LOGIN_COOKIE, "", Some(0)),
    );
    Ok(resp)
}

fn expired_form() -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        "Login form expired",
        "This login form is out of date or did not come from this site. \
         Open the login page again and sign in there.",
    )
}

/// Ends the session on the server (as the API's logout) and clears the
/// cookies.
pub async fn logout(State(state): State<AppState>, console: Console) -> Response {
    if let Err(e) = state.identity.logout(&console.token).await {
        return Failure::from(ApiError::from(e)).into_response();
    }
    let mut resp = Redirect::to("/login").into_response();
    clear_cookies(resp.headers_mut(), console.secure);
    resp
}

fn clear_cookies(headers: &mut HeaderMap, secure: bool) {
    for name in [SESSION_COOKIE, TENANT_COOKIE] {
        headers.append(header::SET_COOKIE, set_cookie(secure, name, "", Some(0)));
    }
}

#[derive(Debug, Deserialize)]
pub struct TenantForm {
    tenant: String,
}

/// An admin acts in another tenant (the API's `X-Tenant`); remembered in a
/// cookie that every request checks again.
pub async fn switch_tenant(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: TenantForm = form::parse(&body)?;
    if !console.is_admin() {
        return Err(ApiError::Forbidden("only admins may act in another tenant").into());
    }
    let tenant = TenantId::new(f.tenant.trim())
        .map_err(|_| ApiError::invalid("tenant", "not a valid tenant id"))?;
    state
        .store()
        .get_tenant(&tenant)
        .await
        .map_err(ApiError::from)?;
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(console.secure, TENANT_COOKIE, tenant.as_str(), None),
    );
    Ok(resp)
}
