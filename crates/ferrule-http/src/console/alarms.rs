//! `/alarms`: the tenant's alarms — filters (severity, state, device, time
//! range), paging, acknowledge and clear through the API's alarm routes;
//! cleared alarms are the history (`state=cleared`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::device_panels::{AlarmRow, alarm_row};
use super::form;
use super::page::{self, Failure};
use super::session::{self, Console};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::alarms as api;
use crate::state::AppState;

/// Alarms per page.
const PAGE_SIZE: u32 = 50;

/// The time ranges the filter offers (last seen within), with their labels.
const RANGES: &[(&str, &str, i64)] = &[
    ("1h", "Last hour", 3_600_000),
    ("24h", "Last 24 hours", 24 * 3_600_000),
    ("7d", "Last 7 days", 7 * 24 * 3_600_000),
    ("30d", "Last 30 days", 30 * 24 * 3_600_000),
];

const SEVERITIES: &[&str] = &["critical", "major", "minor", "warning", "indeterminate"];
const STATES: &[&str] = &["active", "acknowledged", "cleared"];

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Filters {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    device: String,
    /// One of [`RANGES`], or empty for any time.
    #[serde(default)]
    range: String,
    /// The API's `next_cursor` of the previous page.
    #[serde(default)]
    cursor: String,
}

impl Filters {
    /// This list's URL with the same filters, at `cursor` (or the start).
    fn url(&self, cursor: Option<&str>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("severity", &self.severity)
            .append_pair("state", &self.state)
            .append_pair("device", &self.device)
            .append_pair("range", &self.range);
        if let Some(c) = cursor {
            s.append_pair("cursor", c);
        }
        format!("/alarms?{}", s.finish())
    }

    /// The API's query; values the form never offers are left out rather
    /// than refused (a hand-edited URL shows everything).
    fn query(&self) -> api::ListQuery {
        let enum_value = |v: &str, allowed: &[&str]| {
            allowed
                .contains(&v)
                .then(|| serde_json::Value::String(v.to_owned()))
        };
        let from = RANGES
            .iter()
            .find(|(v, _, _)| *v == self.range)
            .map(|(_, _, ms)| (jiff::Timestamp::now().as_millisecond() - ms).to_string());
        api::ListQuery {
            state: enum_value(&self.state, STATES).and_then(|v| serde_json::from_value(v).ok()),
            severity: enum_value(&self.severity, SEVERITIES)
                .and_then(|v| serde_json::from_value(v).ok()),
            device: form::optional(Some(self.device.clone())),
            alarm_type: None,
            from,
            to: None,
            limit: Some(PAGE_SIZE),
            cursor: form::optional(Some(self.cursor.clone())),
        }
    }
}

#[derive(Debug, Serialize)]
struct Listing {
    alarms: Vec<AlarmRow>,
    next: Option<String>,
    first: Option<String>,
}

async fn listing(state: &AppState, console: &Console, f: &Filters) -> Result<Listing, ApiError> {
    let page = api::list(
        State(state.clone()),
        console.caller.clone(),
        ApiQuery(f.query()),
    )
    .await?
    .0;
    Ok(Listing {
        alarms: page.items.into_iter().map(alarm_row).collect(),
        next: page.next_cursor.map(|c| f.url(Some(&c))),
        first: (!f.cursor.is_empty()).then(|| f.url(None)),
    })
}

async fn render(
    state: &AppState,
    console: &Console,
    f: &Filters,
    message: Option<String>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let listing = listing(state, console, f).await?;
    let chrome = page::chrome(state, console, "alarms").await;
    let ranges: Vec<_> = RANGES
        .iter()
        .map(|(v, label, _)| context! { value => v, label => label })
        .collect();
    let back = f.url(form::optional(Some(f.cursor.clone())).as_deref());
    let body = page::render(
        "alarms.html",
        context! { ..chrome, ..context! {
            alarms => listing.alarms, next => listing.next, first => listing.first,
            f => f, ranges => ranges, severities => SEVERITIES, states => STATES,
            message => message, back => back,
            alarms_label => "Alarms", show_device => true, with_actions => true,
            alarms_empty => "No alarms match these filters.",
        }},
    )?;
    Ok(page::html(status, body))
}

pub async fn list(
    State(state): State<AppState>,
    console: Console,
    Query(f): Query<Filters>,
) -> Result<Response, Failure> {
    render(&state, &console, &f, None, StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    /// The list (with its filters) to go back to.
    #[serde(default)]
    back: String,
}

/// The filters of a `back` URL of this page.
fn filters_of(back: &str) -> Filters {
    back.split_once('?')
        .and_then(|(_, q)| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

async fn transition(
    state: AppState,
    console: Console,
    id: String,
    body: Bytes,
    clear: bool,
) -> Result<Response, Failure> {
    let f: ActionForm = form::parse(&body)?;
    let back = session::local_path(Some(&f.back));
    let done = if clear {
        api::clear(State(state.clone()), console.caller.clone(), Path(id)).await
    } else {
        api::acknowledge(State(state.clone()), console.caller.clone(), Path(id)).await
    };
    match done {
        Ok(_) => Ok(Redirect::to(&back).into_response()),
        // Someone else got there first: say so over the list as it is now.
        Err(ApiError::Conflict(why)) => {
            let message = format!(
                "{} The list below shows the alarm's state now.",
                capitalised(&why)
            );
            render(
                &state,
                &console,
                &filters_of(&back),
                Some(message),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => {
            let mut out = first.to_uppercase().collect::<String>();
            out.push_str(c.as_str());
            if !out.ends_with('.') {
                out.push('.');
            }
            out
        }
        None => String::new(),
    }
}

pub async fn acknowledge(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    transition(state, console, id, body, false).await
}

pub async fn clear(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    transition(state, console, id, body, true).await
}
