//! `/settings`: the tenant's telemetry retention and disk budget, through
//! the API's own telemetry settings functions, so its rules hold here too:
//! only owners (and admins) change them, and only a server admin sets or
//! lifts the disk budget ceiling (an owner's budget may only be lower).
//! The MQTT access rules on the same page are [`super::acl`]'s.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use minijinja::context;
use serde::Serialize;

use super::acl::{self, RuleForm};
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::routes::telemetry_settings::{self, SettingsView, UpdateSettings};
use crate::state::AppState;

/// Budgets are typed in MiB: bytes are too fine for people.
const MIB: u64 = 1024 * 1024;

/// Form field of an existing per-profile override: `profile:<name>`.
const PROFILE_PREFIX: &str = "profile:";

#[derive(Debug, Serialize)]
struct Override {
    profile: String,
    days: String,
}

/// The retention form as typed (kept when refused), and its errors by
/// field (`retention_days`, `profiles`, `disk_budget`, `ceiling`,
/// `message`).
#[derive(Debug, Default, Serialize)]
struct RetentionForm {
    retention_days: String,
    overrides: Vec<Override>,
    new_profile: String,
    new_profile_days: String,
    disk_budget: String,
    ceiling: String,
    errors: BTreeMap<String, String>,
}

impl RetentionForm {
    fn from_view(v: &SettingsView) -> Self {
        Self {
            retention_days: v.retention_days.map(|d| d.to_string()).unwrap_or_default(),
            overrides: v
                .profiles
                .iter()
                .map(|(p, d)| Override {
                    profile: p.clone(),
                    days: d.to_string(),
                })
                .collect(),
            disk_budget: mib_text(v.disk_budget_bytes),
            ceiling: mib_text(v.disk_budget_ceiling_bytes),
            ..Default::default()
        }
    }

    fn parse(body: &[u8]) -> Self {
        let mut f = Self::default();
        for (k, v) in form_urlencoded::parse(body) {
            let v = v.trim().to_owned();
            match &*k {
                "retention_days" => f.retention_days = v,
                "new_profile" => f.new_profile = v,
                "new_profile_days" => f.new_profile_days = v,
                "disk_budget" => f.disk_budget = v,
                "ceiling" => f.ceiling = v,
                k => {
                    if let Some(profile) = k.strip_prefix(PROFILE_PREFIX) {
                        f.overrides.push(Override {
                            profile: profile.to_owned(),
                            days: v,
                        });
                    }
                }
            }
        }
        f
    }
}

/// Bytes as whole MiB for a form field (rounded up, so that a budget
/// shown is never below the one in force); empty for none.
fn mib_text(bytes: Option<u64>) -> String {
    bytes
        .map(|b| b.div_ceil(MIB).to_string())
        .unwrap_or_default()
}

/// What the page shows of the disk: use against the budget in force.
#[derive(Debug, Serialize)]
struct Disk {
    used: u64,
    /// The lower of the owner's budget and the admin's ceiling.
    limit: Option<u64>,
    ceiling: Option<u64>,
    percent: Option<u64>,
}

fn disk(v: &SettingsView) -> Disk {
    let limit = match (v.disk_budget_bytes, v.disk_budget_ceiling_bytes) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Disk {
        used: v.disk_bytes,
        limit,
        ceiling: v.disk_budget_ceiling_bytes,
        percent: limit.map(|l| {
            if l == 0 {
                100
            } else {
                (u128::from(v.disk_bytes) * 100 / u128::from(l)) as u64
            }
        }),
    }
}

async fn render(
    state: &AppState,
    console: &Console,
    form: Option<RetentionForm>,
    acl_form: Option<RuleForm>,
    saved: Option<&str>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let view = telemetry_settings::get(State(state.clone()), console.caller.clone())
        .await?
        .0;
    let form = form.unwrap_or_else(|| RetentionForm::from_view(&view));
    let rules = acl::rows(state, console).await?;
    let saved = match saved {
        Some("retention") => Some("Retention and disk budget saved."),
        Some("acl") => Some("Access rule saved."),
        Some("acl-deleted") => Some("Access rule deleted."),
        _ => None,
    };
    let chrome = page::chrome(state, console, "settings").await;
    let body = page::render(
        "settings.html",
        context! { ..chrome, ..context! {
            settings => &view,
            disk => disk(&view),
            form => form,
            rules => rules,
            acl_form => acl_form.unwrap_or_default(),
            saved => saved,
            can_set_retention => console.caller.role.can_manage_access(),
        }},
    )?;
    Ok(page::html(status, body))
}

/// The page with a refused access rule form in it.
pub async fn render_with_acl(
    state: &AppState,
    console: &Console,
    acl_form: RuleForm,
    status: StatusCode,
) -> Result<Response, Failure> {
    render(state, console, None, Some(acl_form), None, status).await
}

