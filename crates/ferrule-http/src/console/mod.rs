//! The web console: server-rendered pages at `/` for people, on the same
//! services as the API.
//!
//! - [`session`]: login sessions in an HttpOnly cookie (the API's sessions,
//!   never accepted by `/api/v1`), an admin's tenant switch.
//! - [`csrf`]: every state-changing request carries a token bound to the
//!   session and comes from this origin; [`guard`] checks it before any
//!   handler runs.
//! - [`page`]: embedded minijinja templates (autoescaped), the shared
//!   layout, error pages; console pages get their own CSP (our scripts
//!   only, nothing inline).
//! - [`assets`]: our CSS/JS and vendored htmx and uPlot at content-hashed,
//!   immutable URLs.
//! - Pages: [`login`], [`overview`], [`devices`], [`device`],
//!   [`profiles`] (device profiles); [`live`]
//!   carries the live stream to the device page; [`rules`]; [`dashboards`]
//!   (and the public `/share/{token}` page of a shared dashboard);
//!   [`settings`] (retention and disk budget) with [`acl`] (MQTT access
//!   rules).
//!
//! Handlers call the API's own route functions or services with a
//! [`crate::Caller`] built from the session, so role rules, validation and
//! tenant scoping are the API's, written once.

mod access;
mod acl;
mod alarms;
mod app_files;
mod apps;
mod assets;
mod csrf;
mod dashboards;
mod device;
mod device_panels;
mod devices;
mod form;
mod live;
mod login;
mod overview;
mod page;
mod profiles;
mod rules;
mod session;
mod settings;

pub use app_files::routes as app_routes;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// The largest console form accepted (the CSRF check reads it whole).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The console's routes, merged into the application by `routes::app`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/overview/stats", get(overview::stats))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/tenant", post(login::switch_tenant))
        .route("/devices", get(devices::list).post(devices::create))
        .route("/devices/{id}", get(device::page))
        .route("/devices/{id}/latest", get(device::latest))
        .route("/devices/{id}/history", get(device::history))
        .route(
            "/devices/{id}/delete",
            get(devices::confirm_delete).post(devices::delete),
        )
        .route(
            "/devices/{id}/credentials/{credential}/rotate",
            post(devices::rotate),
        )
        .route(
            "/devices/{id}/credentials/{credential}/revoke",
            post(devices::revoke),
        )
        .route("/live", get(live::open))
        // Only the static assets are compressed: pages carry the CSRF
        // token beside text a user typed, which compression would let an
        // attacker guess (BREACH).
        .route(
            "/assets/{file}",
            get(assets::serve).layer(tower_http::compression::CompressionLayer::new()),
        )
        .route("/devices/{id}/twin", post(device_panels::patch_twin))
        .route(
            "/devices/{id}/commands",
            get(device_panels::outbox).post(device_panels::send_command),
        )
        .route("/alarms", get(alarms::list))
        .route("/alarms/{id}/ack", post(alarms::acknowledge))
        .route("/alarms/{id}/clear", post(alarms::clear))
        .route("/access", get(access::page))
        .route("/access/users", post(access::create_user))
        .route("/access/users/{id}/role", post(access::change_role))
        .route("/access/api-keys", post(access::create_key))
        .route(
            "/access/{kind}/{id}/delete",
            get(access::confirm).post(access::delete),
        )
        .route("/profiles", get(profiles::list).post(profiles::create))
        .route("/profiles/new", get(profiles::new))
        .route("/profiles/{name}", get(profiles::show).post(profiles::save))
        .route(
            "/profiles/{name}/delete",
            get(profiles::confirm_delete).post(profiles::delete),
        )
        .route("/rules", get(rules::list).post(rules::create))
        .route("/rules/new", get(rules::new))
        .route("/rules/test", post(rules::test))
        .route("/rules/{id}", get(rules::show).post(rules::save))
        .route("/rules/{id}/enable", post(rules::enable))
        .route("/rules/{id}/disable", post(rules::disable))
        .route("/rules/{id}/delete", post(rules::delete))
        .route(
            "/rules/{id}/dead-letters/{letter}/replay",
            post(rules::replay),
        )
        .route(
            "/rules/{id}/dead-letters/{letter}/delete",
            post(rules::delete_letter),
        )
        .route(
            "/dashboards",
            get(dashboards::list).post(dashboards::create),
        )
        .route("/dashboards/import", post(dashboards::import))
        .route("/dashboards/{id}", get(dashboards::show))
        .route("/dashboards/{id}/data", get(dashboards::data))
        .route("/dashboards/{id}/delete", post(dashboards::delete))
        .route("/dashboards/{id}/widgets", post(dashboards::add_widget))
        .route(
            "/dashboards/{id}/widgets/{widget}/delete",
            post(dashboards::remove_widget),
        )
        .route(
            "/dashboards/{id}/widgets/{widget}/command",
            post(dashboards::command),
        )
        .route("/dashboards/{id}/layout", post(dashboards::save_layout))
        .route("/dashboards/{id}/share", post(dashboards::share))
        .route("/dashboards/{id}/unshare", post(dashboards::unshare))
        .route("/dashboards/{id}/export", get(dashboards::export))
        .route("/share/{token}", get(dashboards::shared_page))
        .route("/settings", get(settings::page))
        .route("/settings/retention", post(settings::save_retention))
        .route("/settings/acl", post(acl::create))
        .route("/settings/acl/{id}", get(acl::show).post(acl::save))
        .route("/settings/acl/{id}/delete", post(acl::delete))
        // `-` is no tenant id: these never meet an app's own pages
        // (`/apps/{tenant}/{app}/…`, see `app_files`).
        .route("/apps", get(apps::list))
        .route("/apps/-/upload", post(apps::upload))
        .route("/apps/-/{app}/replace", post(apps::replace))
        .route("/apps/-/{app}/delete", post(apps::delete))
        .layer(middleware::from_fn(guard))
        .layer(middleware::map_response(content_security_policy))
}

