//! `/access`: the tenant's users and API keys — list, create (a key's
//! secret shown once), change a user's role, delete a user, revoke a key —
//! through the API's own routes, so its rules hold here too: the owner role
//! is needed, and no one grants or touches a role above their own (403).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use ferrule_core::Role;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::devices::when;
use super::form;
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::{ApiQuery, ClientIp, JsonBody};
use crate::pagination::PageQuery;
use crate::routes::api_keys::{self, CreateApiKey};
use crate::routes::users::{self, CreateUser, UpdateUser};
use crate::state::AppState;

/// Users and keys listed (the API's largest page).
const LISTED: u32 = 1000;

#[derive(Debug, Serialize)]
struct UserRow {
    id: String,
    email: String,
    role: String,
    created_at: String,
    /// The caller's own account: no delete button.
    own: bool,
}

#[derive(Debug, Serialize)]
struct KeyRow {
    id: String,
    name: String,
    role: String,
    created_at: String,
    expires_at: String,
    revoked: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct UserForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct KeyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

/// What a refused form sent back, and its errors by field
/// (`user_email`, `user_password`, `user_role`, `key_name`, `key_role`,
/// `message`).
#[derive(Debug, Default, Serialize)]
struct Forms {
    user: UserForm,
    key: KeyForm,
    errors: BTreeMap<String, String>,
}

/// The roles the caller may grant, highest first.
fn grantable(console: &Console) -> Vec<&'static str> {
    Role::ALL
        .into_iter()
        .filter(|r| console.caller.role.can_grant(*r))
        .filter(|r| !r.is_admin() || console.is_admin())
        .map(Role::as_str)
        .collect()
}

fn page_query() -> ApiQuery<PageQuery> {
    ApiQuery(PageQuery {
        limit: Some(LISTED),
        cursor: None,
    })
}

async fn render(
    state: &AppState,
    console: &Console,
    forms: Forms,
    status: StatusCode,
) -> Result<Response, Failure> {
    let own = console.caller.user_id().map(str::to_owned);
    let users: Vec<UserRow> =
        users::list(State(state.clone()), console.caller.clone(), page_query())
            .await?
            .0
            .items
            .into_iter()
            .map(|u| UserRow {
                own: own.as_deref() == Some(u.id.as_str()),
                id: u.id,
                email: u.email,
                role: u.role.as_str().to_owned(),
                created_at: when(Some(u.created_at)),
            })
            .collect();
    let keys: Vec<KeyRow> =
        api_keys::list(State(state.clone()), console.caller.clone(), page_query())
            .await?
            .0
            .items
            .into_iter()
            .map(|k| KeyRow {
                revoked: k.revoked_at.is_some(),
                id: k.id,
                name: k.name,
                role: k.role.as_str().to_owned(),
                created_at: when(Some(k.created_at)),
                expires_at: k
                    .expires_at
                    .map(|t| when(Some(t)))
                    .unwrap_or_else(|| "never".into()),
            })
            .collect();
    let chrome = page::chrome(state, console, "access").await;
    let body = page::render(
        "access.html",
        context! { ..chrome, ..context! {
            users => users, keys => keys, roles => grantable(console), forms => forms,
        }},
    )?;
    Ok(page::html(status, body))
}

