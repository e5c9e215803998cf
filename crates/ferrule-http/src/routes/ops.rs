//! Operational endpoints: health, readiness, metrics, the API description.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// The process is up.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "ops", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Storage is reachable and every listener is bound.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "ops", security(()),
    responses((status = 200, body = Health), (status = 503, body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    if !state.readiness.is_ready() {
        return Err(ApiError::Unavailable("listeners are still starting".into()));
    }
    state
        .store()
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("storage unreachable: {e}")))?;
    Ok(Json(Health {
        status: "ready",
        version: env!("CARGO_PKG_VERSION"),
    }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "ops", security(()),
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, operation_id = "getOpenApiDocument", path = "/api/openapi.json", tag = "ops", security(()),
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_json(
    Extension(api): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> impl IntoResponse {
    Json(api.as_ref().clone())
}
