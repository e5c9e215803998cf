//! `/dashboards`: the tenant's dashboards — list, create, import, delete;
//! a dashboard's page (its widgets on the 12-column grid, drawn by
//! `dashboards.js` from `/dashboards/{id}/data`), its edit mode (add and
//! remove widgets here, layout saved by the script with the version read),
//! command buttons, share links (the token shown once), export; and
//! `/share/{token}`, the public read-only page of a shared dashboard.
//!
//! Writes go through the API's own dashboard functions
//! (`routes::dashboards`), so roles, checks and versions are the API's. The
//! public page shows only what the public shared API returns.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::form;
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::{ApiQuery, JsonBody, RawBody};
use crate::pagination::PageQuery;
use crate::routes::commands::{self, SendQuery};
use crate::routes::dashboard_widgets::{Widget, WidgetKind};
use crate::routes::dashboards::{
    self as api, DashboardExport, DashboardFields, ImportQuery, NewDashboard,
};
use crate::routes::shared;
use crate::state::AppState;

/// Dashboards listed (the API's largest page).
const LIST_LIMIT: u32 = 1000;
/// Where a new widget goes: the left edge, half the grid wide.
const NEW_WIDGET_WIDTH: u32 = 6;
const NEW_WIDGET_HEIGHT: u32 = 4;

/// The JSON body of one of the API's responses.
async fn body_json(resp: Response) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading a dashboard: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("reading a dashboard: {e}")))
}

/// A dashboard as the API shows it, and its widgets.
struct Loaded {
    view: Value,
    widgets: Vec<Widget>,
    version: u64,
}

async fn load(state: &AppState, console: &Console, id: &str) -> Result<Loaded, ApiError> {
    let resp = api::get(
        State(state.clone()),
        console.caller.clone(),
        Path(id.to_owned()),
    )
    .await?;
    let view = body_json(resp).await?;
    let widgets: Vec<Widget> = serde_json::from_value(view["widgets"].clone()).unwrap_or_default();
    let version = view["version"].as_u64().unwrap_or(0);
    Ok(Loaded {
        view,
        widgets,
        version,
    })
}

/// Replaces the widgets, only if the dashboard is still at `version`.
async fn save_widgets(
    state: &AppState,
    console: &Console,
    id: &str,
    current: &Value,
    version: u64,
    widgets: Vec<Widget>,
) -> Result<u64, ApiError> {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::IF_MATCH, v);
    }
    let fields = DashboardFields {
        name: current["name"].as_str().unwrap_or_default().to_owned(),
        description: current["description"].as_str().map(str::to_owned),
        widgets,
    };
    let resp = api::replace(
        State(state.clone()),
        console.caller.clone(),
        Path(id.to_owned()),
        headers,
        JsonBody(fields),
    )
    .await?;
    Ok(body_json(resp).await?["version"].as_u64().unwrap_or(0))
}

/// Errors that are not a form's (not allowed, not found, the server's)
/// are a page of their own.
fn field_error(e: &ApiError) -> bool {
    let (status, ..) = e.parts();
    !(status == StatusCode::FORBIDDEN
        || status == StatusCode::NOT_FOUND
        || status.is_server_error())
}

/// `widgets[3].keys` → `keys`.
fn widget_field(field: Option<String>) -> String {
    let f = field.unwrap_or_default();
    match f.rsplit_once('.') {
        Some((_, name)) if f.starts_with("widgets[") => name.to_owned(),
        _ => "form".to_owned(),
    }
}

// ---------------------------------------------------------------- the list

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct CreateForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ImportForm {
    #[serde(default)]
    import_id: String,
    /// The exported JSON (pasted, or read from a file by the script).
    #[serde(default)]
    document: String,
}

async fn list_page(
    state: &AppState,
    console: &Console,
    create: &CreateForm,
    import: &ImportForm,
    errors: &BTreeMap<String, String>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let page = api::list(
        State(state.clone()),
        console.caller.clone(),
        ApiQuery(PageQuery {
            limit: Some(LIST_LIMIT),
            cursor: None,
        }),
    )
    .await?;
    let dashboards = serde_json::to_value(&page.0.items).unwrap_or_default();
    let chrome = page::chrome(state, console, "dashboards").await;
    let body = page::render(
        "dashboards.html",
        context! { ..chrome, ..context! {
            dashboards => dashboards, create => create, import => import, errors => errors,
        }},
    )?;
    Ok(page::html(status, body))
}

