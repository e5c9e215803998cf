//! Observability events of the telemetry store's purges: metric names and
//! labels live here only.

use ferrule_core::TenantId;
use metrics::{counter, gauge};

use super::PurgeScope;

pub const PURGES: &str = "ferrule_telemetry_purges_total";
pub const PURGE_PENDING: &str = "ferrule_telemetry_purge_pending";
pub const PURGE_RECLAIMED: &str = "ferrule_telemetry_purge_reclaimed_total";

/// What was purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Tenant,
    Device,
}

impl ScopeKind {
    pub fn of(scope: &PurgeScope) -> Self {
        match scope {
            PurgeScope::Tenant(_) => ScopeKind::Tenant,
            PurgeScope::Device(..) => ScopeKind::Device,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Tenant => "tenant",
            ScopeKind::Device => "device",
        }
    }
}

/// A deleted device's or tenant's telemetry was detached: invisible from
/// now on, its rows left for the background reclaim.
pub struct PurgeDetached<'a> {
    pub scope: ScopeKind,
    pub tenant: &'a TenantId,
    pub series: usize,
    pub events: u64,
}

impl PurgeDetached<'_> {
    pub fn emit(self) {
        counter!(PURGES, "scope" => self.scope.as_str()).increment(1);
        tracing::info!(
            scope = self.scope.as_str(),
            tenant = %self.tenant,
            series = self.series,
            events = self.events,
            "telemetry of a deleted {} detached; removing it in the background",
            self.scope.as_str()
        );
    }
}

/// One background step deleted purged rows.
pub struct PurgeReclaimed {
    pub chunks: u64,
    pub events: u64,
    /// Series and event scopes still waiting.
    pub pending: usize,
}

impl PurgeReclaimed {
    pub fn emit(self) {
        counter!(PURGE_RECLAIMED, "what" => "chunks").increment(self.chunks);
        counter!(PURGE_RECLAIMED, "what" => "events").increment(self.events);
        purge_pending(self.pending);
        if self.pending == 0 {
            tracing::info!("purged telemetry removed from disk");
        } else {
            tracing::debug!(
                chunks = self.chunks,
                events = self.events,
                pending = self.pending,
                "removed purged telemetry"
            );
        }
    }
}

/// Purged series and event scopes whose rows are still on disk.
pub fn purge_pending(n: usize) {
    gauge!(PURGE_PENDING).set(n as f64);
}
