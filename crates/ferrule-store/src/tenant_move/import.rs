//! Both halves of a move: a running or stopped data directory's tenant into
//! two extract files, and two extract files into open stores.

use std::collections::BTreeMap;
use std::path::Path;

use ferrule_core::TenantId;

use super::{MoveError, Moved, extract_meta, extract_telemetry, snapshot_database};
use crate::embedded::{EmbeddedStore, META_DB, extract_tenant_id};
use crate::telemetry::embedded::{EmbeddedTelemetry, FILE as TELEMETRY_DB, prepare_tenant_extract};
use crate::telemetry::{PurgeScope, TelemetryStore};

/// Writes `tenant`'s extract of the data directory `data_dir` into `out`
/// (`meta.db`, `telemetry.db`): a snapshot of each file, taken while a
/// server may be writing, then filtered. Returns the metadata rows kept by
/// table.
pub fn archive_tenant(
    data_dir: &Path,
    tenant: &TenantId,
    out: &Path,
) -> Result<BTreeMap<String, u64>, MoveError> {
    let meta = out.join(META_DB);
    let telemetry = out.join(TELEMETRY_DB);
    let source_meta = data_dir.join(META_DB);
    if !source_meta.exists() {
        return Err(MoveError::Invalid(format!(
            "{} has no {META_DB}: is --data-dir the server's data directory?",
            data_dir.display()
        )));
    }
    snapshot_database(&source_meta, &meta)?;
    let rows = extract_meta(&meta, tenant)?;
    let source_telemetry = data_dir.join(TELEMETRY_DB);
    if source_telemetry.exists() {
        snapshot_database(&source_telemetry, &telemetry)?;
    } else {
        // A server that never ran telemetry: an empty store of the right
        // schema.
        prepare_tenant_extract(&telemetry)?;
    }
    extract_telemetry(&telemetry, tenant)?;
    Ok(rows)
}

/// The stores a tenant is imported into.
pub struct TenantImport<'a> {
    pub store: &'a EmbeddedStore,
    pub telemetry: &'a EmbeddedTelemetry,
}

/// Imports the extract in `dir` (`meta.db`, `telemetry.db`; the caller's
/// own copies, which are changed) as tenant `as_id`, or under its own id.
///
/// In order: the metadata is checked without writing (conflicts refuse
/// here, nothing changed); leftovers of an earlier tenant of that id are
/// purged from telemetry; the telemetry is imported; the metadata is
/// imported. Should the last step fail, the telemetry imported is purged
/// again, so a failed import leaves no trace.
pub async fn import_tenant(
    into: TenantImport<'_>,
    dir: &Path,
    as_id: Option<TenantId>,
) -> Result<Moved, MoveError> {
    let meta = dir.join(META_DB);
    let telemetry = dir.join(TELEMETRY_DB);
    for (file, path) in [(META_DB, &meta), (TELEMETRY_DB, &telemetry)] {
        if !path.is_file() {
            return Err(MoveError::Invalid(format!("it has no {file}")));
        }
    }
    let from = {
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || extract_tenant_id(&meta))
            .await
            .map_err(|e| crate::StoreError::backend("tenant import task failed", e))??
    };
    let to = as_id.unwrap_or_else(|| from.clone());
    into.store
        .import_tenant(meta.clone(), to.clone(), false)
        .await?;
    {
        let telemetry = telemetry.clone();
        tokio::task::spawn_blocking(move || prepare_tenant_extract(&telemetry))
            .await
            .map_err(|e| crate::StoreError::backend("tenant import task failed", e))??;
    }
    into.telemetry
        .purge(PurgeScope::Tenant(to.clone()))?
        .done()
        .await?;
    let imported = into
        .telemetry
        .import_tenant(telemetry, from.clone(), to.clone())
        .await?;
    let (rows, devices) = match into.store.import_tenant(meta, to.clone(), true).await {
        Ok(done) => done,
        Err(e) => {
            if let Err(undo) = purge(into.telemetry, &to).await {
                tracing::error!(tenant = %to, error = %undo, "removing the telemetry of a failed tenant import failed");
            }
            return Err(e);
        }
    };
    Ok(Moved {
        from: from.to_string(),
        tenant: to.to_string(),
        rows,
        devices,
        series: imported.series,
        points: imported.points,
        events: imported.events,
    })
}

async fn purge(telemetry: &EmbeddedTelemetry, tenant: &TenantId) -> Result<(), MoveError> {
    telemetry
        .purge(PurgeScope::Tenant(tenant.clone()))?
        .done()
        .await?;
    Ok(())
}
