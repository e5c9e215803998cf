//! Observability events of the telemetry store: its writes, seals, log,
//! disk use, retention and purges. Metric names and labels live here only.

use ferrule_core::TenantId;
use metrics::{counter, gauge};

use super::{Deleted, PurgeScope};

pub const POINTS_STORED: &str = "ferrule_telemetry_points_stored_total";
pub const EVENTS_STORED: &str = "ferrule_telemetry_events_stored_total";
pub const POINTS_EXPIRED: &str = "ferrule_telemetry_points_expired_total";
pub const CHUNKS_SEALED: &str = "ferrule_telemetry_chunks_sealed_total";
pub const FORCED_SEALS: &str = "ferrule_telemetry_forced_seals_total";
pub const LOG_BYTES: &str = "ferrule_telemetry_log_bytes";
pub const BACKPRESSURE: &str = "ferrule_telemetry_backpressure_total";
pub const TENANT_BYTES: &str = "ferrule_telemetry_tenant_bytes";
pub const TENANT_BUDGET_BYTES: &str = "ferrule_telemetry_tenant_budget_bytes";
pub const TENANT_BUDGET_USED_RATIO: &str = "ferrule_telemetry_tenant_budget_used_ratio";
pub const TENANT_BUDGET_WARNING: &str = "ferrule_telemetry_tenant_budget_warning";
pub const RETENTION_DELETED_POINTS: &str = "ferrule_telemetry_retention_deleted_points_total";
pub const RETENTION_DELETED_EVENTS: &str = "ferrule_telemetry_retention_deleted_events_total";
pub const PURGES: &str = "ferrule_telemetry_purges_total";
pub const PURGE_PENDING: &str = "ferrule_telemetry_purge_pending";
pub const PURGE_RECLAIMED: &str = "ferrule_telemetry_purge_reclaimed_total";

/// Share of the disk budget at which the warning gauge turns on.
pub const BUDGET_WARNING_RATIO: f64 = 0.8;

/// The writer committed a batch: its points and events are durable.
pub struct BatchCommitted {
    pub points: u64,
    pub events: u64,
    /// Points dropped because retention had already deleted their time.
    pub expired: u64,
}

impl BatchCommitted {
    pub fn emit(self) {
        counter!(POINTS_STORED).increment(self.points);
        counter!(EVENTS_STORED).increment(self.events);
        if self.expired > 0 {
            counter!(POINTS_EXPIRED).increment(self.expired);
        }
    }
}

/// A series' head was sealed into compressed chunks.
pub struct SeriesSealed {
    pub chunks: u64,
}

impl SeriesSealed {
    pub fn emit(self) {
        counter!(CHUNKS_SEALED).increment(self.chunks);
    }
}

/// The recent log was about to pass `max_log_bytes`: the series holding
/// its oldest rows are sealed early.
pub struct SealsForced {
    pub series: u64,
}

impl SealsForced {
    pub fn emit(self) {
        counter!(FORCED_SEALS).increment(self.series);
        tracing::debug!(
            series = self.series,
            "telemetry log near its bound: sealing early"
        );
    }
}

/// Bytes in the recent log now.
pub fn log_bytes(bytes: u64) {
    gauge!(LOG_BYTES).set(bytes as f64);
}

/// Why a publisher was asked to slow down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowedBecause {
    /// The recent log is near `max_log_bytes`.
    LogFull,
}

impl SlowedBecause {
    pub fn label(self) -> &'static str {
        match self {
            SlowedBecause::LogFull => "log_full",
        }
    }
}

/// An append was accepted with backpressure.
pub struct IngestSlowed {
    pub because: SlowedBecause,
}

impl IngestSlowed {
    pub fn emit(self) {
        counter!(BACKPRESSURE, "reason" => self.because.label()).increment(1);
    }
}

/// A tenant's disk use changed: its bytes, and against its budget (all 0
/// without one, as there is nothing to warn about).
pub struct TenantDiskUse<'a> {
    pub tenant: &'a TenantId,
    pub used: u64,
    pub budget: Option<u64>,
}

impl TenantDiskUse<'_> {
    pub fn emit(self) {
        let t = self.tenant.to_string();
        gauge!(TENANT_BYTES, "tenant" => t.clone()).set(self.used as f64);
        let (budget, ratio) = match self.budget {
            Some(budget) => (budget as f64, self.used as f64 / budget.max(1) as f64),
            None => (0.0, 0.0),
        };
        let warning = if ratio >= BUDGET_WARNING_RATIO {
            1.0
        } else {
            0.0
        };
        gauge!(TENANT_BUDGET_BYTES, "tenant" => t.clone()).set(budget);
        gauge!(TENANT_BUDGET_USED_RATIO, "tenant" => t.clone()).set(ratio);
        gauge!(TENANT_BUDGET_WARNING, "tenant" => t).set(warning);
    }
}

/// A retention pass over a tenant removed expired telemetry.
pub struct RetentionApplied<'a> {
    pub tenant: &'a TenantId,
    pub deleted: Deleted,
}

impl RetentionApplied<'_> {
    pub fn emit(self) {
        let Deleted { points, events } = self.deleted;
        if points + events == 0 {
            return;
        }
        counter!(RETENTION_DELETED_POINTS).increment(points);
        counter!(RETENTION_DELETED_EVENTS).increment(events);
        tracing::info!(tenant = %self.tenant, points, events, "retention removed expired telemetry");
    }
}

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

    pub fn label(self) -> &'static str {
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
        counter!(PURGES, "scope" => self.scope.label()).increment(1);
        tracing::info!(
            scope = self.scope.label(),
            tenant = %self.tenant,
            series = self.series,
            events = self.events,
            "telemetry of a deleted {} detached; removing it in the background",
            self.scope.label()
        );
    }
}

/// What a purge step gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaimed {
    Chunks,
    Events,
}

impl Reclaimed {
    pub fn label(self) -> &'static str {
        match self {
            Reclaimed::Chunks => "chunks",
            Reclaimed::Events => "events",
        }
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
        counter!(PURGE_RECLAIMED, "what" => Reclaimed::Chunks.label()).increment(self.chunks);
        counter!(PURGE_RECLAIMED, "what" => Reclaimed::Events.label()).increment(self.events);
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
