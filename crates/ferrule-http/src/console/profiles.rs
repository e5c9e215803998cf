//! `/profiles`: the tenant's device profiles — list, create, edit (JSON
//! Schemas and defaults typed as JSON), delete after a confirmation —
//! through the API's own profile functions, so their checks (a schema that
//! does not compile, defaults that are not an object, sizes) are the API's
//! and land next to the field they name. Viewers read; editors and up
//! change (the API refuses others with a 403).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::form;
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::PageQuery;
use crate::routes::profiles::{self as api, CreateProfile, ProfileFields, ProfileView};
use crate::state::AppState;

/// Most profiles the list shows (one API page).
const MAX_LISTED: u32 = 1000;

/// The fields a profile form has, in the API's words; errors of any other
/// field go to the form's message.
const FIELDS: [&str; 6] = [
    "name",
    "description",
    "retention_days",
    "telemetry_schema",
    "state_schema",
    "defaults",
];

/// A profile form as typed (kept when refused), and its errors by field.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ProfileForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub retention_days: String,
    #[serde(default)]
    pub telemetry_schema: String,
    #[serde(default)]
    pub state_schema: String,
    #[serde(default)]
    pub defaults: String,
    #[serde(skip_deserializing)]
    pub errors: BTreeMap<String, String>,
    /// Where JSON that does not parse stops, by field: [line, column], for
    /// the editor to put the caret there.
    #[serde(skip_deserializing)]
    pub error_at: BTreeMap<String, [usize; 2]>,
}

impl ProfileForm {
    fn from_view(p: &ProfileView) -> Self {
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        Self {
            name: p.name.clone(),
            description: p.description.clone(),
            retention_days: p.retention_days.map(|d| d.to_string()).unwrap_or_default(),
            telemetry_schema: p.telemetry_schema.as_ref().map(pretty).unwrap_or_default(),
            state_schema: p.state_schema.as_ref().map(pretty).unwrap_or_default(),
            defaults: match &p.defaults {
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                d => pretty(d),
            },
            errors: BTreeMap::new(),
            error_at: BTreeMap::new(),
        }
    }

    /// The fields the API takes, or the errors the form can tell by itself
    /// (JSON that does not parse, a number that is not one).
    fn parse_fields(&mut self) -> Option<ProfileFields> {
        let mut errors = BTreeMap::new();
        let mut error_at = BTreeMap::new();
        let mut json = |field: &str, text: &str| -> Option<serde_json::Value> {
            if text.trim().is_empty() {
                return None;
            }
            match serde_json::from_str(text) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.insert(field.to_owned(), json_error(&e));
                    error_at.insert(field.to_owned(), [e.line(), e.column()]);
                    None
                }
            }
        };
        let telemetry_schema = json("telemetry_schema", &self.telemetry_schema);
        let state_schema = json("state_schema", &self.state_schema);
        let defaults = json("defaults", &self.defaults);
        let retention_days = match self.retention_days.trim() {
            "" => None,
            d => match d.parse::<u32>() {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.insert(
                        "retention_days".into(),
                        "Enter a whole number of days (1 to 36500), or leave it empty to follow the tenant's retention.".into(),
                    );
                    None
                }
            },
        };
        if !errors.is_empty() {
            self.errors = errors;
            self.error_at = error_at;
            return None;
        }
        let description = self.description.trim();
        Some(ProfileFields {
            description: (!description.is_empty()).then(|| description.to_owned()),
            telemetry_schema,
            state_schema,
            retention_days,
            defaults,
        })
    }

    /// The API's refusal next to the field it names; a 403, a 404 or a
    /// server error is the page's.
    fn refused(mut self, e: ApiError) -> Result<(Self, StatusCode), Failure> {
        let (status, _, detail, field) = e.parts();
        if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
            || status.is_server_error()
        {
            return Err(e.into());
        }
        let key = match field.as_deref() {
            Some(f) if FIELDS.contains(&f) => f.to_owned(),
            _ => "message".to_owned(),
        };
        self.errors.insert(key, sentence(&detail));
        Ok((self, status))
    }
}

/// Where JSON stops parsing, as a person finds it in the textarea.
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "the JSON ends too early (a bracket or quote left open?)",
        Category::Syntax => "this is not valid JSON",
        Category::Data | Category::Io => "this JSON cannot be read",
    };
    // serde_json's message ends with its own "at line L column C".
    let cause = e.to_string();
    let cause = cause.split(" at line ").next().unwrap_or(&cause).to_owned();
    format!(
        "Line {}, column {}: {what} ({cause}).",
        e.line(),
        e.column()
    )
}

/// The API's detail as a sentence.
fn sentence(detail: &str) -> String {
    let mut s = detail.to_owned();
    if let Some(first) = s.get(..1) {
        s.replace_range(..1, &first.to_uppercase());
    }
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    description: String,
    retention_days: Option<u32>,
    has_telemetry_schema: bool,
    has_state_schema: bool,
    updated_at: String,
}

pub async fn list(State(state): State<AppState>, console: Console) -> Result<Response, Failure> {
    let page_query = PageQuery {
        limit: Some(MAX_LISTED),
        cursor: None,
    };
    let page = api::list(
        State(state.clone()),
        console.caller.clone(),
        ApiQuery(page_query),
    )
    .await?
    .0;
    let rows: Vec<Row> = page
        .items
        .into_iter()
        .map(|p| Row {
            has_telemetry_schema: p.telemetry_schema.is_some(),
            has_state_schema: p.state_schema.is_some(),
            updated_at: p.updated_at.strftime("%Y-%m-%d %H:%M UTC").to_string(),
            name: p.name,
            description: p.description,
            retention_days: p.retention_days,
        })
        .collect();
    let chrome = page::chrome(&state, &console, "profiles").await;
    let body = page::render(
        "profiles.html",
        context! { ..chrome, ..context! {
            profiles => rows,
            more => page.next_cursor.is_some(),
        } },
    )?;
    Ok(page::html(StatusCode::OK, body))
}