pub async fn page(State(state): State<AppState>, console: Console) -> Result<Response, Failure> {
    let forms = Forms {
        user: UserForm {
            role: "viewer".into(),
            ..Default::default()
        },
        key: KeyForm {
            role: "viewer".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    render(&state, &console, forms, StatusCode::OK).await
}

/// A role from a form, or the error for its field.
fn role(v: &str) -> Result<Role, String> {
    v.parse()
        .map_err(|_| "Choose one of the roles listed.".to_owned())
}

/// The API's refusal of a form: a 403 is the page's (the caller may not do
/// this at all), anything else goes next to its field.
fn field_error(
    e: ApiError,
    fields: &[(&str, &str)],
    fallback: &str,
) -> Result<(String, String, StatusCode), Failure> {
    let (status, _, detail, field) = e.parts();
    if status == StatusCode::FORBIDDEN || status.is_server_error() {
        return Err(e.into());
    }
    let key = field
        .and_then(|f| fields.iter().find(|(api, _)| *api == f).map(|(_, k)| *k))
        .or_else(|| matches!(e, ApiError::Conflict(_)).then_some(fallback))
        .unwrap_or("message");
    Ok((key.to_owned(), detail, status))
}

pub async fn create_user(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: UserForm = form::parse(&body)?;
    let mut forms = Forms {
        key: KeyForm {
            role: "viewer".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let role = match role(&f.role) {
        Ok(r) => r,
        Err(why) => {
            forms.errors.insert("user_role".into(), why);
            forms.user = UserForm {
                password: String::new(),
                ..f
            };
            return render(&state, &console, forms, StatusCode::BAD_REQUEST).await;
        }
    };
    let created = users::create(
        State(state.clone()),
        console.caller.clone(),
        JsonBody(CreateUser {
            email: f.email.trim().to_owned(),
            password: f.password.clone(),
            role,
        }),
    )
    .await;
    match created {
        Ok(_) => Ok(Redirect::to("/access#users-title").into_response()),
        Err(e) => {
            let (key, detail, status) = field_error(
                e,
                &[("email", "user_email"), ("password", "user_password")],
                "user_email",
            )?;
            forms.errors.insert(key, detail);
            // A password is never sent back into the page.
            forms.user = UserForm {
                password: String::new(),
                ..f
            };
            render(&state, &console, forms, status).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

pub async fn change_role(
    State(state): State<AppState>,
    console: Console,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: RoleForm = form::parse(&body)?;
    let new = match role(&f.role) {
        Ok(r) => r,
        Err(why) => return message(&state, &console, why, StatusCode::BAD_REQUEST).await,
    };
    // The caller's own session survives a change of its own role, as it
    // does in the API for the session making the change.
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", console.token)) {
        headers.insert(header::AUTHORIZATION, v);
    }
    let changed = users::update(
        State(state.clone()),
        console.caller.clone(),
        ClientIp(ip),
        headers,
        Path(id),
        JsonBody(UpdateUser {
            role: Some(new),
            password: None,
            email: None,
            current_password: None,
        }),
    )
    .await;
    match changed {
        Ok(_) => Ok(Redirect::to("/access#users-title").into_response()),
        Err(e @ ApiError::Conflict(_)) => {
            let (_, _, detail, _) = e.parts();
            message(&state, &console, detail, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The page with a message over it (a refusal not tied to one field).
async fn message(
    state: &AppState,
    console: &Console,
    text: String,
    status: StatusCode,
) -> Result<Response, Failure> {
    let forms = Forms {
        user: UserForm {
            role: "viewer".into(),
            ..Default::default()
        },
        key: KeyForm {
            role: "viewer".into(),
            ..Default::default()
        },
        errors: BTreeMap::from([("message".to_owned(), text)]),
    };
    render(state, console, forms, status).await
}

/// Asks before deleting a user or revoking a key.
pub async fn confirm(
    State(state): State<AppState>,
    console: Console,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (what, label, action) = match kind.as_str() {
        "users" => {
            let u = users::get(
                State(state.clone()),
                console.caller.clone(),
                Path(id.clone()),
            )
            .await?
            .0;
            (
                "Delete user",
                u.email,
                "Their sessions end, and the API keys they created are revoked. This cannot be undone.",
            )
        }
        "api-keys" => {
            let k = api_keys::get(
                State(state.clone()),
                console.caller.clone(),
                Path(id.clone()),
            )
            .await?
            .0;
            (
                "Revoke API key",
                k.name,
                "It stops working at once, and so do the keys it created. It stays listed, marked revoked.",
            )
        }
        _ => return Err(ApiError::NotFound("page").into()),
    };
    let chrome = page::chrome(&state, &console, "access").await;
    let body = page::render(
        "access_delete.html",
        context! { ..chrome, ..context! {
            what => what, label => label, action => action, kind => kind, id => id,
        }},
    )?;
    Ok(page::html(StatusCode::OK, body))
}

pub async fn delete(
    State(state): State<AppState>,
    console: Console,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let done = match kind.as_str() {
        "users" => users::delete(State(state.clone()), console.caller.clone(), Path(id))
            .await
            .map(|_| ()),
        "api-keys" => api_keys::revoke(State(state.clone()), console.caller.clone(), Path(id))
            .await
            .map(|_| ()),
        _ => Err(ApiError::NotFound("page")),
    };
    match done {
        Ok(()) => Ok(Redirect::to("/access").into_response()),
        Err(e @ ApiError::Conflict(_)) => {
            let (_, _, detail, _) = e.parts();
            message(&state, &console, detail, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates an API key; its secret is shown on this answer only.
pub async fn create_key(
    State(state): State<AppState>,
    console: Console,
    body: Bytes,
) -> Result<Response, Failure> {
    let f: KeyForm = form::parse(&body)?;
    let mut forms = Forms {
        user: UserForm {
            role: "viewer".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let role = match role(&f.role) {
        Ok(r) => r,
        Err(why) => {
            forms.errors.insert("key_role".into(), why);
            forms.key = f;
            return render(&state, &console, forms, StatusCode::BAD_REQUEST).await;
        }
    };
    let created = api_keys::create(
        State(state.clone()),
        console.caller.clone(),
        JsonBody(CreateApiKey {
            name: f.name.trim().to_owned(),
            role,
            expires_at: None,
        }),
    )
    .await;
    match created {
        Ok((_, key)) => {
            let key = key.0;
            let chrome = page::chrome(&state, &console, "access").await;
            let body = page::render(
                "access_key.html",
                context! { ..chrome, ..context! {
                    id => key.key.id, name => key.key.name, role => key.key.role.as_str(),
                    secret => key.secret,
                }},
            )?;
            Ok(page::html(StatusCode::CREATED, body))
        }
        Err(e) => {
            let (key, detail, status) = field_error(e, &[("name", "key_name")], "key_name")?;
            forms.errors.insert(key, detail);
            forms.key = f;
            render(&state, &console, forms, status).await
        }
    }
}
