//! Alarms: list with filters, read, raise by hand, acknowledge, clear.
//!
//! The alarms service (`ferrule_rules::alarms`) owns the states and
//! publishes every transition; these routes only translate.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrule_rules::alarms::{AlarmError, AlarmView, Alarms, Raise, Transition};
use ferrule_store::alarms::{AlarmFilter, AlarmRecord, AlarmState, Severity};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::devices::device_id;
use super::telemetry::parse_time;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// An alarm (the same shape as the `alarm` of its live-stream messages).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Alarm)]
pub struct AlarmDoc {
    pub id: u64,
    /// The device it is about; absent for an alarm about no one device.
    pub device: Option<String>,
    #[serde(rename = "type")]
    pub alarm_type: String,
    /// `critical`, `major`, `minor`, `warning` or `indeterminate`.
    pub severity: String,
    /// `active`, `acknowledged` or `cleared`.
    pub state: String,
    /// Any JSON.
    pub details: Value,
    /// How many times it was raised while open.
    pub count: u64,
    #[schema(format = DateTime)]
    pub first_seen: String,
    #[schema(format = DateTime)]
    pub last_seen: String,
    /// Who raised it: `rule:ID`, `user:ID` or `key:ID`.
    pub originator: String,
    pub acknowledged_by: Option<String>,
    #[schema(format = DateTime)]
    pub acknowledged_at: Option<String>,
    pub cleared_by: Option<String>,
    #[schema(format = DateTime)]
    pub cleared_at: Option<String>,
}

fn view(a: AlarmRecord) -> AlarmView {
    AlarmView::from(&a)
}

/// The alarms service, or 503.
fn alarms(state: &AppState) -> Result<&Alarms, ApiError> {
    state
        .rules
        .as_ref()
        .map(|r| &r.alarms)
        .ok_or_else(|| ApiError::Unavailable("the rules services are not running".into()))
}

fn alarm_error(e: AlarmError) -> ApiError {
    match e {
        AlarmError::NotFound => ApiError::NotFound("alarm"),
        AlarmError::DeviceNotFound => ApiError::NotFound("device"),
        AlarmError::Invalid(why) => ApiError::Invalid {
            field: None,
            detail: why,
        },
        AlarmError::Conflict(why) => ApiError::Conflict(why),
        e @ AlarmError::TooManyOpen { .. } => ApiError::Conflict(e.to_string()),
        e @ AlarmError::Busy => ApiError::Busy {
            detail: e.to_string(),
            retry_after: 1,
        },
        AlarmError::Store(e) => e.into(),
    }
}

/// An alarm id: any other text names no alarm.
fn alarm_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound("alarm"))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlarmSeverityName {
    Critical,
    Major,
    Minor,
    Warning,
    Indeterminate,
}

