//! A device's credentials: add, list, rotate, revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrule_core::secret::normalize_fingerprint;
use jiff::Timestamp;
use serde::Deserialize;
use utoipa::ToSchema;

use super::devices::device_id;
use super::views::{CredentialView, IssuedCredential};
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::JsonBody;
use crate::state::AppState;

/// Shortest device password accepted.
const MIN_DEVICE_PASSWORD: usize = 12;

/// `{"type": "token"}`, `{"type": "password", "password": …}` or
/// `{"type": "x509", "fingerprint": "sha256:HEX"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum CreateCredential {
    Token {
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<Timestamp>,
    },
    Password {
        /// At least 12 characters; used with MQTT username `DEVICE@TENANT`.
        #[schema(min_length = 12)]
        password: String,
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<Timestamp>,
    },
    X509 {
        /// SHA-256 fingerprint of the client certificate (DER), `sha256:HEX`.
        /// Unique within the tenant; other tenants may register the same
        /// certificate, and a device registered in several names its tenant
        /// at login (username `DEVICE@TENANT` or `@TENANT` without a
        /// password, or the TLS server name `TENANT.…`).
        #[schema(pattern = "^sha256:[0-9A-Fa-f]{64}$")]
        fingerprint: String,
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<Timestamp>,
    },
}

/// Lists a device's credentials (never their secrets).
#[utoipa::path(get, operation_id = "listCredentials", path = "/api/v1/devices/{id}/credentials", tag = "devices",
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<CredentialView>), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CredentialView>>> {
    caller.require_write()?;
    let creds = state
        .store()
        .list_credentials(&caller.tenant, &device_id(&id)?)
        .await?;
    Ok(Json(creds.into_iter().map(CredentialView::from).collect()))
}

/// Add a credential. A token credential's token is in this response, once.
#[utoipa::path(post, operation_id = "createCredential", path = "/api/v1/devices/{id}/credentials", tag = "devices",
    params(("id" = String, Path)), request_body = CreateCredential,
    responses((status = 201, body = IssuedCredential), (status = 404, body = Problem),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "the fingerprint is already registered in this tenant")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CreateCredential>,
) -> ApiResult<(StatusCode, Json<IssuedCredential>)> {
    caller.require_write()?;
    let device = device_id(&id)?;
    let identity = &state.identity;
    let (credential, token) = match req {
        CreateCredential::Token { expires_at } => {
            let (c, t) = identity
                .issue_device_token(&caller.tenant, &device, expires_at)
                .await?;
            (c, Some(t))
        }
        CreateCredential::Password {
            password,
            expires_at,
        } => {
            if password.chars().count() < MIN_DEVICE_PASSWORD {
                return Err(ApiError::invalid(
                    "password",
                    format!("must be at least {MIN_DEVICE_PASSWORD} characters"),
                ));
            }
            (
                identity
                    .add_device_password(&caller.tenant, &device, &password, expires_at)
                    .await?,
                None,
            )
        }
        CreateCredential::X509 {
            fingerprint,
            expires_at,
        } => {
            let fp = normalize_fingerprint(&fingerprint).ok_or_else(|| {
                ApiError::invalid("fingerprint", "expected sha256: followed by 64 hex digits")
            })?;
            (
                identity
                    .add_device_fingerprint(&caller.tenant, &device, &fp, expires_at)
                    .await?,
                None,
            )
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(IssuedCredential {
            credential: credential.into(),
            token,
        }),
    ))
}

/// Revoke a credential: it stops working at once.
#[utoipa::path(delete, operation_id = "deleteCredential", path = "/api/v1/devices/{id}/credentials/{credential_id}", tag = "devices",
    params(("id" = String, Path), ("credential_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, credential_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let device = device_id(&id)?;
    state
        .store()
        .delete_credential(&caller.tenant, &device, &credential_id)
        .await?;
    // A connection cannot say which credential it used: all of the device's
    // reconnect, and those holding a revoked secret stay out.
    state.disconnect_mqtt(
        &caller.tenant,
        Some(ferrule_core::PrincipalKind::device_owner(&device)),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate a token credential: a new token replaces the old, which stops
/// working at once. The new token is in this response, once.
#[utoipa::path(post, operation_id = "rotateCredential", path = "/api/v1/devices/{id}/credentials/{credential_id}/rotate", tag = "devices",
    params(("id" = String, Path), ("credential_id" = String, Path)),
    responses((status = 200, body = IssuedCredential), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, credential_id)): Path<(String, String)>,
) -> ApiResult<Json<IssuedCredential>> {
    caller.require_write()?;
    let device = device_id(&id)?;
    let (credential, token) = state
        .identity
        .rotate_device_token(&caller.tenant, &device, &credential_id)
        .await?;
    state.disconnect_mqtt(
        &caller.tenant,
        Some(ferrule_core::PrincipalKind::device_owner(&device)),
    );
    Ok(Json(IssuedCredential {
        credential: credential.into(),
        token: Some(token),
    }))
}
