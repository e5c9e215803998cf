//! HTTP ingest for devices without MQTT: the same payloads, the same
//! validation and the same durability, because the request becomes a
//! message through the router's intake exactly like an MQTT publish.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use ferrule_core::{Message, Origin, QoS};

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{DeviceCaller, RawBody};
use crate::state::AppState;

/// How long a request waits for its data to be committed before giving up
/// with 503 (the data may still be stored; the client should retry, which
/// a timestamped payload makes harmless).
const DURABLE_WAIT: Duration = Duration::from_secs(30);

/// Publishes `body` on the device's `suffix` topic; returns once stored.
async fn ingest(
    state: &AppState,
    caller: &DeviceCaller,
    suffix: &str,
    body: Bytes,
) -> ApiResult<()> {
    let t = state.telemetry()?;
    // The tenant's rate limit, shared with its MQTT clients; HTTP cannot
    // be slowed by not reading, so it is told when to come back.
    if let Some(mqtt) = &state.mqtt
        && let Err(wait) = mqtt.broker.take_rate(&caller.tenant, body.len())
    {
        return Err(ApiError::TooManyRequests {
            detail: "the tenant is over its rate limit (limits.tenant_messages_per_sec, \
                     limits.tenant_bytes_per_sec); retry after the time given"
                .into(),
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    let topic = format!("devices/{}/{suffix}", caller.device);
    let message = Message::new(
        caller.tenant.clone(),
        topic.into(),
        body,
        QoS::AtLeastOnce,
        Origin::Api,
    );
    let published = t.router.publish(Arc::new(message));
    if let Some(refused) = published.refused {
        return Err(refused.into());
    }
    tokio::time::timeout(
        DURABLE_WAIT,
        t.router.durability().wait(published.durable_after),
    )
    .await
    .map_err(|_| ApiError::Unavailable("storage did not confirm the write in time; retry".into()))
}

/// Sends telemetry as the device whose token authenticates the request.
#[utoipa::path(post, operation_id = "ingestTelemetry", path = "/api/v1/ingest/telemetry", tag = "ingest",
    request_body(content = Object, description = "A telemetry payload as on MQTT: {\"KEY\": value}, {\"ts\", \"values\"}, or an array of either"),
    responses((status = 204, description = "Stored durably"),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem, description = "The device was deleted meanwhile"),
        (status = 503, body = Problem, description = "Storage is behind: retry after `Retry-After` seconds"),
        (status = 429, body = Problem, description = "The tenant is over its rate limit; see Retry-After"),
        (status = 507, body = Problem, description = "The tenant's disk budget is used up")))]
pub async fn telemetry(
    State(state): State<AppState>,
    caller: DeviceCaller,
    RawBody(body): RawBody,
) -> ApiResult<StatusCode> {
    ingest(&state, &caller, "telemetry", body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends an event as the device whose token authenticates the request.
#[utoipa::path(post, operation_id = "ingestEvent", path = "/api/v1/ingest/events/{type}", tag = "ingest",
    params(("type" = String, Path, description = "Event type, one topic level")),
    request_body(content = Object, description = "Any payload; JSON is returned as JSON"),
    responses((status = 204, description = "Stored durably"),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem, description = "The device was deleted meanwhile"),
        (status = 429, body = Problem, description = "The tenant is over its rate limit; see Retry-After")))]
pub async fn event(
    State(state): State<AppState>,
    caller: DeviceCaller,
    Path(event_type): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<StatusCode> {
    if event_type.is_empty() || event_type.len() > 128 || event_type.contains(['/', '+', '#', '\0'])
    {
        return Err(ApiError::invalid(
            "type",
            "must be one topic level of at most 128 bytes, without / + #",
        ));
    }
    ingest(&state, &caller, &format!("events/{event_type}"), body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reports the device's state as the device whose token authenticates the request.
#[utoipa::path(post, operation_id = "ingestReportedState", path = "/api/v1/ingest/state/reported", tag = "ingest",
    request_body(content = Object, description = "A JSON object of reported state"),
    responses((status = 202, description = "Merged into the device's twin and stored"),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem, description = "Over the twin's size limit (64 KiB)"),
        (status = 429, body = Problem, description = "The tenant is over its rate limit; see Retry-After")))]
pub async fn state_reported(
    State(state): State<AppState>,
    caller: DeviceCaller,
    RawBody(body): RawBody,
) -> ApiResult<StatusCode> {
    if body.len() > ferrule_twin::twin::MAX_DOCUMENT_BYTES {
        metrics::counter!("ferrule_twin_refused_total", "reason" => "too_large").increment(1);
        return Err(ApiError::TooLarge(format!(
            "reported state is {} bytes, over the limit of {}",
            body.len(),
            ferrule_twin::twin::MAX_DOCUMENT_BYTES
        )));
    }
    let object: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::Invalid {
            field: None,
            detail: format!("the body is not valid JSON: {e}"),
        })?;
    if !object.is_object() {
        return Err(ApiError::Invalid {
            field: None,
            detail: "reported state must be a JSON object".into(),
        });
    }
    ingest(&state, &caller, "state/reported", body).await?;
    Ok(StatusCode::ACCEPTED)
}
