//! `POST /api/v1/system/tenants/import`: a tenant archive (`ferrule backup
//! --tenant`) into this running server, for admins.
//!
//! The body streams to a scratch file in the data directory, within
//! [`TenantMoves::max_archive_bytes`] (413 beyond), and the archive is
//! verified whole (checksums, scope, versions) before anything is
//! imported. The import itself is `ferrule_store::tenant_move`; then every
//! cache that start-up fills learns the tenant (directory of tenants and
//! devices, device profiles, rules, ACL policy), so its devices connect and
//! its rules run at once.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use ferrule_core::TenantId;
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::telemetry::embedded::EmbeddedTelemetry;
use ferrule_store::tenant_move::{self, MoveError, Moved, TenantImport};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// What the import needs beside the shared state: the embedded stores
/// themselves and where to put the uploaded archive.
#[derive(Clone)]
pub struct TenantMoves {
    pub store: EmbeddedStore,
    pub telemetry: Arc<EmbeddedTelemetry>,
    /// Scratch files go here (the data directory: same disk as the data).
    pub scratch: PathBuf,
    /// Largest archive accepted.
    pub max_archive_bytes: u64,
}

/// The default bound on an uploaded tenant archive: 4 GiB.
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Import the tenant under this id instead of its own.
    #[serde(rename = "as")]
    #[param(rename = "as")]
    pub as_id: Option<String>,
}

/// What was imported.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedTenant {
    /// The tenant's id in the archive.
    pub from: String,
    /// Its id here.
    pub tenant: String,
    /// Metadata rows by table (`devices`, `rules`, `dashboards`, …).
    pub rows: std::collections::BTreeMap<String, u64>,
    pub series: u64,
    pub points: u64,
    pub events: u64,
}

impl From<Moved> for ImportedTenant {
    fn from(m: Moved) -> Self {
        ImportedTenant {
            from: m.from,
            tenant: m.tenant,
            rows: m.rows,
            series: m.series,
            points: m.points,
            events: m.events,
        }
    }
}

impl From<MoveError> for ApiError {
    fn from(e: MoveError) -> Self {
        match e {
            MoveError::TenantExists(_)
            | MoveError::EmailTaken(_)
            | MoveError::TokenTaken(_)
            | MoveError::Taken(_) => ApiError::Conflict(e.to_string()),
            MoveError::Invalid(_)
            | MoveError::Archive(_)
            | MoveError::NoSuchTenant(_)
            | MoveError::TenantBeingDeleted(_) => ApiError::Invalid {
                field: Some("body".into()),
                detail: e.to_string(),
            },
            MoveError::Store(e) => e.into(),
            MoveError::Telemetry(e) => e.into(),
        }
    }
}

/// Imports a tenant archive (admins): its devices reconnect here with
/// their tokens. 409 when the tenant id exists here (use `?as=NEW_ID`), an
/// email or token is already registered here.
#[utoipa::path(post, operation_id = "importTenant", path = "/api/v1/system/tenants/import", tag = "tenants",
    params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A tenant archive made by `ferrule backup --tenant ID FILE`"),
    responses((status = 201, body = ImportedTenant), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem)))]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<ImportedTenant>)> {
    caller.require_admin()?;
    let as_id = q
        .as_id
        .map(|id| TenantId::new(&id).map_err(|e| ApiError::invalid("as", e.to_string())))
        .transpose()?;
    let moves = state
        .tenant_moves
        .clone()
        .ok_or_else(|| ApiError::Unavailable("tenant imports need the embedded store".into()))?;
    // Locked while it lives: a killed server's upload is swept later.
    let scratch = ferrule_store::scratch::create(&moves.scratch, ".tenant-import-")
        .map_err(|e| ApiError::Internal(format!("creating a scratch directory: {e}")))?;
    let archive = scratch.path().join("archive");
    receive(body, &archive, moves.max_archive_bytes).await?;
    let unpacked = scratch.path().join("tenant");
    {
        let (archive, unpacked) = (archive.clone(), unpacked.clone());
        tokio::task::spawn_blocking(move || tenant_move::unpack_archive(&archive, &unpacked))
            .await
            .map_err(|e| ApiError::Internal(format!("reading the archive: {e}")))??;
    }
    let change = state.directory.changing().await;
    let moved = tenant_move::import_tenant(
        TenantImport {
            store: &moves.store,
            telemetry: &moves.telemetry,
        },
        &unpacked,
        as_id,
    )
    .await?;
    let tenant = TenantId::new(&moved.tenant)
        .map_err(|e| ApiError::Internal(format!("imported tenant id: {e}")))?;
    // Before the directory knows the tenant: until then its clients have
    // no rights, so none subscribes or publishes before its stored
    // session and the retained messages are there.
    load_broker_state(&state, &tenant).await;
    state.directory.add_tenant(&change, &tenant);
    for device in &moved.devices {
        state.directory.add_device(&change, &tenant, device);
    }
    drop(change);
    refresh(&state, &tenant).await?;
    tracing::info!(from = %moved.from, %tenant, devices = moved.devices.len(), points = moved.points, "imported a tenant");
    Ok((StatusCode::CREATED, Json(moved.into())))
}

/// Streams the body into `path`, refusing more than `limit` bytes.
async fn receive(body: Body, path: &std::path::Path, limit: u64) -> ApiResult<()> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::Internal(format!("creating the scratch file: {e}")))?;
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid("body", format!("reading the body: {e}")))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(ApiError::TooLarge(format!(
                "the tenant archive is larger than the limit of {limit} bytes; import it into a \
                 stopped server with `ferrule restore --tenant FILE --data-dir DIR`"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("writing the scratch file: {e}")))?;
    }
    file.sync_all()
        .await
        .map_err(|e| ApiError::Internal(format!("writing the scratch file: {e}")))?;
    Ok(())
}

/// The broker learns the tenant's retained messages and persistent
/// sessions. The import itself has committed by now: a failure here is
/// logged, and they load at the next start.
async fn load_broker_state(state: &AppState, tenant: &TenantId) {
    let Some(mqtt) = &state.mqtt else { return };
    match mqtt.broker.load_tenant(tenant).await {
        Ok((sessions, retained)) => {
            tracing::debug!(%tenant, sessions, retained, "loaded an imported tenant's MQTT state");
        }
        Err(e) => {
            tracing::error!(%tenant, error = %e, "loading an imported tenant's MQTT sessions and retained messages failed; they load when the server restarts");
        }
    }
}

/// Every cache start-up fills learns the imported tenant.
async fn refresh(state: &AppState, tenant: &TenantId) -> ApiResult<()> {
    state.acl.invalidate(tenant);
    if let Some(devices) = &state.devices {
        devices
            .profiles
            .load_tenant(tenant)
            .await
            .map_err(|e| ApiError::Internal(format!("loading the tenant's profiles: {e}")))?;
        devices.twins.load_tenant(tenant).await?;
        devices.commands.load_tenant(tenant).await?;
    }
    if let Some(rules) = &state.rules {
        rules.engine.load_tenant(tenant).await?;
    }
    Ok(())
}
