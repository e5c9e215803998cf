//! Twin history and finished commands are kept as long as the tenant keeps
//! its telemetry (the tenant's default retention, or the server's).

use std::sync::Arc;
use std::time::Duration;

use ferrule_core::message::now_ms;
use ferrule_store::commands::CommandStore;
use ferrule_store::telemetry::{TelemetryStore, retention::days_for};
use ferrule_store::twin::TwinStore;
use ferrule_store::{MetaStore, PageRequest};
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;

/// What the pass reads and prunes.
pub struct HistoryRetention {
    pub meta: Arc<dyn MetaStore>,
    pub telemetry: Arc<dyn TelemetryStore>,
    pub twins: Arc<dyn TwinStore>,
    pub commands: Arc<dyn CommandStore>,
    pub server_default: Option<u32>,
}

impl HistoryRetention {
    /// Prunes every tenant now, then every `interval`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "twin and command retention pass failed");
            }
        }
    }

    /// One pass over every tenant; returns how many rows went.
    pub async fn pass(&self) -> Result<u64, String> {
        let mut page = PageRequest {
            limit: 1000,
            after: None,
        };
        let mut removed = 0;
        loop {
            let got = self
                .meta
                .list_tenants(&page)
                .await
                .map_err(|e| e.to_string())?;
            for tenant in &got.items {
                let settings = self
                    .telemetry
                    .retention(&tenant.id)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(days) = days_for(&settings, None, None, self.server_default) else {
                    continue;
                };
                let before = now_ms().saturating_sub(i64::from(days) * DAY_MS);
                removed += self
                    .twins
                    .prune_twin_history(&tenant.id, before)
                    .await
                    .map_err(|e| e.to_string())?;
                removed += self
                    .commands
                    .prune_commands(&tenant.id, before)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            match got.next {
                Some(next) => page.after = Some(next),
                None => return Ok(removed),
            }
        }
    }
}