/// The create or edit page; `name` is the saved profile's, `None` for a
/// new one.
async fn editor(
    state: &AppState,
    console: &Console,
    name: Option<&str>,
    form: ProfileForm,
    status: StatusCode,
) -> Result<Response, Failure> {
    editor_page(state, console, name, form, status, false).await
}

async fn editor_page(
    state: &AppState,
    console: &Console,
    name: Option<&str>,
    form: ProfileForm,
    status: StatusCode,
    saved: bool,
) -> Result<Response, Failure> {
    let chrome = page::chrome(state, console, "profiles").await;
    let body = page::render(
        "profile.html",
        context! { ..chrome, ..context! { name => name, form => form, saved => saved } },
    )?;
    Ok(page::html(status, body))
}

pub async fn new(State(state): State<AppState>, console: Console) -> Result<Response, Failure> {
    console.caller.require_write().map_err(Failure::from)?;
    editor(
        &state,
        &console,
        None,
        ProfileForm::default(),
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let mut f: ProfileForm = form::parse(&body)?;
    // Refused before anything is checked, as the API does.
    console.caller.require_write().map_err(Failure::from)?;
    f.name = f.name.trim().to_owned();
    let Some(fields) = f.parse_fields() else {
        return editor(&state, &console, None, f, StatusCode::BAD_REQUEST).await;
    };
    let req = CreateProfile {
        name: f.name.clone(),
        description: fields.description,
        telemetry_schema: fields.telemetry_schema,
        state_schema: fields.state_schema,
        retention_days: fields.retention_days,
        defaults: fields.defaults,
    };
    match api::create(State(state.clone()), console.caller.clone(), JsonBody(req)).await {
        Ok((_, saved)) => {
            Ok(Redirect::to(&format!("/profiles/{}?saved=1", saved.name)).into_response())
        }
        Err(e) => {
            let (f, status) = f.refused(e)?;
            editor(&state, &console, None, f, status).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ShowQuery>,
) -> Result<Response, Failure> {
    let p = api::get(
        State(state.clone()),
        console.caller.clone(),
        Path(name.clone()),
    )
    .await?
    .0;
    let f = ProfileForm::from_view(&p);
    editor_page(
        &state,
        &console,
        Some(&p.name),
        f,
        StatusCode::OK,
        q.saved.is_some(),
    )
    .await
}

pub async fn save(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let mut f: ProfileForm = form::parse(&body)?;
    console.caller.require_write().map_err(Failure::from)?;
    f.name = name.clone();
    let Some(fields) = f.parse_fields() else {
        return editor(&state, &console, Some(&name), f, StatusCode::BAD_REQUEST).await;
    };
    match api::replace(
        State(state.clone()),
        console.caller.clone(),
        Path(name.clone()),
        JsonBody(fields),
    )
    .await
    {
        Ok(saved) => {
            Ok(Redirect::to(&format!("/profiles/{}?saved=1", saved.0.name)).into_response())
        }
        Err(e) => {
            let (f, status) = f.refused(e)?;
            editor(&state, &console, Some(&name), f, status).await
        }
    }
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    console.caller.require_write().map_err(Failure::from)?;
    let p = api::get(State(state.clone()), console.caller.clone(), Path(name))
        .await?
        .0;
    let chrome = page::chrome(&state, &console, "profiles").await;
    let body = page::render(
        "profile_delete.html",
        context! { ..chrome, ..context! { profile => context! { name => p.name } } },
    )?;
    Ok(page::html(StatusCode::OK, body))
}

pub async fn delete(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    match api::delete(
        State(state.clone()),
        console.caller.clone(),
        Path(name.clone()),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/profiles?deleted=1").into_response()),
        // Devices use it: said on the profile's page, which stays.
        Err(ApiError::Conflict(why)) => {
            let p = api::get(State(state.clone()), console.caller.clone(), Path(name))
                .await?
                .0;
            let mut f = ProfileForm::from_view(&p);
            f.errors.insert("message".into(), sentence(&why));
            editor(&state, &console, Some(&p.name), f, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_say_where() {
        let e = serde_json::from_str::<serde_json::Value>("{\n  \"type\": \"object\",\n  oops\n}")
            .unwrap_err();
        let msg = json_error(&e);
        assert!(
            msg.starts_with("Line 3, column 3: this is not valid JSON"),
            "{msg}"
        );
        let e = serde_json::from_str::<serde_json::Value>("{\"a\": [1, 2").unwrap_err();
        assert!(
            json_error(&e).contains("ends too early"),
            "{}",
            json_error(&e)
        );
    }

    #[test]
    fn empty_fields_are_absent_and_bad_ones_named() {
        let mut f = ProfileForm {
            retention_days: "ten".into(),
            defaults: "{".into(),
            telemetry_schema: "{\"type\": \"object\"}".into(),
            ..Default::default()
        };
        assert!(f.parse_fields().is_none());
        assert!(f.errors.contains_key("retention_days"));
        assert!(f.errors.contains_key("defaults"));
        assert_eq!(f.error_at["defaults"], [1, 1]);
        assert!(!f.errors.contains_key("telemetry_schema"));
        let mut f = ProfileForm {
            description: "  ".into(),
            ..Default::default()
        };
        let got = f.parse_fields().unwrap();
        assert!(got.description.is_none() && got.telemetry_schema.is_none());
        assert!(got.defaults.is_none() && got.retention_days.is_none());
    }
}