#[derive(Debug, serde::Deserialize)]
pub struct Shown {
    saved: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    console: Console,
    axum::extract::Query(q): axum::extract::Query<Shown>,
) -> Result<Response, Failure> {
    render(
        &state,
        &console,
        None,
        None,
        q.saved.as_deref(),
        StatusCode::OK,
    )
    .await
}

/// Whole days from a field: empty is none, anything else must be a
/// whole number (the API checks the range).
fn days(v: &str) -> Result<Option<u32>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| "Enter a whole number of days, or leave it empty.".to_owned())
}

fn mib(v: &str) -> Result<Option<u64>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<u64>()
        .ok()
        .and_then(|m| m.checked_mul(MIB))
        .map(Some)
        .ok_or_else(|| "Enter a whole number of MiB, or leave it empty for no limit.".to_owned())
}

/// The settings the form asks for, or the errors of its fields.
fn to_update(f: &RetentionForm, admin: bool) -> Result<UpdateSettings, BTreeMap<String, String>> {
    let mut errors = BTreeMap::new();
    let retention_days = days(&f.retention_days).unwrap_or_else(|e| {
        errors.insert("retention_days".to_owned(), e);
        None
    });
    let mut profiles = BTreeMap::new();
    // An override left empty is removed.
    for o in &f.overrides {
        match days(&o.days) {
            Ok(Some(d)) => {
                profiles.insert(o.profile.clone(), d);
            }
            Ok(None) => {}
            Err(e) => {
                errors.insert("profiles".to_owned(), format!("{}: {e}", o.profile));
            }
        }
    }
    match (f.new_profile.is_empty(), days(&f.new_profile_days)) {
        (true, Ok(None)) => {}
        (false, Ok(Some(d))) => {
            profiles.insert(f.new_profile.clone(), d);
        }
        (true, Ok(Some(_))) => {
            errors.insert(
                "new_profile".to_owned(),
                "Name the device profile these days are for.".to_owned(),
            );
        }
        (false, Ok(None)) => {
            errors.insert(
                "new_profile_days".to_owned(),
                "Enter the days to keep this profile's telemetry.".to_owned(),
            );
        }
        (_, Err(e)) => {
            errors.insert("new_profile_days".to_owned(), e);
        }
    }
    let disk_budget_bytes = mib(&f.disk_budget).unwrap_or_else(|e| {
        errors.insert("disk_budget".to_owned(), e);
        None
    });
    // Only an admin's form has the ceiling; an owner's leaves it as the
    // admin set it (the API refuses an owner who names it).
    let disk_budget_ceiling_bytes = if admin {
        Some(mib(&f.ceiling).unwrap_or_else(|e| {
            errors.insert("ceiling".to_owned(), e);
            None
        }))
    } else {
        None
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(UpdateSettings {
        retention_days,
        profiles,
        disk_budget_bytes,
        disk_budget_ceiling_bytes,
    })
}

/// The form field an API refusal belongs to.
fn field_of(e: &ApiError, field: Option<&str>) -> &'static str {
    if matches!(e, ApiError::Conflict(_)) {
        return "disk_budget";
    }
    match field {
        Some("retention_days") => "retention_days",
        Some(f) if f == "profiles" || f.starts_with("profiles.") => "profiles",
        Some("disk_budget_bytes") => "disk_budget",
        Some("disk_budget_ceiling_bytes") => "ceiling",
        _ => "message",
    }
}

pub async fn save_retention(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let mut f = RetentionForm::parse(&body);
    // An owner's form has no ceiling field; one sent anyway goes to the
    // API, which refuses it (403) — the ceiling is the admin's.
    let admin = console.is_admin() || !f.ceiling.is_empty();
    let update = match to_update(&f, admin) {
        Ok(u) => u,
        Err(errors) => {
            f.errors = errors;
            return render(
                &state,
                &console,
                Some(f),
                None,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let saved = telemetry_settings::put(
        State(state.clone()),
        console.caller.clone(),
        JsonBody(update),
    )
    .await;
    match saved {
        Ok(_) => Ok(Redirect::to("/settings?saved=retention#retention-title").into_response()),
        Err(e) => {
            let (status, _, detail, field) = e.parts();
            if status == StatusCode::FORBIDDEN || status.is_server_error() {
                return Err(e.into());
            }
            // The new override's own days are the ones refused.
            let key = if field.as_deref() == Some(&*format!("profiles.{}", f.new_profile)) {
                "new_profile_days"
            } else {
                field_of(&e, field.as_deref())
            };
            let detail = if key == "disk_budget" && matches!(e, ApiError::Conflict(_)) {
                format!(
                    "{detail}. Choose a budget at or below the ceiling, or ask a server admin \
                     to raise it."
                )
            } else {
                format!("{detail}.")
            };
            f.errors.insert(key.to_owned(), detail);
            render(&state, &console, Some(f), None, None, status).await
        }
    }
}
