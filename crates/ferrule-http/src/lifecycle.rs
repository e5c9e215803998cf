//! Creating and deleting tenants and devices, across every place that keeps
//! something of them: the metadata store (identities, credentials, rules,
//! the broker's persisted state), the [`Directory`](ferrule_store::Directory)
//! in memory, the telemetry store, and the broker (connections, sessions,
//! retained messages). The API's handlers and the start-up resume go
//! through here and nowhere else.
//!
//! Deleting, in this order:
//! 1. The metadata store deletes the tenant or device and everything it
//!    keeps of it in one transaction, recording a pending deletion: no
//!    identity of it authenticates any more, and the id cannot be created
//!    again until step 5.
//! 2. The directory forgets it and the telemetry store's purge is queued
//!    in the same step, so every accepted point is queued either before the
//!    purge (and goes with it) or never (unknown device). The broker's
//!    gatekeeper now denies the deleted identity everything.
//! 3. Once the purge is durable, the broker closes the connections (0x98),
//!    ends the sessions without wills and drops the retained messages, in
//!    storage too.
//! 4. A deleted tenant's cached ACL policy is dropped.
//! 5. The pending deletion is finished, and a 2xx says so.
//!
//! A crash anywhere leaves the pending deletion, which [`resume`] finishes
//! at start; repeating a DELETE that did not answer finishes it too. The
//! telemetry store removes the rows themselves in the background.
//!
//! Creating purges first any telemetry an earlier version left under the
//! id, so that a new tenant or device always starts empty.

use std::time::Duration;

use crate::broker::BrokerPurge;
use ferrule_core::{DeviceId, TenantId};
use ferrule_store::telemetry::{PurgeQueued, PurgeScope, TelemetryError};
use ferrule_store::{Changing, Device, NewDevice, PendingDeletion, StoreError, Tenant};

use crate::observe;
use crate::state::AppState;

/// Longest a step waits for a store before the request gives up (the
/// deletion then finishes on a retry or at the next start).
const STEP_WAIT: Duration = Duration::from_secs(30);

/// Why creating or deleting did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(
        "{0} did not finish within {STEP_WAIT:?}; the deletion completes when the request is \
         repeated or at the next start"
    )]
    TimedOut(&'static str),
}

type Result<T, E = LifecycleError> = std::result::Result<T, E>;

async fn within<T>(step: &'static str, f: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(STEP_WAIT, f)
        .await
        .map_err(|_| LifecycleError::TimedOut(step))
}

/// Queues the telemetry purge of `scope` (no-op without telemetry).
fn queue_purge(state: &AppState, scope: PurgeScope) -> Result<Option<PurgeQueued>> {
    match &state.telemetry {
        Some(t) => Ok(Some(t.store.purge(scope)?)),
        None => Ok(None),
    }
}

async fn purged(queued: Option<PurgeQueued>) -> Result<()> {
    if let Some(q) = queued {
        within("removing telemetry", q.done()).await??;
    }
    Ok(())
}

