//! The MQTT access rules (ACL) on `/settings`: list, add, edit, delete,
//! through the API's own ACL rule functions — every role reads them, the
//! owner role changes them (the API refuses others with a 403), and the
//! API's topic check puts its error next to the topic field.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use ferrule_core::acl::{AclAction, AclSubject, Effect};
use minijinja::context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::form;
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::routes::acl_rules::{self, CreateAclRule, UpdateAclRule};
use crate::state::AppState;

/// A rule as the list shows it (the API's words for each choice).
#[derive(Debug, Serialize)]
pub struct RuleRow {
    id: String,
    effect: String,
    action: String,
    topic: String,
    subject: String,
    priority: i32,
}

/// A rule form as typed (kept when refused), and its errors by field
/// (`effect`, `action`, `topic`, `subject`, `priority`, `message`).
#[derive(Debug, Deserialize, Serialize)]
pub struct RuleForm {
    #[serde(default)]
    pub effect: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub priority: String,
    #[serde(skip_deserializing)]
    pub errors: BTreeMap<String, String>,
}

impl Default for RuleForm {
    fn default() -> Self {
        Self {
            effect: "allow".into(),
            action: "publish".into(),
            topic: String::new(),
            subject: "devices".into(),
            priority: "0".into(),
            errors: BTreeMap::new(),
        }
    }
}

/// The API's name of a choice (`"allow"`, `"publish"`, ...).
fn name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The tenant's rules in the order the broker tries them.
pub async fn rows(state: &AppState, console: &Console) -> Result<Vec<RuleRow>, Failure> {
    Ok(
        acl_rules::list(State(state.clone()), console.caller.clone())
            .await?
            .0
            .into_iter()
            .map(|r| RuleRow {
                effect: name(&r.effect),
                action: name(&r.action),
                subject: name(&r.subject),
                id: r.id,
                topic: r.topic,
                priority: r.priority,
            })
            .collect(),
    )
}

/// A choice from a form in the API's words, or the error for its field.
fn choice<T: DeserializeOwned>(
    f: &mut BTreeMap<String, String>,
    field: &str,
    v: &str,
    choices: &str,
) -> Option<T> {
    let parsed = serde_json::from_value(serde_json::Value::String(v.to_owned())).ok();
    if parsed.is_none() {
        f.insert(field.to_owned(), format!("Choose one of {choices}."));
    }
    parsed
}

/// The rule a form asks for, or the form with its errors.
/// (Boxed: a form is large beside a rule.)
fn to_rule(mut f: RuleForm) -> Result<CreateAclRule, Box<RuleForm>> {
    let mut errors = BTreeMap::new();
    let effect: Option<Effect> = choice(&mut errors, "effect", &f.effect, "allow, deny");
    let action: Option<AclAction> =
        choice(&mut errors, "action", &f.action, "publish, subscribe, all");
    let subject: Option<AclSubject> = choice(
        &mut errors,
        "subject",
        &f.subject,
        "devices, users, anonymous, all",
    );
    let priority = match f.priority.trim() {
        "" => Some(0),
        p => p.parse::<i32>().ok().or_else(|| {
            errors.insert(
                "priority".into(),
                "Enter a whole number; higher goes first.".into(),
            );
            None
        }),
    };
    match (effect, action, subject, priority) {
        (Some(effect), Some(action), Some(subject), Some(priority)) if errors.is_empty() => {
            Ok(CreateAclRule {
                effect,
                action,
                topic: f.topic.trim().to_owned(),
                subject,
                priority: Some(priority),
            })
        }
        _ => {
            f.errors = errors;
            Err(Box::new(f))
        }
    }
}

/// The API's refusal next to its field; a 403 or a server error is the
/// page's.
fn refused(e: ApiError, mut f: RuleForm) -> Result<(RuleForm, StatusCode), Failure> {
    let (status, _, detail, field) = e.parts();
    if status == StatusCode::FORBIDDEN || status.is_server_error() {
        return Err(e.into());
    }
    let key = match field.as_deref() {
        Some(k @ ("effect" | "action" | "topic" | "subject" | "priority")) => k.to_owned(),
        _ => "message".to_owned(),
    };
    f.errors.insert(key, format!("{detail}."));
    Ok((f, status))
}

pub async fn create(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: RuleForm = form::parse(&body)?;
    // Refused before anything is checked, as the API does.
    console
        .caller
        .require_access_admin()
        .map_err(Failure::from)?;
    let rule = match to_rule(f) {
        Ok(r) => r,
        Err(f) => {
            return super::settings::render_with_acl(&state, &console, *f, StatusCode::BAD_REQUEST)
                .await;
        }
    };
    let kept = RuleForm {
        topic: rule.topic.clone(),
        ..form::parse(&body)?
    };
    match acl_rules::create(State(state.clone()), console.caller.clone(), JsonBody(rule)).await {
        Ok(_) => Ok(Redirect::to("/settings?saved=acl#acl-title").into_response()),
        Err(e) => {
            let (f, status) = refused(e, kept)?;
            super::settings::render_with_acl(&state, &console, f, status).await
        }
    }
}

async fn edit_page(
    state: &AppState,
    console: &Console,
    id: &str,
    f: RuleForm,
    status: StatusCode,
) -> Result<Response, Failure> {
    let chrome = page::chrome(state, console, "settings").await;
    let body = page::render(
        "settings_acl.html",
        context! { ..chrome, ..context! { id => id, form => f } },
    )?;
    Ok(page::html(status, body))
}

pub async fn show(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let r = acl_rules::get(
        State(state.clone()),
        console.caller.clone(),
        Path(id.clone()),
    )
    .await?
    .0;
    let f = RuleForm {
        effect: name(&r.effect),
        action: name(&r.action),
        topic: r.topic,
        subject: name(&r.subject),
        priority: r.priority.to_string(),
        errors: BTreeMap::new(),
    };
    edit_page(&state, &console, &id, f, StatusCode::OK).await
}

pub async fn save(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: RuleForm = form::parse(&body)?;
    console
        .caller
        .require_access_admin()
        .map_err(Failure::from)?;
    let rule = match to_rule(f) {
        Ok(r) => r,
        Err(f) => return edit_page(&state, &console, &id, *f, StatusCode::BAD_REQUEST).await,
    };
    let kept = RuleForm {
        topic: rule.topic.clone(),
        ..form::parse(&body)?
    };
    let change = UpdateAclRule {
        effect: Some(rule.effect),
        action: Some(rule.action),
        topic: Some(rule.topic),
        subject: Some(rule.subject),
        priority: rule.priority,
    };
    match acl_rules::update(
        State(state.clone()),
        console.caller.clone(),
        Path(id.clone()),
        JsonBody(change),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/settings?saved=acl#acl-title").into_response()),
        Err(e @ ApiError::NotFound(_)) => Err(e.into()),
        Err(e) => {
            let (f, status) = refused(e, kept)?;
            edit_page(&state, &console, &id, f, status).await
        }
    }
}

pub async fn delete(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    acl_rules::delete(State(state.clone()), console.caller.clone(), Path(id)).await?;
    Ok(Redirect::to("/settings?saved=acl-deleted#acl-title").into_response())
}
