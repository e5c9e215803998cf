//! Commands to a device: send (waiting for the reply, or not), list, read.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrule_store::commands::{CommandRecord, CommandState};
use ferrule_twin::commands::{CommandError, NewCommand};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::devices::device_id;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, RawBody};
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// How long a request waits for the reply unless told.
const DEFAULT_TIMEOUT_SECS: f64 = 10.0;
/// The longest a request may wait.
const MAX_TIMEOUT_SECS: f64 = 300.0;
/// How long an asynchronous command waits in the outbox unless told.
const DEFAULT_TTL_SECS: u64 = 3600;
const MAX_TTL_SECS: u64 = 7 * 24 * 3600;

/// A command and where it is in its life.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandView {
    pub id: String,
    pub device: String,
    pub name: String,
    /// Any JSON, `null` when none were given.
    pub params: Value,
    /// `pending` (in the outbox), `delivered`, `succeeded`, `failed` or `expired`.
    pub state: String,
    /// Who sent it: `user:ID` or `key:ID`.
    pub requested_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    /// The device's reply (any JSON).
    pub response: Option<Value>,
    /// Why it failed or expired.
    pub error: Option<String>,
}

fn time(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn view(c: CommandRecord) -> CommandView {
    CommandView {
        id: c.id,
        device: c.device.to_string(),
        name: c.name,
        params: c.params,
        state: c.state.as_str().to_owned(),
        requested_by: c.requested_by,
        created_at: time(c.created_at),
        expires_at: time(c.expires_at),
        delivered_at: c.delivered_at.map(time),
        finished_at: c.finished_at.map(time),
        response: c.response,
        error: c.error,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SendQuery {
    /// Seconds to wait for the device's reply (default 10, at most 300); the
    /// command expires then, and the answer is 504.
    #[param(minimum = 0.001, maximum = 300)]
    pub timeout: Option<f64>,
    /// `true`: answer 202 at once with the command's id, to poll.
    #[serde(rename = "async")]
    #[param(rename = "async")]
    pub asynchronous: Option<bool>,
    /// Asynchronous commands: seconds the command waits for its device
    /// (default 3600, at most 604800) before it expires.
    #[param(minimum = 1, maximum = 604800)]
    pub ttl: Option<u64>,
}

fn command_error(e: CommandError) -> ApiError {
    match e {
        CommandError::BadName => ApiError::invalid("command", e.to_string()),
        CommandError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
        CommandError::OutboxFull => ApiError::TooManyRequests {
            detail: e.to_string(),
            retry_after: 10,
        },
        CommandError::Closed => ApiError::Unavailable(e.to_string()),
    }
}

/// Sends a command to a device on `devices/{id}/commands/{command}`.
/// The body is the command's parameters (any JSON; empty for none). The
/// device gets `{"id", "name", "params"}`, and with MQTT 5 a response topic
/// and correlation data; it replies on `devices/{id}/commands/{command}/response`.
/// A device that is offline gets the command, in order, when it is back.
/// By default the request waits for the reply (200) or the timeout (504);
/// with `async=true` it answers 202 at once.
#[utoipa::path(post, operation_id = "sendCommand", path = "/api/v1/devices/{id}/commands/{command}", tag = "twin",
    params(("id" = String, Path),
        ("command" = String, Path, description = "The command's name: letters, digits, - _ .", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        SendQuery),
    request_body(content = serde_json::Value, description = "The command's parameters (any JSON; none: null)"),
    responses((status = 200, body = CommandView, description = "The device replied (state succeeded or failed)"),
        (status = 202, body = CommandView, description = "Accepted (async): poll its Location"),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem, description = "Parameters over 64 KiB"),
        (status = 429, body = Problem, description = "The device's outbox is full"),
        (status = 503, body = Problem),
        (status = 504, body = Problem, description = "No reply within the timeout; the command expired")))]
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, command)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<SendQuery>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    caller.require_write()?;
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    if body.len() > ferrule_twin::commands::MAX_PARAMS_BYTES {
        return Err(command_error(CommandError::TooLarge(body.len())));
    }
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::Invalid {
            field: None,
            detail: format!("the parameters are not valid JSON: {e}"),
        })?
    };
    let asynchronous = q.asynchronous.unwrap_or(false);
    let timeout = q.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if !(timeout > 0.0 && timeout <= MAX_TIMEOUT_SECS) {
        return Err(ApiError::invalid(
            "timeout",
            format!("must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds"),
        ));
    }
    let ttl = q.ttl.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid(
            "ttl",
            format!("must be 1 to {MAX_TTL_SECS} seconds"),
        ));
    }
    let ttl_ms = if asynchronous {
        ttl as i64 * 1000
    } else {
        // A caller who gave up must not have the device act later.
        (timeout * 1000.0).ceil() as i64
    };
    let accepted = state
        .devices()?
        .commands
        .send(NewCommand {
            tenant: caller.tenant.clone(),
            device: device.clone(),
            name: command,
            params,
            ttl_ms,
            requested_by: caller.principal.session_owner(),
        })
        .await
        .map_err(command_error)?;
    if asynchronous {
        let location = format!("/api/v1/devices/{device}/commands/{}", accepted.command.id);
        return Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, location)],
            Json(view(accepted.command)),
        )
            .into_response());
    }
    // The tracker expires the command at the timeout and says so; the
    // grace covers its wake-up.
    let wait = Duration::from_millis(ttl_ms as u64) + Duration::from_secs(1);
    let id = accepted.command.id.clone();
    let done = match tokio::time::timeout(wait, accepted.outcome).await {
        Ok(Ok(done)) => done,
        // The device was deleted meanwhile.
        Ok(Err(_)) => return Err(ApiError::NotFound("device")),
        Err(_) => {
            return Err(ApiError::GatewayTimeout(format!(
                "the device did not reply within {timeout} s; command {id} expired"
            )));
        }
    };
    if done.state == CommandState::Expired {
        return Err(ApiError::GatewayTimeout(format!(
            "the device did not reply within {timeout} s; command {id} expired ({})",
            done.error.as_deref().unwrap_or("no reply")
        )));
    }
    Ok(Json(view(done)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only commands in this state.
    #[param(inline)]
    pub state: Option<StateParam>,
    /// Commands per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateParam {
    Pending,
    Delivered,
    Succeeded,
    Failed,
    Expired,
}

impl From<StateParam> for CommandState {
    fn from(s: StateParam) -> Self {
        match s {
            StateParam::Pending => CommandState::Pending,
            StateParam::Delivered => CommandState::Delivered,
            StateParam::Succeeded => CommandState::Succeeded,
            StateParam::Failed => CommandState::Failed,
            StateParam::Expired => CommandState::Expired,
        }
    }
}

/// Lists a device's commands, newest first.
#[utoipa::path(get, operation_id = "listCommands", path = "/api/v1/devices/{id}/commands", tag = "twin",
    params(("id" = String, Path), ListQuery),
    responses((status = 200, body = Paged<CommandView>), (status = 400, body = Problem),
        (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paged<CommandView>>> {
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .to_request()?;
    let got = state
        .devices()?
        .commands
        .list(&caller.tenant, &device, q.state.map(Into::into), &page)
        .await?;
    Ok(Json(Paged::from_page(got, view)))
}

/// Reads one command of a device.
#[utoipa::path(get, operation_id = "getCommand", path = "/api/v1/devices/{id}/commands/{command}", tag = "twin",
    params(("id" = String, Path), ("command" = String, Path, description = "The command's id")),
    responses((status = 200, body = CommandView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, command)): Path<(String, String)>,
) -> ApiResult<Json<CommandView>> {
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let found = state
        .devices()?
        .commands
        .get(&caller.tenant, &command)
        .await?
        .filter(|c| c.device == device)
        .ok_or(ApiError::NotFound("command"))?;
    Ok(Json(view(found)))
}
