//! `/rules`: the tenant's rules — the list with counters and last error,
//! the editor (SQL errors at their line and column), enable and disable, a
//! dry run on a sample or on recent messages, and the rule's dead letters
//! with replay and delete.
//!
//! Every read and write goes through the API's own rule functions
//! (`routes::rules`, `routes::dead_letters`): roles, validation and the
//! redaction of webhook headers for viewers are the API's.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::form;
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::PageQuery;
use crate::routes::dead_letters;
use crate::routes::rules::{
    self as api, NewRule, RecentMessages, RuleFields, TestMessage, TestRule,
};
use crate::state::AppState;

/// Rules listed on one page (the API's largest page).
const LIST_LIMIT: u32 = 1000;
/// Dead letters shown on a rule's page, newest first.
const LETTERS_SHOWN: u32 = 50;

/// The editor's fields, as posted (also the dry run's).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RuleForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    sql: String,
    /// A JSON array of actions.
    #[serde(default)]
    actions: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    enabled: Option<String>,
    /// The version the edit started from (empty for a new rule).
    #[serde(default)]
    version: String,
    /// Dry run: `sample` or `recent`.
    #[serde(default)]
    source: String,
    #[serde(default)]
    sample_topic: String,
    #[serde(default)]
    sample_payload: String,
    #[serde(default)]
    recent_topic: String,
    #[serde(default)]
    recent_limit: String,
}

impl RuleForm {
    fn blank() -> Self {
        Self {
            sql: "SELECT * FROM 'devices/+/telemetry'".into(),
            actions: "[]".into(),
            enabled: Some("on".into()),
            source: "sample".into(),
            sample_topic: "devices/pump-1/telemetry".into(),
            sample_payload: "{\"temperature\": 21.5}".into(),
            recent_topic: "devices/+/telemetry".into(),
            recent_limit: "10".into(),
            ..Default::default()
        }
    }

    /// The form of a stored rule (the API's view), dry-run fields blank.
    fn of(rule: &Json) -> Self {
        let s = |k: &str| rule[k].as_str().unwrap_or_default().to_owned();
        Self {
            id: s("id"),
            name: s("name"),
            sql: s("sql"),
            actions: serde_json::to_string_pretty(&rule["actions"]).unwrap_or_default(),
            enabled: rule["enabled"]
                .as_bool()
                .unwrap_or(false)
                .then(|| "on".into()),
            version: rule["version"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            ..Self::blank()
        }
    }
}

/// Errors by field (`id`, `name`, `sql`, `actions`, `form`, and the dry
/// run's `sample_topic`, `sample_payload`, `recent_topic`, `recent_limit`,
/// `run`), with the SQL's line and column when the API names them.
#[derive(Debug, Default, Serialize)]
struct Errors {
    fields: BTreeMap<String, String>,
    sql_at: Option<(u64, u64)>,
}

impl Errors {
    fn one(field: &str, detail: impl Into<String>) -> Self {
        let mut e = Self::default();
        e.fields.insert(field.into(), detail.into());
        e
    }

    /// An API refusal next to the field it names; `fallback` takes the rest.
    fn from_api(e: &ApiError, fields: &[&str], fallback: &str) -> Self {
        if let ApiError::InvalidAt {
            line,
            column,
            detail,
            ..
        } = e
        {
            let mut out = Self::one("sql", format!("line {line}, column {column}: {detail}"));
            out.sql_at = Some((*line, *column));
            return out;
        }
        let (_, _, detail, field) = e.parts();
        let field = match field {
            Some(f) if fields.contains(&f.as_str()) => f,
            // `actions[2]`: the actions field, the index in the message.
            Some(f) if f.starts_with("actions") => "actions".to_owned(),
            Some(f) if f.starts_with("messages") || f.starts_with("recent") => "run".to_owned(),
            _ => fallback.to_owned(),
        };
        Self::one(&field, detail)
    }
}

/// The actions textarea as the API's list: empty is none.
fn parse_actions(text: &str) -> Result<Vec<Json>, Errors> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Array(items)) => Ok(items),
        Ok(_) => Err(Errors::one(
            "actions",
            "Actions must be a JSON list: [ {\"type\": \"republish\", …}, … ] (or [] for none).",
        )),
        Err(e) => Err(Errors::one(
            "actions",
            format!("Not valid JSON ({e}). Fix it or write [] for no actions."),
        )),
    }
}