pub async fn create_tenant(state: &AppState, id: &TenantId, name: &str) -> Result<Tenant> {
    let change = state.directory.changing().await;
    // Asked of the store, before the purge below, which must never touch a
    // live tenant.
    match state.store().get_tenant(id).await {
        Ok(_) => return Err(StoreError::Conflict { kind: "tenant" }.into()),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    purged(queue_purge(state, PurgeScope::Tenant(id.clone()))?).await?;
    let tenant = state.store().create_tenant(id, name).await?;
    state.directory.add_tenant(&change, id);
    Ok(tenant)
}

pub async fn create_device(state: &AppState, new: &NewDevice) -> Result<Device> {
    let change = state.directory.changing().await;
    // Asked of the store, before the purge below, which must never touch a
    // live device.
    match state.store().get_device(&new.tenant, &new.id).await {
        Ok(_) => return Err(StoreError::Conflict { kind: "device" }.into()),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    purged(queue_purge(
        state,
        PurgeScope::Device(new.tenant.clone(), new.id.clone()),
    )?)
    .await?;
    let device = state.store().create_device(new).await?;
    state.directory.add_device(&change, &new.tenant, &new.id);
    if let Some(services) = &state.devices {
        services
            .profiles
            .device_in(&device.tenant, &device.id, &device.profile);
    }
    Ok(device)
}

/// Deletes a tenant and everything it owns. Tenant `default` cannot be
/// deleted.
pub async fn delete_tenant(state: &AppState, id: &TenantId) -> Result<()> {
    let change = state.directory.changing().await;
    let deletion = PendingDeletion {
        tenant: id.clone(),
        device: None,
    };
    let deleted = state.store().delete_tenant(id).await;
    resumable(state, &deletion, deleted).await?;
    finish(state, deletion, change).await
}

/// Deletes a device and everything it owns.
pub async fn delete_device(state: &AppState, tenant: &TenantId, device: &DeviceId) -> Result<()> {
    let change = state.directory.changing().await;
    let deletion = PendingDeletion {
        tenant: tenant.clone(),
        device: Some(device.clone()),
    };
    let deleted = state.store().delete_device(tenant, device).await;
    resumable(state, &deletion, deleted).await?;
    finish(state, deletion, change).await
}

/// Finishes the deletions a previous run left unfinished (call at start,
/// before clients connect); returns how many finished. One that fails is
/// logged and stays pending, for the next start or a repeated DELETE.
pub async fn resume(state: &AppState) -> Result<usize> {
    let mut finished = 0;
    for deletion in state.store().pending_deletions().await? {
        let device = deletion.device.as_ref().map(|d| d.to_string());
        let tenant = deletion.tenant.clone();
        tracing::info!(%tenant, device, "resuming an unfinished deletion");
        let change = state.directory.changing().await;
        match finish(state, deletion, change).await {
            Ok(()) => finished += 1,
            Err(e) => {
                tracing::error!(%tenant, device, error = %e, "an unfinished deletion failed again; it stays pending");
            }
        }
    }
    Ok(finished)
}

/// A store deletion's outcome, where "not found" with the deletion still
/// pending means an earlier request did not finish: finish it now.
async fn resumable(
    state: &AppState,
    deletion: &PendingDeletion,
    deleted: Result<(), StoreError>,
) -> Result<()> {
    match deleted {
        Err(StoreError::NotFound { .. })
            if state.store().pending_deletions().await?.contains(deletion) =>
        {
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Steps 2 to 5 (see the module docs) of a deletion already made in the
/// metadata store.
async fn finish(state: &AppState, deletion: PendingDeletion, change: Changing<'_>) -> Result<()> {
    let tenant = &deletion.tenant;
    let queued = match &deletion.device {
        Some(device) => state.directory.remove_device(&change, tenant, device, || {
            queue_purge(state, PurgeScope::Device(tenant.clone(), device.clone()))
        }),
        None => state.directory.remove_tenant(&change, tenant, || {
            queue_purge(state, PurgeScope::Tenant(tenant.clone()))
        }),
    }?;
    drop(change);
    if let Some(rules) = &state.rules {
        match &deletion.device {
            Some(device) => rules.engine.forget_device(tenant, device),
            None => rules.engine.forget_tenant(tenant),
        }
    }
    if let Some(devices) = &state.devices {
        devices.forget(tenant, deletion.device.as_ref());
        match &deletion.device {
            Some(device) => devices.profiles.device_gone(tenant, device),
            None => devices.profiles.tenant_gone(tenant),
        }
    }
    // Connections cache what their identity may do under a policy version:
    // move it, so the deleted identity's last messages are refused.
    state.acl.touch(tenant);
    purged(queued).await?;
    let broker = match &state.mqtt {
        Some(mqtt) => {
            within(
                "removing MQTT sessions and retained messages",
                mqtt.broker.purge(tenant, deletion.device.as_ref()),
            )
            .await?
        }
        None => BrokerPurge::default(),
    };
    if deletion.device.is_none() {
        state.acl.forget(tenant);
    }
    // After the broker closed the connections: their last disconnects are
    // ignored (the directory no longer has the device), and this drops
    // what came before.
    if let Some(devices) = &state.devices {
        devices
            .connectivity
            .forget(tenant, deletion.device.as_ref());
    }
    state.store().finish_deletion(&deletion).await?;
    observe::Deleted {
        tenant,
        device: deletion.device.as_ref(),
        connections: broker.connections,
        sessions: broker.sessions,
        retained: broker.retained,
    }
    .emit();
    Ok(())
}
