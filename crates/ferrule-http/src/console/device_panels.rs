//! The device page's twin, commands, events and alarms: what each panel
//! shows, read through the API's own route functions, and the twin and
//! command forms.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::devices::when;
use super::form;
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::{ApiQuery, JsonBody, RawBody};
use crate::routes::{alarms, commands, events, twin};
use crate::state::AppState;

/// Rows each list panel shows: the recent ones; the API has the rest.
const RECENT: u32 = 20;

/// How far back the event panels look for the recent events, narrowest
/// first (`None`: all).
const WINDOWS_MS: [Option<i64>; 4] = [
    Some(3_600_000),
    Some(24 * 3_600_000),
    Some(7 * 24 * 3_600_000),
    None,
];
/// Events read per request while looking back, and pages per window.
const EVENTS_PAGE: u32 = 1000;
const MAX_PAGES: usize = 10;

/// What a form sent back, and the errors shown next to its fields, when
/// the device page is shown again after a refused change.
#[derive(Debug, Default, Serialize)]
pub struct Forms {
    pub twin_patch: String,
    pub command_name: String,
    pub command_params: String,
    /// `twin`, `command_name`, `command_params` → message.
    pub errors: BTreeMap<String, String>,
}

/// The twin as the panel shows it: each side as indented JSON.
#[derive(Debug, Default, Serialize)]
pub struct TwinPanel {
    pub reported: String,
    pub desired: String,
    pub delta: String,
    pub version: u64,
    pub updated_at: String,
    pub available: bool,
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The twin through the API's `GET …/state` (its JSON body, as a client
/// would read it).
pub async fn twin_panel(
    state: &AppState,
    console: &Console,
    id: &str,
) -> Result<TwinPanel, ApiError> {
    if state.devices.is_none() {
        return Ok(TwinPanel::default());
    }
    let resp = twin::get(
        State(state.clone()),
        console.caller.clone(),
        Path(id.to_owned()),
    )
    .await?;
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the twin: {e}")))?;
    let t: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("reading the twin: {e}")))?;
    Ok(TwinPanel {
        reported: pretty(&t["reported"]),
        desired: pretty(&t["desired"]),
        delta: pretty(&t["delta"]),
        version: t["desired_version"].as_u64().unwrap_or(0),
        updated_at: when(
            t["updated_at"]
                .as_i64()
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()),
        ),
        available: true,
    })
}

#[derive(Debug, Serialize)]
pub struct CommandRow {
    id: String,
    name: String,
    params: String,
    state: String,
    created_at: String,
    reply: String,
}

/// The device's recent commands, newest first.
pub async fn command_rows(
    state: &AppState,
    console: &Console,
    id: &str,
) -> Result<Vec<CommandRow>, ApiError> {
    if state.devices.is_none() {
        return Ok(Vec::new());
    }
    let page = commands::list(
        State(state.clone()),
        console.caller.clone(),
        Path(id.to_owned()),
        ApiQuery(commands::ListQuery {
            state: None,
            limit: Some(RECENT),
            cursor: None,
        }),
    )
    .await?
    .0;
    Ok(page
        .items
        .into_iter()
        .map(|c| CommandRow {
            params: if c.params.is_null() {
                String::new()
            } else {
                c.params.to_string()
            },
            reply: match (&c.response, &c.error) {
                (Some(r), _) => r.to_string(),
                (None, Some(e)) => e.clone(),
                (None, None) => String::new(),
            },
            id: c.id,
            name: c.name,
            state: c.state,
            created_at: when(Some(c.created_at)),
        })
        .collect())
}

#[derive(Debug, Serialize)]
pub struct EventRow {
    at: String,
    kind: String,
    payload: String,
}

/// The device's recent events, newest first.
pub async fn event_rows(
    state: &AppState,
    console: &Console,
    id: &str,
) -> Result<Vec<EventRow>, ApiError> {
    Ok(recent_events(state, console, id, None)
        .await?
        .into_iter()
        .map(|e| EventRow {
            at: when(jiff::Timestamp::from_millisecond(e.ts).ok()),
            kind: e.event_type,
            payload: match (e.payload, e.payload_base64) {
                (Some(Value::String(s)), _) => s,
                (Some(v), _) => v.to_string(),
                (None, Some(b)) => format!("(binary, base64) {b}"),
                (None, None) => String::new(),
            },
        })
        .collect())
}

