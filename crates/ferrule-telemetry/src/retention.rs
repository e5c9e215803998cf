//! The background retention pass: every tenant's retention settings
//! applied now and then, through the store trait.

use std::sync::Arc;
use std::time::Duration;

use ferrule_core::TenantId;
use ferrule_core::message::now_ms;
use ferrule_store::telemetry::{TelemetryStore, retention};
use ferrule_store::{MetaStore, PageRequest, ProfileStore, StoreError};
use tokio_util::sync::CancellationToken;

/// Applies every tenant's retention now, then every `interval`.
pub async fn retention_loop(
    meta: Arc<dyn MetaStore>,
    profiles: Arc<dyn ProfileStore>,
    telemetry: Arc<dyn TelemetryStore>,
    server_default: Option<u32>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let tenants = match all_tenants(&*meta).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "retention: listing tenants failed");
                continue;
            }
        };
        for tenant in tenants {
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = retention::apply(
                &*meta,
                Some(&*profiles),
                &*telemetry,
                &tenant,
                now_ms(),
                server_default,
            )
            .await
            {
                tracing::warn!(%tenant, error = %e, "retention pass failed");
            }
        }
    }
}

async fn all_tenants(meta: &dyn MetaStore) -> Result<Vec<TenantId>, StoreError> {
    let mut out = Vec::new();
    let mut page = PageRequest {
        limit: 1000,
        after: None,
    };
    loop {
        let got = meta.list_tenants(&page).await?;
        out.extend(got.items.iter().map(|t| t.id.clone()));
        match got.next {
            Some(next) => page.after = Some(next),
            None => return Ok(out),
        }
    }
}
