//! The API's routes, declared once for both axum and OpenAPI.

pub(crate) mod acl_rules;
pub(crate) mod alarms;
mod api_docs;
pub(crate) mod api_keys;
pub(crate) mod app_bundle;
pub(crate) mod apps;
pub(crate) mod auth;
pub(crate) mod commands;
mod contract;
pub(crate) mod credentials;
pub(crate) mod dashboard_widgets;
pub(crate) mod dashboards;
pub(crate) mod dead_letters;
pub(crate) mod device_attributes;
pub(crate) mod device_filter;
pub(crate) mod devices;
pub(crate) mod events;
mod export;
mod ingest;
mod mqtt_ws;
mod ops;
pub(crate) mod profiles;
pub(crate) mod rules;
pub(crate) mod security_headers;
pub(crate) mod shared;
pub mod stream;
pub(crate) mod system;
pub mod system_backup;
pub mod system_import;
pub(crate) mod telemetry;
pub(crate) mod telemetry_settings;
mod tenants;
pub(crate) mod twin;
pub(crate) mod users;
pub(crate) mod views;
mod vocabulary;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::observe::HttpRequestCompleted;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Ferrule API", description = "Self-hosted IoT backend: identities, devices, telemetry."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "auth", description = "Log in and out"),
        (name = "tenants", description = "Tenants (admin only)"),
        (name = "users", description = "Users of a tenant"),
        (name = "api-keys", description = "API keys of a tenant"),
        (name = "devices", description = "Devices and their credentials"),
        (name = "acl-rules", description = "Who may publish and subscribe where over MQTT"),
        (name = "telemetry", description = "Telemetry history, events, export and retention"),
        (name = "twin", description = "Device twins (reported, desired, delta, history) and commands"),
        (name = "ingest", description = "Devices without MQTT send here with their access token"),
        (name = "alarms", description = "Alarms raised by rules or by hand: list, acknowledge, clear"),
        (name = "stream", description = "Live messages of the tenant over a WebSocket"),
        (name = "rules", description = "SQL rules on every message, their actions, dry runs and dead letters"),
        (name = "dashboards", description = "Dashboards of widgets: saved layouts, export and import, read-only share links"),
        (name = "ops", description = "Health, readiness, metrics, the server's load and capacity, backups and tenant imports, this document"),
        (name = "apps", description = "Custom apps: a tenant's own HTML5 pages, served under /apps/{tenant}/{app}/ with an API key of their own"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every documented route, with its OpenAPI description.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::get, tenants::update, tenants::delete))
        .routes(routes!(system_import::import))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(api_keys::list, api_keys::create))
        .routes(routes!(api_keys::get, api_keys::revoke))
        .routes(routes!(devices::list, devices::create))
        .routes(routes!(devices::get, devices::update, devices::delete))
        .routes(routes!(devices::patch_attributes))
        .routes(routes!(profiles::list, profiles::create))
        .routes(routes!(profiles::get, profiles::replace, profiles::delete))
        .routes(routes!(credentials::list, credentials::create))
        .routes(routes!(credentials::delete))
        .routes(routes!(credentials::rotate))
        .routes(routes!(acl_rules::list, acl_rules::create))
        .routes(routes!(
            acl_rules::get,
            acl_rules::update,
            acl_rules::delete
        ))
        .routes(routes!(telemetry::history))
        .routes(routes!(telemetry::latest))
        .routes(routes!(telemetry::keys))
        .routes(routes!(telemetry::across))
        .routes(routes!(events::list))
        .routes(routes!(export::export))
        .routes(routes!(
            telemetry_settings::get,
            telemetry_settings::put,
            telemetry_settings::patch
        ))
        .routes(routes!(telemetry_settings::run))
        .routes(routes!(twin::get, twin::patch))
        .routes(routes!(twin::history))
        .routes(routes!(commands::list))
        .routes(routes!(commands::send, commands::get))
        .routes(routes!(rules::list, rules::create))
        .routes(routes!(rules::get, rules::replace, rules::delete))
        .routes(routes!(rules::enable))
        .routes(routes!(rules::disable))
        .routes(routes!(rules::test))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::get, dead_letters::delete))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(alarms::list, alarms::raise))
        .routes(routes!(alarms::get))
        .routes(routes!(alarms::acknowledge))
        .routes(routes!(alarms::clear))
        .routes(routes!(alarms::list_of_device))
        .routes(routes!(dashboards::list, dashboards::create))
        .routes(routes!(dashboards::import))
        .routes(routes!(
            dashboards::get,
            dashboards::replace,
            dashboards::delete
        ))
        .routes(routes!(dashboards::share, dashboards::unshare))
        .routes(routes!(dashboards::export))
        .routes(routes!(apps::list, apps::create))
        .routes(routes!(apps::get, apps::replace, apps::delete))
        .routes(routes!(shared::open))
        .routes(routes!(ingest::telemetry))
        .routes(routes!(ingest::event))
        .routes(routes!(ingest::state_reported))
        .routes(routes!(stream::open))
        .routes(routes!(system::get))
        .routes(routes!(system_backup::backup))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(api_docs::page))
        .routes(routes!(api_docs::stylesheet))
}

/// The OpenAPI document of every route, with what all routes share.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut api = api_router().split_for_parts().1;
    contract::complete(&mut api);
    api
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (router, mut api) = api_router().split_for_parts();
    contract::complete(&mut api);
    let docs = api_docs::ApiDocsPage::render(&api).expect("the API reference template renders");
    let api = std::sync::Arc::new(api);
    router
        .route("/mqtt", axum::routing::get(mqtt_ws::upgrade))
        .merge(crate::console::routes())
        .merge(crate::console::app_routes())
        .layer(axum::Extension(api))
        .layer(axum::Extension(docs))
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(middleware::from_fn(security_headers::add))
        // Outside the routes: a preflight must not meet the 405 fallback.
        .layer(cors())
        .layer(middleware::from_fn(record_request))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a request handler panicked".into()).into_response()
        }))
        .with_state(state)
}

/// `/api/v1` answers pages of any origin that call it with a bearer token —
/// custom apps run sandboxed, in an opaque origin (see
/// `console::app_files`), and customers' own front ends live elsewhere.
/// Safe because `/api/v1` authenticates only by the `Authorization` header
/// (or a stream's `access_token`), never by cookie: another site's page can
/// do no more than its own token allows. No credentials mode, so browsers
/// never attach cookies to these calls.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{Method, header};
    tower_http::cors::CorsLayer::new()
        // Any origin, echoed, on the API only: the console's pages and the
        // apps' files are for this origin alone.
        .allow_origin(tower_http::cors::AllowOrigin::predicate(|_, parts| {
            parts.uri.path().starts_with("/api/v1/")
        }))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            axum::http::HeaderName::from_static("x-tenant"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            header::CONTENT_DISPOSITION,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Counts and times every request by its route template.
async fn record_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let resp = next.run(req).await;
    HttpRequestCompleted {
        route: &route,
        method: method.as_str(),
        status: resp.status().as_u16(),
        elapsed: start.elapsed(),
    }
    .emit();
    resp
}
