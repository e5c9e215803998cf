//! Observability events of alarms. Metric names live here only.

use ferrule_core::TenantId;
use metrics::counter;

use super::view::AlarmEvent;

pub const ALARMS: &str = "ferrule_alarms_total";
pub const REFUSED: &str = "ferrule_alarms_refused_total";

/// An alarm changed (raised, raised again, acknowledged, cleared).
pub struct AlarmTransitioned<'a> {
    pub tenant: &'a TenantId,
    pub event: AlarmEvent,
}

impl AlarmTransitioned<'_> {
    pub fn emit(self) {
        counter!(ALARMS, "tenant" => self.tenant.to_string(), "event" => self.event.as_str())
            .increment(1);
    }
}

/// A new alarm was refused: the tenant has as many open alarms as allowed.
pub struct AlarmRefused<'a> {
    pub tenant: &'a TenantId,
    pub open: u64,
    pub limit: u64,
}

impl AlarmRefused<'_> {
    pub fn emit(self) {
        tracing::warn!(
            tenant = %self.tenant,
            open = self.open,
            limit = self.limit,
            "alarm refused: the tenant has too many open alarms"
        );
        counter!(REFUSED, "tenant" => self.tenant.to_string(), "reason" => "too_many_open")
            .increment(1);
    }
}