/// Console HTML gets the console's policy; `security_headers` fills in the
/// stricter default for every other page (`/api/docs`).
async fn content_security_policy(mut resp: Response) -> Response {
    let html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(page::CONTENT_SECURITY_POLICY),
        );
        // Same-origin requests keep their `Origin` (the CSRF check reads
        // it); other sites learn nothing of the console's URLs.
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    resp
}

/// Refuses a state-changing request that is not from one of our own pages:
/// a foreign origin, or no valid CSRF token for the session. Runs before
/// the handler, so a refused request changes nothing.
async fn guard(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    if !csrf::same_origin(&parts) {
        return forged("This request came from another site. Use the console's own pages.");
    }
    // The login form has no session yet: its handler checks the token it
    // bound to the pre-login cookie.
    if parts.uri.path() == "/login" {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let Some(session) = session::session_token(&parts.headers).map(str::to_owned) else {
        return Redirect::to("/login").into_response();
    };
    if let Some(presented) = parts.headers.get(csrf::HEADER) {
        let ok = presented
            .to_str()
            .is_ok_and(|p| csrf::verify_session(&session, p));
        return if ok {
            next.run(Request::from_parts(parts, body)).await
        } else {
            forged(STALE)
        };
    }
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return page::Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                format!("Console forms are limited to {MAX_FORM_BYTES} bytes."),
            )
            .into_response();
        }
    };
    let presented = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == csrf::FIELD)
        .map(|(_, v)| v.into_owned());
    match presented {
        Some(p) if csrf::verify_session(&session, &p) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => forged(STALE),
    }
}

const STALE: &str = "This form is out of date or did not come from the console \
     (for example, the server restarted since the page was loaded). \
     Reload the page and try again.";

fn forged(detail: &'static str) -> Response {
    page::Failure::new(StatusCode::FORBIDDEN, "Request refused", detail).into_response()
}
