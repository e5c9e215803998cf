//! A device's event log.

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferrule_store::telemetry::{self, Event};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::devices::device_id;
use super::telemetry::parse_range;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// ms since the Unix epoch or RFC 3339 (inclusive).
    #[param(schema_with = super::vocabulary::time_param)]
    pub from: Option<String>,
    /// ms since the Unix epoch or RFC 3339 (exclusive).
    #[param(schema_with = super::vocabulary::time_param)]
    pub to: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// A stored event. `payload` is the JSON the device sent; a payload that is
/// not JSON comes as a string, or as `payload_base64` when not UTF-8.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    pub device: String,
    pub ts: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

pub fn event_view(e: Event) -> EventView {
    let (payload, payload_base64) = match serde_json::from_slice(&e.payload) {
        Ok(v) => (Some(v), None),
        Err(_) => match String::from_utf8(e.payload) {
            Ok(s) => (Some(serde_json::Value::String(s)), None),
            Err(bytes) => (None, Some(STANDARD.encode(bytes.into_bytes()))),
        },
    };
    EventView {
        id: e.id,
        device: e.device.to_string(),
        ts: e.ts,
        event_type: e.event_type,
        payload,
        payload_base64,
    }
}

/// The page size and the cursor of a list paged by a number that only
/// grows (an event's id, a twin's version).
pub(super) fn numbered_page<T: std::str::FromStr>(
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(u32, Option<T>), ApiError> {
    let limit = PageQuery {
        limit,
        cursor: None,
    }
    .to_request()?
    .limit;
    let after = cursor
        .map(|c| {
            c.parse::<T>()
                .map_err(|_| ApiError::invalid("cursor", "not a cursor this server issued"))
        })
        .transpose()?;
    Ok((limit, after))
}

/// Lists a device's events in a time range, in the order they were stored
/// (oldest first); `next_cursor` pages forward.
#[utoipa::path(get, operation_id = "listEvents", path = "/api/v1/devices/{id}/events", tag = "telemetry",
    params(("id" = String, Path), EventQuery),
    responses((status = 200, body = Paged<EventView>), (status = 400, body = Problem),
        (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Paged<EventView>>> {
    let t = state.telemetry()?;
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let range = parse_range(q.from.as_deref(), q.to.as_deref())?;
    // An event's cursor is the id of the last event seen (ids only grow).
    let (limit, after) = numbered_page::<i64>(q.limit, q.cursor.as_deref())?;
    // One more than asked tells whether another page follows.
    let mut events = t
        .store
        .events(telemetry::EventQuery {
            event_type: q.event_type.clone(),
            after,
            ..telemetry::EventQuery::new(&caller.tenant, &device, range, limit as usize + 1)
        })
        .await?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_cursor = more
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(Paged {
        items: events.into_iter().map(event_view).collect(),
        next_cursor,
    }))
}
