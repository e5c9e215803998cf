//! `/devices`: the tenant's devices — search and filters, paging, create
//! (the token shown once, with lines to connect), delete, and the
//! credentials' rotate and revoke.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use ferrule_store::PageRequest;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::form;
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::routes::device_attributes;
use crate::routes::device_filter::filtered_page;
use crate::routes::devices::{self as api, CreateDevice};
use crate::routes::views::DeviceView;
use crate::state::AppState;

/// Devices per page.
const PAGE_SIZE: u32 = 50;

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ListQuery {
    /// Part of the id or name, any case.
    #[serde(default)]
    q: String,
    /// `online`, `offline` or empty.
    #[serde(default)]
    state: String,
    /// `KEY` or `KEY=VALUE`, as the API's `label`.
    #[serde(default)]
    label: String,
    #[serde(default)]
    profile: String,
    /// The last device id of the previous page.
    after: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct CreateForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    profile: String,
}

/// A device as a row of the list.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    name: String,
    profile: String,
    online: bool,
    last_seen: String,
    labels: Vec<String>,
}

pub fn when(ts: Option<jiff::Timestamp>) -> String {
    match ts {
        Some(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "never".into(),
    }
}

fn row(v: DeviceView) -> Row {
    let labels = v
        .attributes
        .get("labels")
        .and_then(|l| l.as_object())
        .map(|o| {
            o.iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) => format!("{k}={s}"),
                    None => k.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    Row {
        last_seen: when(v.last_seen),
        online: v.online,
        id: v.id,
        name: v.name,
        profile: v.profile,
        labels,
    }
}

/// One page of the list, with links to the next page and back to the first.
#[derive(Debug, Serialize)]
struct Listing {
    rows: Vec<Row>,
    next: Option<String>,
    first: Option<String>,
}

/// The list's URL with the same filters, from `after` (or the start).
fn list_url(q: &ListQuery, after: Option<&str>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("q", &q.q)
        .append_pair("state", &q.state)
        .append_pair("label", &q.label)
        .append_pair("profile", &q.profile);
    if let Some(after) = after {
        s.append_pair("after", after);
    }
    format!("/devices?{}", s.finish())
}

async fn rows(state: &AppState, console: &Console, q: &ListQuery) -> Result<Listing, ApiError> {
    // The API's label and profile filter, from the same query syntax.
    let raw = {
        // Not `Send`: finished before any await.
        let mut raw = form_urlencoded::Serializer::new(String::new());
        if !q.label.trim().is_empty() {
            raw.append_pair("label", q.label.trim());
        }
        if !q.profile.trim().is_empty() {
            raw.append_pair("profile", q.profile.trim());
        }
        raw.finish()
    };
    let filter = device_attributes::filter(Some(&raw))?;
    let online = match q.state.as_str() {
        "online" => Some(true),
        "offline" => Some(false),
        _ => None,
    };
    let needle = q.q.trim().to_lowercase();
    let tenant = console.caller.tenant.clone();
    let connectivity = state.devices.as_ref().map(|s| s.connectivity.clone());
    let page = filtered_page(
        state.store(),
        &tenant,
        PageRequest {
            limit: PAGE_SIZE,
            after: q.after.clone().filter(|a| !a.is_empty()),
        },
        |d| {
            filter.matches(d)
                && (needle.is_empty()
                    || d.id.as_str().to_lowercase().contains(&needle)
                    || d.name.to_lowercase().contains(&needle))
                && online.is_none_or(|want| {
                    connectivity
                        .as_ref()
                        .is_some_and(|c| c.is_online(&d.tenant, &d.id))
                        == want
                })
        },
    )
    .await?;
    let next = page.next.map(|after| list_url(q, Some(&after)));
    let first = q
        .after
        .as_deref()
        .is_some_and(|a| !a.is_empty())
        .then(|| list_url(q, None));
    let rows = page
        .items
        .into_iter()
        .map(|d| row(api::view(state, d)))
        .collect();
    Ok(Listing { rows, next, first })
}

async fn list_page(
    state: &AppState,
    console: &Console,
    q: &ListQuery,
    create: &CreateForm,
    errors: &BTreeMap<String, String>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let listing = rows(state, console, q).await?;
    let chrome = page::chrome(state, console, "devices").await;
    let body = page::render(
        "devices.html",
        context! { ..chrome, ..context! {
            rows => listing.rows, next => listing.next, first => listing.first,
            q => q, create => create, errors => errors,
        }},
    )?;
    Ok(page::html(status, body))
}

/// The list; an htmx search asks for the rows alone.
pub async fn list(
    State(state): State<AppState>,
    console: Console,
    parts: Parts,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let fragment = parts
        .headers
        .get("hx-target")
        .is_some_and(|t| t == "device-list");
    if fragment {
        let listing = rows(&state, &console, &q).await?;
        let body = page::render(
            "device_rows.html",
            minijinja::Value::from_serialize(&listing),
        )?;
        return Ok(page::html(StatusCode::OK, body));
    }
    let create = CreateForm {
        profile: "default".into(),
        ..Default::default()
    };
    list_page(
        &state,
        &console,
        &q,
        &create,
        &BTreeMap::new(),
        StatusCode::OK,
    )
    .await
}

/// The host and MQTT port a device on the same network as the browser
/// would use: the host the browser reached us at, the configured port.
fn mqtt_host_port(state: &AppState, parts: &Parts) -> (String, u16) {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let host = match host.strip_prefix('[') {
        // [::1]:8080
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or(v6)),
        None => host.split(':').next().unwrap_or(host).to_owned(),
    };
    (host, state.settings.mqtt_port.unwrap_or(1883))
}

fn token_page(
    chrome: Value,
    title: &str,
    device: &str,
    token: &str,
    (host, port): (String, u16),
    status: StatusCode,
) -> Result<Response, Failure> {
    let python_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let body = page::render(
        "token.html",
        context! { ..chrome, ..context! {
            title => title, device => device, token => token, host => host,
            python_host => python_host, port => port,
        }},
    )?;
    Ok(page::html(status, body))
}

/// Registers a device through the API's own create; shows its token once.
pub async fn create(
    State(state): State<AppState>,
    console: Console,
    parts: Parts,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: CreateForm = form::parse(&body)?;
    let request = CreateDevice {
        id: f.id.trim().to_owned(),
        name: form::optional(Some(f.name.clone())),
        profile: form::optional(Some(f.profile.clone())),
        attributes: None,
    };
    match api::create(
        State(state.clone()),
        console.caller.clone(),
        JsonBody(request),
    )
    .await
    {
        Ok((_, created)) => {
            let chrome = page::chrome(&state, &console, "devices").await;
            token_page(
                chrome,
                "Device created",
                &created.device.id,
                &created.token,
                mqtt_host_port(&state, &parts),
                StatusCode::CREATED,
            )
        }
        Err(e) => {
            let (status, _, detail, field) = e.parts();
            if status == StatusCode::FORBIDDEN || status.is_server_error() {
                return Err(e.into());
            }
            // Errors go next to their field; a duplicate id is the id's.
            let field = match (&e, field) {
                (ApiError::Conflict(_), _) => "id".to_owned(),
                (_, Some(f)) if ["id", "name", "profile"].contains(&f.as_str()) => f,
                _ => "form".to_owned(),
            };
            let errors = BTreeMap::from([(field, detail)]);
            list_page(&state, &console, &ListQuery::default(), &f, &errors, status).await
        }
    }
}

/// Asks before deleting: a page with one button, no script needed.
pub async fn confirm_delete(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let device = api::get(State(state.clone()), console.caller.clone(), Path(id)).await?;
    let chrome = page::chrome(&state, &console, "devices").await;
    let body = page::render(
        "device_delete.html",
        context! { ..chrome, ..context! { device => device.0 } },
    )?;
    Ok(page::html(StatusCode::OK, body))
}

pub async fn delete(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    api::delete(State(state), console.caller.clone(), Path(id)).await?;
    Ok(Redirect::to("/devices").into_response())
}

/// A new token for a token credential; the old one stops working.
pub async fn rotate(
    State(state): State<AppState>,
    console: Console,
    parts: Parts,
    Path((id, credential)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let issued = crate::routes::credentials::rotate(
        State(state.clone()),
        console.caller.clone(),
        Path((id.clone(), credential)),
    )
    .await?;
    let token = issued.0.token.unwrap_or_default();
    let chrome = page::chrome(&state, &console, "devices").await;
    token_page(
        chrome,
        "Token rotated",
        &id,
        &token,
        mqtt_host_port(&state, &parts),
        StatusCode::OK,
    )
}

/// Revokes a credential; connections that used it are closed.
pub async fn revoke(
    State(state): State<AppState>,
    console: Console,
    Path((id, credential)): Path<(String, String)>,
) -> Result<Response, Failure> {
    crate::routes::credentials::delete(
        State(state),
        console.caller.clone(),
        Path((id.clone(), credential)),
    )
    .await?;
    Ok(Redirect::to(&format!("/devices/{id}")).into_response())
}