impl From<AlarmSeverityName> for Severity {
    fn from(s: AlarmSeverityName) -> Self {
        match s {
            AlarmSeverityName::Critical => Severity::Critical,
            AlarmSeverityName::Major => Severity::Major,
            AlarmSeverityName::Minor => Severity::Minor,
            AlarmSeverityName::Warning => Severity::Warning,
            AlarmSeverityName::Indeterminate => Severity::Indeterminate,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlarmStateName {
    Active,
    Acknowledged,
    Cleared,
}

impl From<AlarmStateName> for AlarmState {
    fn from(s: AlarmStateName) -> Self {
        match s {
            AlarmStateName::Active => AlarmState::Active,
            AlarmStateName::Acknowledged => AlarmState::Acknowledged,
            AlarmStateName::Cleared => AlarmState::Cleared,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only alarms in this state (cleared ones are the history).
    #[param(inline)]
    pub state: Option<AlarmStateName>,
    #[param(inline)]
    pub severity: Option<AlarmSeverityName>,
    /// Only this device's alarms.
    pub device: Option<String>,
    /// Only alarms of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub alarm_type: Option<String>,
    /// Last seen at or after: ms since the Unix epoch or RFC 3339.
    #[param(schema_with = super::vocabulary::time_param)]
    pub from: Option<String>,
    /// Last seen before: ms since the Unix epoch or RFC 3339.
    #[param(schema_with = super::vocabulary::time_param)]
    pub to: Option<String>,
    /// Alarms per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

impl ListQuery {
    /// The filter, with `device` left out: a device id that cannot exist
    /// is the caller's to decide on, after every other parameter checked.
    fn filter(&self) -> Result<AlarmFilter, ApiError> {
        Ok(AlarmFilter {
            device: None,
            alarm_type: self.alarm_type.clone(),
            severity: self.severity.map(Into::into),
            state: self.state.map(Into::into),
            from: self
                .from
                .as_deref()
                .map(|v| parse_time("from", v))
                .transpose()?,
            to: self
                .to
                .as_deref()
                .map(|v| parse_time("to", v))
                .transpose()?,
        })
    }

    fn page(&self) -> Result<ferrule_store::PageRequest, ApiError> {
        PageQuery {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
        .to_request()
    }
}

async fn list_with(
    state: &AppState,
    caller: &Caller,
    filter: AlarmFilter,
    q: &ListQuery,
) -> ApiResult<Json<Paged<AlarmView>>> {
    let page = alarms(state)?
        .list(&caller.tenant, &filter, &q.page()?)
        .await
        .map_err(alarm_error)?;
    Ok(Json(Paged::from_page(page, view)))
}

/// Lists the tenant's alarms, most recently seen first.
#[utoipa::path(get, operation_id = "listAlarms", path = "/api/v1/alarms", tag = "alarms",
    params(ListQuery),
    responses((status = 200, body = Paged<AlarmDoc>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paged<AlarmView>>> {
    let mut filter = q.filter()?;
    q.page()?;
    match q.device.as_deref().map(device_id).transpose() {
        Ok(device) => filter.device = device,
        // A device id that cannot exist has no alarms (once the rest of
        // the query is known to be valid).
        Err(_) => {
            return Ok(Json(Paged {
                items: Vec::new(),
                next_cursor: None,
            }));
        }
    }
    list_with(&state, &caller, filter, &q).await
}

/// Lists a device's alarms, most recently seen first (the same filters).
#[utoipa::path(get, operation_id = "listDeviceAlarms", path = "/api/v1/devices/{id}/alarms", tag = "alarms",
    params(("id" = String, Path), ListQuery),
    responses((status = 200, body = Paged<AlarmDoc>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn list_of_device(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paged<AlarmView>>> {
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let filter = AlarmFilter {
        device: Some(device),
        ..q.filter()?
    };
    list_with(&state, &caller, filter, &q).await
}

/// Reads one alarm.
#[utoipa::path(get, operation_id = "getAlarm", path = "/api/v1/alarms/{id}", tag = "alarms",
    params(("id" = String, Path, description = "The alarm's id (a number)")),
    responses((status = 200, body = AlarmDoc), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AlarmView>> {
    let found = alarms(&state)?
        .get(&caller.tenant, alarm_id(&id)?)
        .await
        .map_err(alarm_error)?;
    Ok(Json(view(found)))
}

/// An alarm raised by hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RaiseAlarm {
    /// The device it is about; none for an alarm about no one device.
    pub device: Option<String>,
    /// 1 to 128 printable characters, e.g. `overheat`.
    #[serde(rename = "type")]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub alarm_type: String,
    /// `major` unless given.
    pub severity: Option<AlarmSeverityName>,
    /// Any JSON, at most 16 KiB; `null` unless given.
    pub details: Option<Value>,
}

/// The alarm and what raising did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Raised {
    #[schema(value_type = AlarmDoc)]
    pub alarm: AlarmView,
    /// `raised` (a new alarm) or `updated` (the open alarm of that device
    /// and type, raised again: count + 1).
    #[schema(value_type = Object)]
    pub transition: Transition,
}

/// Raises an alarm by hand (the caller is its originator). While an alarm
/// of the same device and type is open, it is raised again instead: count
/// + 1, last seen now, severity and details replaced.
#[utoipa::path(post, operation_id = "raiseAlarm", path = "/api/v1/alarms", tag = "alarms",
    request_body = RaiseAlarm,
    responses((status = 201, body = Raised), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem, description = "No such device"),
        (status = 409, body = Problem, description = "The tenant has too many open alarms"),
        (status = 503, body = Problem)))]
pub async fn raise(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<RaiseAlarm>,
) -> ApiResult<(StatusCode, Json<Raised>)> {
    caller.require_write()?;
    let device = req.device.as_deref().map(device_id).transpose()?;
    let (transition, alarm) = alarms(&state)?
        .raise(Raise {
            tenant: caller.tenant.clone(),
            device,
            alarm_type: req.alarm_type,
            severity: req.severity.map_or(Severity::Major, Into::into),
            details: req.details.unwrap_or(Value::Null),
            originator: caller.principal.session_owner(),
        })
        .await
        .map_err(alarm_error)?;
    Ok((
        StatusCode::CREATED,
        Json(Raised {
            alarm: view(alarm),
            transition,
        }),
    ))
}

/// Acknowledges an active alarm (someone is on it). A cleared or already
/// acknowledged alarm is a 409.
#[utoipa::path(post, operation_id = "acknowledgeAlarm", path = "/api/v1/alarms/{id}/ack", tag = "alarms",
    params(("id" = String, Path, description = "The alarm's id (a number)")),
    responses((status = 200, body = AlarmDoc), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "Not active"),
        (status = 503, body = Problem)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AlarmView>> {
    caller.require_write()?;
    let alarm = alarms(&state)?
        .acknowledge(
            &caller.tenant,
            alarm_id(&id)?,
            &caller.principal.session_owner(),
        )
        .await
        .map_err(alarm_error)?;
    Ok(Json(view(alarm)))
}

/// Clears an open alarm; it stays in the history (`state=cleared`). An
/// alarm already cleared is a 409.
#[utoipa::path(post, operation_id = "clearAlarm", path = "/api/v1/alarms/{id}/clear", tag = "alarms",
    params(("id" = String, Path, description = "The alarm's id (a number)")),
    responses((status = 200, body = AlarmDoc), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "Already cleared"),
        (status = 503, body = Problem)))]
pub async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AlarmView>> {
    caller.require_write()?;
    let alarm = alarms(&state)?
        .clear(
            &caller.tenant,
            alarm_id(&id)?,
            &caller.principal.session_owner(),
        )
        .await
        .map_err(alarm_error)?;
    Ok(Json(view(alarm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented shape is the served one, field for field.
    #[test]
    fn the_documented_alarm_is_the_served_alarm() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(AlarmDoc::schema()).unwrap();
        let mut documented: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let record = AlarmRecord {
            tenant: ferrule_core::TenantId::new("t").unwrap(),
            id: 1,
            device: None,
            alarm_type: "x".into(),
            severity: Severity::Major,
            state: AlarmState::Active,
            details: Value::Null,
            count: 1,
            first_seen: 0,
            last_seen: 0,
            originator: "user:u".into(),
            acknowledged_by: None,
            acknowledged_at: None,
            cleared_by: None,
            cleared_at: None,
        };
        let served = serde_json::to_value(view(record)).unwrap();
        let mut served: Vec<String> = served.as_object().unwrap().keys().cloned().collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }

    /// The documented severities and states are exactly the store's.
    #[test]
    fn the_documented_vocabularies_are_the_domains() {
        use utoipa::PartialSchema;
        let names = |schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
            serde_json::to_value(schema).unwrap()["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        let severities = names(AlarmSeverityName::schema());
        let parsed: Vec<_> = severities
            .iter()
            .filter_map(|s| Severity::parse(s))
            .collect();
        assert_eq!(parsed, Severity::ALL);
        let states = names(AlarmStateName::schema());
        let parsed: Vec<_> = states.iter().filter_map(|s| AlarmState::parse(s)).collect();
        assert_eq!(
            parsed,
            [
                AlarmState::Active,
                AlarmState::Acknowledged,
                AlarmState::Cleared
            ]
        );
    }

    #[test]
    fn a_non_numeric_id_names_no_alarm() {
        assert!(matches!(alarm_id("abc"), Err(ApiError::NotFound("alarm"))));
        assert!(matches!(alarm_id("-1"), Err(ApiError::NotFound("alarm"))));
        assert_eq!(alarm_id("42").unwrap(), 42);
    }
}