pub async fn list(State(state): State<AppState>, console: Console) -> Result<Response, Failure> {
    list_page(
        &state,
        &console,
        &CreateForm::default(),
        &ImportForm::default(),
        &BTreeMap::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: CreateForm = form::parse(&body)?;
    let request = NewDashboard {
        id: form::optional(Some(f.id.clone())),
        name: f.name.trim().to_owned(),
        description: None,
        widgets: Vec::new(),
    };
    match api::create(
        State(state.clone()),
        console.caller.clone(),
        JsonBody(request),
    )
    .await
    {
        Ok(resp) => {
            let view = body_json(resp).await?;
            let id = view["id"].as_str().unwrap_or_default();
            Ok(Redirect::to(&format!("/dashboards/{id}?edit=1")).into_response())
        }
        Err(e) if field_error(&e) => {
            let (status, _, detail, field) = e.parts();
            let field = match (&e, field) {
                (ApiError::Conflict(_), _) => "id".to_owned(),
                (_, Some(f)) if f == "id" || f == "name" => f,
                _ => "form".to_owned(),
            };
            let errors = BTreeMap::from([(field, detail)]);
            list_page(
                &state,
                &console,
                &f,
                &ImportForm::default(),
                &errors,
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn import(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: ImportForm = form::parse(&body)?;
    let refuse = |field: &str, detail: String| BTreeMap::from([(field.to_owned(), detail)]);
    let doc: DashboardExport = match serde_json::from_str(&f.document) {
        Ok(d) => d,
        Err(e) => {
            let errors = refuse(
                "document",
                format!("This is not a dashboard export ({e}). Choose a file made by Export."),
            );
            return list_page(
                &state,
                &console,
                &CreateForm::default(),
                &f,
                &errors,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let query = ImportQuery {
        id: form::optional(Some(f.import_id.clone())),
    };
    match api::import(
        State(state.clone()),
        console.caller.clone(),
        ApiQuery(query),
        JsonBody(doc),
    )
    .await
    {
        Ok(resp) => {
            let view = body_json(resp).await?;
            let id = view["id"].as_str().unwrap_or_default();
            Ok(Redirect::to(&format!("/dashboards/{id}")).into_response())
        }
        Err(e) if field_error(&e) => {
            let (status, _, detail, field) = e.parts();
            let field = match (&e, field.as_deref()) {
                (ApiError::Conflict(_), _) | (_, Some("id")) => "import_id",
                _ => "document",
            };
            let errors = refuse(field, detail);
            list_page(
                &state,
                &console,
                &CreateForm::default(),
                &f,
                &errors,
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    api::delete(State(state), console.caller.clone(), Path(id)).await?;
    Ok(Redirect::to("/dashboards").into_response())
}

// ------------------------------------------------------------ a dashboard

/// The add-widget form.
#[derive(Debug, Deserialize, Serialize)]
pub struct WidgetForm {
    #[serde(default)]
    version: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    device: String,
    /// Comma-separated.
    #[serde(default)]
    keys: String,
    #[serde(default)]
    title: String,
    /// Minutes of history a chart shows.
    #[serde(default)]
    range: String,
    /// A gauge's scale.
    #[serde(default)]
    min: String,
    #[serde(default)]
    max: String,
    /// A button's command.
    #[serde(default)]
    command: String,
}

impl Default for WidgetForm {
    fn default() -> Self {
        Self {
            version: String::new(),
            kind: "line_chart".into(),
            device: String::new(),
            keys: String::new(),
            title: String::new(),
            range: "60".into(),
            min: "0".into(),
            max: "100".into(),
            command: String::new(),
        }
    }
}

/// Everything a dashboard's page shows.
struct DashboardPage<'a> {
    loaded: Loaded,
    add: &'a WidgetForm,
    errors: &'a BTreeMap<String, String>,
    edit: bool,
    notice: Option<String>,
}

/// The widgets in reading order: by row, then column.
fn reading_order(widgets: &[Widget]) -> Vec<Widget> {
    let mut sorted = widgets.to_vec();
    sorted.sort_by_key(|w| (w.y, w.x));
    sorted
}

async fn dashboard_page(
    state: &AppState,
    console: &Console,
    p: DashboardPage<'_>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let chrome = page::chrome(state, console, "dashboards").await;
    let widgets = serde_json::to_value(reading_order(&p.loaded.widgets)).unwrap_or_default();
    let body = page::render(
        "dashboard.html",
        context! { ..chrome, ..context! {
            d => p.loaded.view, widgets => widgets, dashboard_version => p.loaded.version,
            add => p.add, errors => p.errors, edit => p.edit, notice => p.notice,
        }},
    )?;
    Ok(page::html(status, body))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    edit: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<PageParams>,
) -> Result<Response, Failure> {
    let loaded = load(&state, &console, &id).await?;
    let p = DashboardPage {
        loaded,
        add: &WidgetForm::default(),
        errors: &BTreeMap::new(),
        edit: q.edit.is_some() && console.caller.role.can_write(),
        notice: None,
    };
    dashboard_page(&state, &console, p, StatusCode::OK).await
}

/// The dashboard and its widgets' data, in the shape of the public shared
/// API (`dashboards.js` draws both), plus its version for the editor.
pub async fn data(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let loaded = load(&state, &console, &id).await?;
    let mut data = serde_json::Map::new();
    for w in &loaded.widgets {
        let d = shared::widget_data(&state, &console.caller.tenant, w).await?;
        data.insert(w.id.clone(), serde_json::to_value(d).unwrap_or_default());
    }
    let body = json!({
        "name": loaded.view["name"],
        "description": loaded.view["description"],
        "version": loaded.version,
        "widgets": loaded.widgets,
        "data": data,
    });
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// A new widget's id: its kind and the first free number.
fn new_widget_id(kind: &str, widgets: &[Widget]) -> String {
    let stem = kind.replace('_', "-");
    (1..)
        .map(|n| format!("{stem}-{n}"))
        .find(|id| widgets.iter().all(|w| &w.id != id))
        .unwrap_or(stem)
}

/// The widget the form describes, below the others.
fn widget_of(f: &WidgetForm, widgets: &[Widget]) -> Result<Widget, (String, String)> {
    let kind: WidgetKind = serde_json::from_value(Value::String(f.kind.clone())).map_err(|_| {
        (
            "type".to_owned(),
            "Choose a widget type from the list.".to_owned(),
        )
    })?;
    let keys: Vec<String> = f
        .keys
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    let range_ms = match f.range.trim() {
        "" => None,
        m => Some(
            m.parse::<i64>().map_err(|_| {
                (
                    "range".to_owned(),
                    "Give the minutes of history as a number.".to_owned(),
                )
            })? * 60_000,
        ),
    };
    let number = |field: &str, v: &str| {
        v.trim().parse::<f64>().map(Value::from).map_err(|_| {
            (
                field.to_owned(),
                format!("Give the gauge's {field} as a number."),
            )
        })
    };
    let mut options = serde_json::Map::new();
    match kind {
        WidgetKind::Gauge => {
            options.insert("min".into(), number("min", &f.min)?);
            options.insert("max".into(), number("max", &f.max)?);
        }
        WidgetKind::CommandButton => {
            options.insert("command".into(), Value::String(f.command.trim().to_owned()));
        }
        _ => {}
    }
    let (w, h) = match kind {
        WidgetKind::CommandButton | WidgetKind::LatestValue | WidgetKind::Gauge => (3, 2),
        _ => (NEW_WIDGET_WIDTH, NEW_WIDGET_HEIGHT),
    };
    let y = widgets.iter().map(|w| w.y + w.h).max().unwrap_or(0);
    Ok(Widget {
        id: new_widget_id(&f.kind, widgets),
        kind,
        title: form::optional(Some(f.title.clone())),
        x: 0,
        y,
        w,
        h,
        device: form::optional(Some(f.device.clone())),
        keys,
        range_ms: range_ms.filter(|_| kind.shows_history()),
        options: (!options.is_empty()).then_some(options),
    })
}

fn changed_meanwhile() -> String {
    "This dashboard was changed meanwhile (in another tab or by someone else). \
     Reload the page to see it, then make your change again."
        .into()
}

/// The dashboard again, edit mode open, the form as typed with its error.
async fn add_refused(
    state: &AppState,
    console: &Console,
    loaded: Loaded,
    f: &WidgetForm,
    (field, detail): (String, String),
    status: StatusCode,
) -> Result<Response, Failure> {
    let errors = BTreeMap::from([(field, detail)]);
    let p = DashboardPage {
        loaded,
        add: f,
        errors: &errors,
        edit: true,
        notice: None,
    };
    dashboard_page(state, console, p, status).await
}

/// Adds a widget from the edit mode's form.
pub async fn add_widget(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: WidgetForm = form::parse(&body)?;
    let loaded = load(&state, &console, &id).await?;
    let version = f.version.trim().parse::<u64>().unwrap_or(loaded.version);
    let widget = match widget_of(&f, &loaded.widgets) {
        Ok(w) => w,
        Err((field, detail)) => {
            let e = (field, detail);
            return add_refused(&state, &console, loaded, &f, e, StatusCode::BAD_REQUEST).await;
        }
    };
    let mut widgets = loaded.widgets.clone();
    widgets.push(widget);
    match save_widgets(&state, &console, &id, &loaded.view, version, widgets).await {
        Ok(_) => Ok(Redirect::to(&format!("/dashboards/{id}?edit=1")).into_response()),
        Err(ApiError::PreconditionFailed(_)) => {
            let e = ("form".to_owned(), changed_meanwhile());
            add_refused(
                &state,
                &console,
                loaded,
                &f,
                e,
                StatusCode::PRECONDITION_FAILED,
            )
            .await
        }
        Err(e) if field_error(&e) => {
            let (status, _, detail, field) = e.parts();
            add_refused(
                &state,
                &console,
                loaded,
                &f,
                (widget_field(field), detail),
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct VersionForm {
    #[serde(default)]
    version: String,
}

/// Removes a widget (edit mode).
pub async fn remove_widget(
    State(state): State<AppState>,
    console: Console,
    Path((id, widget)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: VersionForm = form::parse(&body)?;
    let loaded = load(&state, &console, &id).await?;
    let version = f.version.trim().parse::<u64>().unwrap_or(loaded.version);
    let widgets: Vec<Widget> = loaded
        .widgets
        .iter()
        .filter(|w| w.id != widget)
        .cloned()
        .collect();
    match save_widgets(&state, &console, &id, &loaded.view, version, widgets).await {
        Ok(_) => Ok(Redirect::to(&format!("/dashboards/{id}?edit=1")).into_response()),
        Err(ApiError::PreconditionFailed(_)) => {
            let errors = BTreeMap::from([("form".to_owned(), changed_meanwhile())]);
            let p = DashboardPage {
                loaded,
                add: &WidgetForm::default(),
                errors: &errors,
                edit: true,
                notice: None,
            };
            dashboard_page(&state, &console, p, StatusCode::PRECONDITION_FAILED).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The layout the script saves: every widget with its place.
#[derive(Debug, Deserialize)]
pub struct Layout {
    version: u64,
    widgets: Vec<Widget>,
}

/// Saves a layout moved and resized in the browser (JSON, CSRF header);
/// answers `{version}` or `{error}` with the API's status (412: changed
/// meanwhile).
pub async fn save_layout(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let layout: Layout = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("The layout could not be read ({e}). Reload the page.")})),
            )
                .into_response();
        }
    };
    let saved = async {
        let loaded = load(&state, &console, &id).await?;
        save_widgets(
            &state,
            &console,
            &id,
            &loaded.view,
            layout.version,
            layout.widgets,
        )
        .await
    }
    .await;
    match saved {
        Ok(version) => Json(json!({"version": version})).into_response(),
        Err(ApiError::PreconditionFailed(_)) => (
            StatusCode::PRECONDITION_FAILED,
            Json(json!({"error": changed_meanwhile()})),
        )
            .into_response(),
        Err(e) => {
            let (status, _, detail, _) = e.parts();
            (status, Json(json!({"error": detail}))).into_response()
        }
    }
}

/// A command button: sends its command to its device, without waiting for
/// the reply (the device may be offline; it gets it when back).
pub async fn command(
    State(state): State<AppState>,
    console: Console,
    parts: Parts,
    Path((id, widget)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let loaded = load(&state, &console, &id).await?;
    let Some(w) = loaded
        .widgets
        .iter()
        .find(|w| w.id == widget && w.kind == WidgetKind::CommandButton)
    else {
        return Err(ApiError::NotFound("command button").into());
    };
    let options = w.options.clone().unwrap_or_default();
    let name = options
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let params = options
        .get("params")
        .map(|p| p.to_string())
        .unwrap_or_default();
    let sent = commands::send(
        State(state.clone()),
        console.caller.clone(),
        Path((w.device.clone().unwrap_or_default(), name.clone())),
        ApiQuery(SendQuery {
            timeout: None,
            asynchronous: Some(true),
            ttl: None,
        }),
        RawBody(Bytes::from(params)),
    )
    .await;
    let (ok, notice) = match sent {
        Ok(_) => (
            true,
            format!(
                "Command {name} sent to {}; it is delivered when the device is online.",
                w.device.as_deref().unwrap_or_default()
            ),
        ),
        Err(e) => {
            let (status, _, detail, _) = e.parts();
            if status == StatusCode::FORBIDDEN {
                return Err(e.into());
            }
            (false, format!("Command {name} was not sent: {detail}"))
        }
    };
    if parts.headers.contains_key("hx-request") {
        let class = if ok { "notice" } else { "error" };
        let body = page::render(
            "dashboard_command.html",
            context! { class => class, notice => notice },
        )?;
        return Ok(page::html(StatusCode::OK, body));
    }
    let p = DashboardPage {
        loaded,
        add: &WidgetForm::default(),
        errors: &BTreeMap::new(),
        edit: false,
        notice: Some(notice),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    dashboard_page(&state, &console, p, status).await
}

/// This console's address as the browser reached it.
fn origin(parts: &Parts, secure: bool) -> String {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if secure { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// Opens a share link; its full URL is shown this once.
pub async fn share(
    State(state): State<AppState>,
    console: Console,
    parts: Parts,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let link = api::share(
        State(state.clone()),
        console.caller.clone(),
        Path(id.clone()),
    )
    .await?;
    let url = format!(
        "{}/share/{}",
        origin(&parts, console.secure),
        link.1.0.token
    );
    let chrome = page::chrome(&state, &console, "dashboards").await;
    let body = page::render(
        "dashboard_link.html",
        context! { ..chrome, ..context! { id => id, url => url } },
    )?;
    Ok(page::html(StatusCode::CREATED, body))
}

pub async fn unshare(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    api::unshare(State(state), console.caller.clone(), Path(id.clone())).await?;
    Ok(Redirect::to(&format!("/dashboards/{id}")).into_response())
}

/// The export, downloaded as a file.
pub async fn export(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    Ok(api::export(State(state), console.caller.clone(), Path(id)).await?)
}

// ------------------------------------------------------- the public page

/// `/share/{token}`: a shared dashboard, read only, without logging in.
/// It shows what `GET /api/v1/shared/dashboards/{token}` returns and
/// nothing else; a link revoked or never made is a 404 page saying so.
pub async fn shared_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, Failure> {
    match shared::open(State(state), Path(token.clone())).await {
        Ok(d) => {
            let d = d.0;
            let widgets = serde_json::to_value(reading_order(&d.widgets)).unwrap_or_default();
            let body = page::render(
                "dashboard_shared.html",
                context! {
                    name => d.name, description => d.description, widgets => widgets,
                    source => format!("{}{token}", api::SHARED_PATH),
                    version => env!("CARGO_PKG_VERSION"),
                },
            )?;
            Ok(page::html(StatusCode::OK, body))
        }
        Err(ApiError::NotFound(_)) => {
            let body = page::render(
                "dashboard_shared_missing.html",
                context! { version => env!("CARGO_PKG_VERSION") },
            )?;
            Ok(page::html(StatusCode::NOT_FOUND, body))
        }
        Err(e) => Err(e.into()),
    }
}