/// A connection that began or ended: the `connectivity` events Ferrule
/// records for the device.
#[derive(Debug, Serialize)]
pub struct ConnectivityRow {
    at: String,
    change: String,
    client_id: String,
    address: String,
    protocol: String,
    reason: String,
}

/// The device's recent connects and disconnects, newest first.
pub async fn connectivity_rows(
    state: &AppState,
    console: &Console,
    id: &str,
) -> Result<Vec<ConnectivityRow>, ApiError> {
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Ok(recent_events(state, console, id, Some("connectivity"))
        .await?
        .into_iter()
        .map(|e| {
            let p = e.payload.unwrap_or(Value::Null);
            ConnectivityRow {
                at: when(jiff::Timestamp::from_millisecond(e.ts).ok()),
                change: text(&p, "event"),
                client_id: text(&p, "client_id"),
                address: text(&p, "address"),
                protocol: text(&p, "protocol"),
                reason: text(&p, "reason").replace('_', " "),
            }
        })
        .collect())
}

/// The most recent [`RECENT`] events (of one type), newest first.
///
/// The API lists events oldest first from a time, paged by id; the most
/// recent are found by looking back over wider and wider windows until one
/// holds enough, reading at most [`MAX_PAGES`] pages of a window.
async fn recent_events(
    state: &AppState,
    console: &Console,
    id: &str,
    event_type: Option<&str>,
) -> Result<Vec<events::EventView>, ApiError> {
    if state.telemetry.is_none() {
        return Ok(Vec::new());
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let mut recent = std::collections::VecDeque::new();
    for window in WINDOWS_MS {
        recent.clear();
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let page = events::list(
                State(state.clone()),
                console.caller.clone(),
                Path(id.to_owned()),
                ApiQuery(events::EventQuery {
                    event_type: event_type.map(str::to_owned),
                    from: window.map(|ms| (now - ms).to_string()),
                    to: None,
                    limit: Some(EVENTS_PAGE),
                    cursor: cursor.take(),
                }),
            )
            .await?
            .0;
            for e in page.items {
                if recent.len() == RECENT as usize {
                    recent.pop_front();
                }
                recent.push_back(e);
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if recent.len() == RECENT as usize {
            break;
        }
    }
    Ok(recent.into_iter().rev().collect())
}

/// An alarm as a row of a list (here and on the alarms page).
#[derive(Debug, Serialize)]
pub struct AlarmRow {
    pub id: u64,
    pub device: Option<String>,
    pub kind: String,
    pub severity: String,
    pub state: String,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub acknowledged_by: Option<String>,
    pub cleared_by: Option<String>,
}

pub fn alarm_row(a: ferrule_rules::alarms::AlarmView) -> AlarmRow {
    AlarmRow {
        id: a.id,
        device: a.device,
        kind: a.alarm_type,
        severity: a.severity,
        state: a.state,
        count: a.count,
        first_seen: when(Some(a.first_seen)),
        last_seen: when(Some(a.last_seen)),
        acknowledged_by: a.acknowledged_by,
        cleared_by: a.cleared_by,
    }
}

/// The device's alarms, open ones first, each group most recently seen
/// first.
pub async fn alarm_rows(
    state: &AppState,
    console: &Console,
    id: &str,
) -> Result<Vec<AlarmRow>, ApiError> {
    if state.rules.is_none() {
        return Ok(Vec::new());
    }
    let page = alarms::list_of_device(
        State(state.clone()),
        console.caller.clone(),
        Path(id.to_owned()),
        ApiQuery(alarms::ListQuery {
            state: None,
            severity: None,
            device: None,
            alarm_type: None,
            from: None,
            to: None,
            limit: Some(RECENT),
            cursor: None,
        }),
    )
    .await?
    .0;
    let mut rows: Vec<AlarmRow> = page.items.into_iter().map(alarm_row).collect();
    // Stable: the API's order (last seen) stays within each group.
    rows.sort_by_key(|r| r.state == "cleared");
    Ok(rows)
}

/// The command outbox alone, for htmx polling.
pub async fn outbox(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let commands = command_rows(&state, &console, &id).await?;
    let body = page::render("device_commands.html", context! { commands => commands })?;
    Ok(page::html(StatusCode::OK, body))
}

#[derive(Debug, Default, Deserialize)]
pub struct TwinForm {
    #[serde(default)]
    patch: String,
    /// The desired version the page showed: the change is based on it.
    #[serde(default)]
    version: String,
}

/// Applies a merge patch to desired state through the API's twin patch,
/// `If-Match` the version the page showed; the API publishes the new
/// desired state and delta to the device.
pub async fn patch_twin(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: TwinForm = form::parse(&body)?;
    let again = |message: String, status: StatusCode| {
        let forms = Forms {
            twin_patch: f.patch.clone(),
            errors: BTreeMap::from([("twin".to_owned(), message)]),
            ..Default::default()
        };
        (forms, status)
    };
    let patch: Value = match serde_json::from_str(&f.patch) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            let (forms, status) = again(
                "The patch must be a JSON object, e.g. {\"interval\": 30}.".into(),
                StatusCode::BAD_REQUEST,
            );
            return super::device::render(&state, &console, &id, forms, status).await;
        }
        Err(e) => {
            let (forms, status) = again(
                format!("This is not valid JSON ({e}). Correct it and apply again."),
                StatusCode::BAD_REQUEST,
            );
            return super::device::render(&state, &console, &id, forms, status).await;
        }
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", f.version.trim())) {
        headers.insert(header::IF_MATCH, v);
    }
    match twin::patch(
        State(state.clone()),
        console.caller.clone(),
        Path(id.clone()),
        headers,
        JsonBody(patch),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/devices/{id}#twin-title")).into_response()),
        Err(ApiError::PreconditionFailed(_)) => {
            let (forms, status) = again(
                "The desired state changed meanwhile — reload the page to see the current \
                 state, then apply your change again."
                    .into(),
                StatusCode::PRECONDITION_FAILED,
            );
            super::device::render(&state, &console, &id, forms, status).await
        }
        Err(e) => {
            let (status, _, detail, _) = e.parts();
            if status == StatusCode::FORBIDDEN
                || status == StatusCode::NOT_FOUND
                || status.is_server_error()
            {
                return Err(e.into());
            }
            let (forms, status) = again(detail, status);
            super::device::render(&state, &console, &id, forms, status).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CommandForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    params: String,
}

/// Queues a command through the API's send (asynchronous: the outbox
/// shows how it goes).
pub async fn send_command(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: CommandForm = form::parse(&body)?;
    let name = f.name.trim().to_owned();
    let mut forms = Forms {
        command_name: f.name.clone(),
        command_params: f.params.clone(),
        ..Default::default()
    };
    // Checked here too, so that the message is the params field's.
    if !f.params.trim().is_empty()
        && let Err(e) = serde_json::from_str::<Value>(&f.params)
    {
        forms.errors.insert(
            "command_params".into(),
            format!("This is not valid JSON ({e}). Correct it, or leave it empty for none."),
        );
        return super::device::render(&state, &console, &id, forms, StatusCode::BAD_REQUEST).await;
    }
    if name.is_empty() {
        forms.errors.insert(
            "command_name".into(),
            "Give the command's name, e.g. reboot.".into(),
        );
        return super::device::render(&state, &console, &id, forms, StatusCode::BAD_REQUEST).await;
    }
    let sent = commands::send(
        State(state.clone()),
        console.caller.clone(),
        Path((id.clone(), name)),
        ApiQuery(commands::SendQuery {
            timeout: None,
            asynchronous: Some(true),
            ttl: None,
        }),
        RawBody(Bytes::from(f.params.trim().to_owned())),
    )
    .await;
    match sent {
        Ok(_) => Ok(Redirect::to(&format!("/devices/{id}#commands-title")).into_response()),
        Err(e) => {
            let (status, _, detail, field) = e.parts();
            if status == StatusCode::FORBIDDEN
                || status == StatusCode::NOT_FOUND
                || status.is_server_error()
            {
                return Err(e.into());
            }
            let key = if field.as_deref() == Some("command") {
                "command_name"
            } else {
                "command_params"
            };
            forms.errors.insert(key.into(), detail);
            super::device::render(&state, &console, &id, forms, status).await
        }
    }
}