/// The JSON body of one of the API's responses.
async fn body_json(resp: Response) -> Result<Json, Failure> {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading a rule: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("reading a rule: {e}")).into())
}

async fn fetch(state: &AppState, console: &Console, id: &str) -> Result<Json, Failure> {
    let resp = api::get(
        State(state.clone()),
        console.caller.clone(),
        Path(id.to_owned()),
    )
    .await?;
    body_json(resp).await
}

/// The rule's dead letters, newest first (none when webhooks are off).
async fn letters(state: &AppState, console: &Console, id: &str) -> Vec<Json> {
    let got = dead_letters::list(
        State(state.clone()),
        console.caller.clone(),
        Path(id.to_owned()),
        ApiQuery(PageQuery {
            limit: Some(LETTERS_SHOWN),
            cursor: None,
        }),
    )
    .await;
    match got {
        Ok(page) => serde_json::to_value(&page.0.items)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// The list of rules.
pub async fn list(State(state): State<AppState>, console: Console) -> Result<Response, Failure> {
    let page = api::list(
        State(state.clone()),
        console.caller.clone(),
        ApiQuery(PageQuery {
            limit: Some(LIST_LIMIT),
            cursor: None,
        }),
    )
    .await?;
    let rules = serde_json::to_value(&page.0.items).unwrap_or_default();
    let chrome = page::chrome(&state, &console, "rules").await;
    let body = page::render(
        "rules.html",
        context! { ..chrome, ..context! { rules => rules, more => page.0.next_cursor.is_some() } },
    )?;
    Ok(page::html(StatusCode::OK, body))
}

/// Everything the editor page shows.
struct Editor<'a> {
    /// The stored rule (None for a new one).
    rule: Option<Json>,
    form: &'a RuleForm,
    errors: &'a Errors,
    /// A dry run's results.
    results: Option<Json>,
    letters: Vec<Json>,
    notice: Option<String>,
}

async fn editor_page(
    state: &AppState,
    console: &Console,
    e: Editor<'_>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let chrome = page::chrome(state, console, "rules").await;
    let body = page::render(
        "rule.html",
        context! { ..chrome, ..context! {
            rule => e.rule, f => e.form, errors => e.errors.fields,
            sql_at => e.errors.sql_at, results => e.results, letters => e.letters,
            notice => e.notice,
        }},
    )?;
    Ok(page::html(status, body))
}

/// The editor for a new rule.
pub async fn new(State(state): State<AppState>, console: Console) -> Result<Response, Failure> {
    let form = RuleForm::blank();
    let editor = Editor {
        rule: None,
        form: &form,
        errors: &Errors::default(),
        results: None,
        letters: Vec::new(),
        notice: None,
    };
    editor_page(&state, &console, editor, StatusCode::OK).await
}

/// A rule's page: its editor, counters, dry run and dead letters.
pub async fn show(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let rule = fetch(&state, &console, &id).await?;
    let form = RuleForm::of(&rule);
    let letters = letters(&state, &console, &id).await;
    let editor = Editor {
        rule: Some(rule),
        form: &form,
        errors: &Errors::default(),
        results: None,
        letters,
        notice: None,
    };
    editor_page(&state, &console, editor, StatusCode::OK).await
}

/// Shows the editor again with what was typed and what is wrong.
async fn refused(
    state: &AppState,
    console: &Console,
    id: Option<&str>,
    form: &RuleForm,
    errors: Errors,
    status: StatusCode,
) -> Result<Response, Failure> {
    let (rule, letters) = match id {
        Some(id) => (
            fetch(state, console, id).await.ok(),
            letters(state, console, id).await,
        ),
        None => (None, Vec::new()),
    };
    let editor = Editor {
        rule,
        form,
        errors: &errors,
        results: None,
        letters,
        notice: None,
    };
    editor_page(state, console, editor, status).await
}

/// Errors that are not the form's (not allowed, not found, the server's)
/// are a page of their own.
fn field_error(e: &ApiError) -> bool {
    let (status, ..) = e.parts();
    !(status == StatusCode::FORBIDDEN
        || status == StatusCode::NOT_FOUND
        || status.is_server_error())
}

/// Creates a rule through the API's create.
pub async fn create(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: RuleForm = form::parse(&body)?;
    let actions = match parse_actions(&f.actions) {
        Ok(a) => a,
        Err(errors) => {
            return refused(&state, &console, None, &f, errors, StatusCode::BAD_REQUEST).await;
        }
    };
    let request = NewRule {
        id: form::optional(Some(f.id.clone())),
        name: form::optional(Some(f.name.clone())),
        description: None,
        sql: f.sql.clone(),
        actions,
        enabled: Some(f.enabled.is_some()),
    };
    match api::create(
        State(state.clone()),
        console.caller.clone(),
        JsonBody(request),
    )
    .await
    {
        Ok(resp) => {
            let rule = body_json(resp).await?;
            let id = rule["id"].as_str().unwrap_or_default();
            Ok(Redirect::to(&format!("/rules/{id}")).into_response())
        }
        Err(e) if field_error(&e) => {
            let (status, ..) = e.parts();
            let errors = match &e {
                ApiError::Conflict(detail) => Errors::one("id", detail.clone()),
                _ => Errors::from_api(&e, &["id", "name", "sql", "actions"], "form"),
            };
            refused(&state, &console, None, &f, errors, status).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Saves an edited rule, only if nobody changed it since the page loaded.
pub async fn save(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: RuleForm = form::parse(&body)?;
    let actions = match parse_actions(&f.actions) {
        Ok(a) => a,
        Err(errors) => {
            return refused(
                &state,
                &console,
                Some(&id),
                &f,
                errors,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let mut headers = HeaderMap::new();
    // The version the page was read at: a change made since is refused.
    if !f.version.trim().is_empty()
        && let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", f.version.trim()))
    {
        headers.insert(header::IF_MATCH, v);
    }
    let request = RuleFields {
        name: form::optional(Some(f.name.clone())),
        description: None,
        sql: f.sql.clone(),
        actions,
        enabled: Some(f.enabled.is_some()),
    };
    // The API's PUT replaces every field: keep the description the console
    // does not edit.
    let request = match fetch(&state, &console, &id).await {
        Ok(rule) => RuleFields {
            description: form::optional(rule["description"].as_str().map(str::to_owned)),
            ..request
        },
        Err(e) => return Err(e),
    };
    match api::replace(
        State(state.clone()),
        console.caller.clone(),
        Path(id.clone()),
        headers,
        JsonBody(request),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/rules/{id}")).into_response()),
        Err(ApiError::PreconditionFailed(_)) => {
            let errors = Errors::one(
                "form",
                "This rule was changed meanwhile (in another tab or by someone else). \
                 Reload the page to see the current rule, then make your change again.",
            );
            refused(
                &state,
                &console,
                Some(&id),
                &f,
                errors,
                StatusCode::PRECONDITION_FAILED,
            )
            .await
        }
        Err(e) if field_error(&e) => {
            let (status, ..) = e.parts();
            let errors = Errors::from_api(&e, &["name", "sql", "actions"], "form");
            refused(&state, &console, Some(&id), &f, errors, status).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn enable(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    api::enable(State(state), console.caller.clone(), Path(id.clone())).await?;
    Ok(Redirect::to(&format!("/rules/{id}")).into_response())
}

pub async fn disable(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    api::disable(State(state), console.caller.clone(), Path(id.clone())).await?;
    Ok(Redirect::to(&format!("/rules/{id}")).into_response())
}

/// Deletes a rule (the rule's page asks first, in a `<details>`).
pub async fn delete(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    api::delete(State(state), console.caller.clone(), Path(id)).await?;
    Ok(Redirect::to("/rules").into_response())
}

/// What the dry run's fields ask the API for.
fn test_request(f: &RuleForm, actions: Vec<Json>) -> Result<TestRule, Errors> {
    let (messages, recent) = if f.source == "recent" {
        let limit = match f.recent_limit.trim() {
            "" => None,
            n => Some(n.parse::<u32>().map_err(|_| {
                Errors::one("recent_limit", "Give a number of messages from 1 to 100.")
            })?),
        };
        let recent = RecentMessages {
            topic: f.recent_topic.trim().to_owned(),
            limit,
        };
        (None, Some(recent))
    } else {
        let payload = match serde_json::from_str::<Json>(&f.sample_payload) {
            Ok(v) => v,
            // Not JSON: the payload's text, as a device could send it.
            Err(_) => Json::String(f.sample_payload.clone()),
        };
        let message = TestMessage {
            topic: f.sample_topic.trim().to_owned(),
            payload,
            client_id: None,
            timestamp: None,
        };
        (Some(vec![message]), None)
    };
    Ok(TestRule {
        sql: f.sql.clone(),
        actions,
        messages,
        recent,
    })
}

/// Pretty JSON.
fn pretty(v: &Json) -> Json {
    Json::String(serde_json::to_string_pretty(v).unwrap_or_default())
}

/// The dry run's results with their JSON written out for people: each
/// message's `payload_text` and `output_text`, each action's `text`.
fn readable(mut results: Json) -> Json {
    for m in results.as_array_mut().into_iter().flatten() {
        let payload = pretty(&m["payload"]);
        let output = (!m["output"].is_null()).then(|| pretty(&m["output"]));
        if let Some(actions) = m["actions"].as_array_mut() {
            for a in actions {
                let text = pretty(a);
                let transition =
                    (!a["transition"].is_null()).then(|| Json::String(a["transition"].to_string()));
                if let Some(o) = a.as_object_mut() {
                    o.insert("text".into(), text);
                    if let Some(t) = transition {
                        o.insert("transition_text".into(), t);
                    }
                }
            }
        }
        if let Some(o) = m.as_object_mut() {
            o.insert("payload_text".into(), payload);
            if let Some(out) = output {
                o.insert("output_text".into(), out);
            }
        }
    }
    results
}

/// A dry run of the editor's draft. htmx asks for the results alone; a
/// browser without script gets the editor again with the results.
pub async fn test(
    State(state): State<AppState>,
    console: Console,
    parts: Parts,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: RuleForm = form::parse(&body)?;
    let fragment = parts.headers.contains_key("hx-request");
    let outcome = match parse_actions(&f.actions).and_then(|a| test_request(&f, a)) {
        Err(errors) => Err(errors),
        Ok(request) => {
            match api::test(
                State(state.clone()),
                console.caller.clone(),
                JsonBody(request),
            )
            .await
            {
                Ok(report) => Ok(readable(
                    serde_json::to_value(&report.0.results).unwrap_or_default(),
                )),
                Err(e) if field_error(&e) => Err(Errors::from_api(
                    &e,
                    &["sql", "actions", "recent_topic", "recent_limit"],
                    "run",
                )),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let (results, errors) = match outcome {
        Ok(results) => (Some(results), Errors::default()),
        Err(errors) => (None, errors),
    };
    if fragment {
        let body = page::render(
            "rule_test.html",
            context! { results => results, errors => errors.fields, sql_at => errors.sql_at },
        )?;
        return Ok(page::html(StatusCode::OK, body));
    }
    let id = form::optional(Some(f.id.clone()));
    let (rule, letters) = match id.as_deref().filter(|_| !f.version.trim().is_empty()) {
        Some(id) => (
            fetch(&state, &console, id).await.ok(),
            letters(&state, &console, id).await,
        ),
        None => (None, Vec::new()),
    };
    let status = if errors.fields.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let editor = Editor {
        rule,
        form: &f,
        errors: &errors,
        results,
        letters,
        notice: None,
    };
    editor_page(&state, &console, editor, status).await
}

/// Sends a dead letter again; the rule's page says how it went.
pub async fn replay(
    State(state): State<AppState>,
    console: Console,
    Path((id, letter)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let outcome = dead_letters::replay(
        State(state.clone()),
        console.caller.clone(),
        Path((id.clone(), letter.clone())),
    )
    .await?;
    let notice = if outcome.0.ok {
        format!("Dead letter {letter} was delivered.")
    } else {
        format!(
            "Dead letter {letter} failed again: {}. Fix the endpoint or the rule, then replay it.",
            outcome
                .0
                .error
                .clone()
                .unwrap_or_else(|| "no answer".into())
        )
    };
    let rule = fetch(&state, &console, &id).await?;
    let form = RuleForm::of(&rule);
    let letters = letters(&state, &console, &id).await;
    let editor = Editor {
        rule: Some(rule),
        form: &form,
        errors: &Errors::default(),
        results: None,
        letters,
        notice: Some(notice),
    };
    editor_page(&state, &console, editor, StatusCode::OK).await
}

pub async fn delete_letter(
    State(state): State<AppState>,
    console: Console,
    Path((id, letter)): Path<(String, String)>,
) -> Result<Response, Failure> {
    dead_letters::delete(
        State(state),
        console.caller.clone(),
        Path((id.clone(), letter)),
    )
    .await?;
    Ok(Redirect::to(&format!("/rules/{id}#dead-letters")).into_response())
}
