//! `/apps`: the tenant's custom apps — list, upload, open, replace,
//! delete. Uploads and replacements send the zip as it is (not a form):
//! `apps.js` posts the file with the CSRF header, shows its size and the
//! progress, and puts the server's answer next to the field it is about.
//! Deleting is a plain form.
//!
//! Everything goes through the API's own app functions (`routes::apps`),
//! so roles, limits and checks are the API's.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use serde_json::json;

use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::pagination::PageQuery;
use crate::routes::apps::{self as api, AppKeyRole, NewAppQuery};
use crate::state::AppState;

/// Apps listed (the API's largest page).
const LIST_LIMIT: u32 = 1000;

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
    let apps = serde_json::to_value(&page.0.items).unwrap_or_default();
    let chrome = page::chrome(&state, &console, "apps").await;
    let body = page::render(
        "apps.html",
        context! { ..chrome, ..context! {
            apps => apps,
            max_bundle_bytes => crate::routes::app_bundle::MAX_BUNDLE_BYTES,
        }},
    )?;
    Ok(page::html(StatusCode::OK, body))
}

/// The answer to the upload script: where the app is, or which field is
/// wrong and why.
fn answer(result: Result<String, ApiError>) -> Response {
    match result {
        Ok(url) => (StatusCode::OK, Json(json!({"url": url}))).into_response(),
        Err(e) => {
            let (status, ..) = e.parts();
            let (field, detail) = match &e {
                ApiError::Invalid { field, detail } => {
                    let f = match field.as_deref() {
                        Some("id") => "id",
                        Some("name") => "name",
                        Some("role") => "role",
                        _ => "bundle",
                    };
                    (f, detail.clone())
                }
                ApiError::PayloadTooLarge(limit) => (
                    "bundle",
                    format!("The bundle is larger than {limit} bytes: make it smaller."),
                ),
                ApiError::Conflict(_) => (
                    "id",
                    "An app with this id exists: choose another id, or replace that app's bundle."
                        .into(),
                ),
                ApiError::Forbidden(why) => ("form", format!("Not allowed: {why}.")),
                ApiError::NotFound(_) => {
                    ("form", "That app no longer exists: reload the page.".into())
                }
                _ => (
                    "form",
                    "The server could not save the app: try again.".into(),
                ),
            };
            (status, Json(json!({"field": field, "error": detail}))).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

/// `POST /apps/-/upload?id=&name=&role=`, the zip as the body.
pub async fn upload(
    State(state): State<AppState>,
    console: Console,
    axum::extract::Query(q): axum::extract::Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        console.caller.require_write()?;
        let role = match q.role.as_str() {
            "" | "viewer" => AppKeyRole::Viewer,
            "editor" => AppKeyRole::Editor,
            _ => return Err(ApiError::invalid("role", "viewer or editor")),
        };
        let bundle = api::read_bundle(&headers, body).await?;
        let query = NewAppQuery {
            id: Some(q.id.trim().to_owned()).filter(|s| !s.is_empty()),
            name: Some(q.name.trim().to_owned()).filter(|s| !s.is_empty()),
            role: Some(role),
        };
        let app = api::create_app(&state, &console.caller, query, bundle).await?;
        Ok(api::app_url(&app.tenant, &app.id))
    }
    .await;
    answer(result)
}

/// `POST /apps/-/{id}/replace`, the zip as the body.
pub async fn replace(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        console.caller.require_write()?;
        let bundle = api::read_bundle(&headers, body).await?;
        let app = api::replace_app(&state, &console.caller, &id, bundle).await?;
        Ok(api::app_url(&app.tenant, &app.id))
    }
    .await;
    answer(result)
}

/// `POST /apps/-/{id}/delete` (a form): the app, its files and its key.
pub async fn delete(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    api::delete_app(&state, &console.caller, &id).await?;
    Ok(Redirect::to("/apps").into_response())
}
