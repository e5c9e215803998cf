//! Observability events of the telemetry intake: what it received and
//! refused, and the notices it sent. Metric names and labels live here only.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use ferrule_core::TenantId;
use ferrule_core::message::now_ms;
use metrics::counter;

pub const POINTS_RECEIVED: &str = "ferrule_telemetry_points_received_total";
pub const REFUSED: &str = "ferrule_telemetry_refused_total";
pub const REFUSAL_NOTICES: &str = "ferrule_telemetry_refusal_notices_total";

/// Why the intake refused a device's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// No such device in the tenant.
    UnknownDevice,
    /// Storage is behind and the publisher (HTTP) cannot be slowed.
    Busy,
    /// The payload broke a rule; the label is
    /// [`PayloadError::kind`](ferrule_core::telemetry::PayloadError::kind),
    /// itself a closed vocabulary.
    Payload(&'static str),
    /// The tenant's disk budget is used up.
    QuotaExceeded,
    /// The store failed or is closed.
    Unavailable,
}

impl RefusalReason {
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::UnknownDevice => "unknown_device",
            RefusalReason::Busy => "busy",
            RefusalReason::Payload(kind) => kind,
            RefusalReason::QuotaExceeded => "quota_exceeded",
            RefusalReason::Unavailable => "unavailable",
        }
    }
}

/// A device's telemetry payload was parsed into points.
pub struct TelemetryReceived {
    pub points: u64,
}

impl TelemetryReceived {
    pub fn emit(self) {
        counter!(POINTS_RECEIVED).increment(self.points);
    }
}

/// The intake refused what a device sent.
pub struct TelemetryRefused<'a> {
    pub tenant: &'a TenantId,
    pub device: &'a str,
    pub reason: RefusalReason,
    pub why: &'a str,
}

impl TelemetryRefused<'_> {
    /// Counts every refusal; logs through `log`, which keeps a misbehaving
    /// fleet from flooding it.
    pub fn emit(self, log: &RefusalLog) {
        counter!(REFUSED, "reason" => self.reason.label()).increment(1);
        if let Some(suppressed) = log.may_log() {
            tracing::warn!(
                tenant = %self.tenant,
                device = self.device,
                reason = self.reason.label(),
                suppressed,
                "telemetry refused: {}",
                self.why
            );
        }
    }
}

/// Lets refusals be logged at most once a second, saying how many were
/// left out in between.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last_ms: AtomicI64,
    suppressed: AtomicU64,
}

impl RefusalLog {
    /// `Some(refusals not logged since the last line)` when this one may be
    /// logged.
    fn may_log(&self) -> Option<u64> {
        let now = now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now - last >= 1000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// What became of a refusal notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeOutcome {
    Sent,
    /// The queue to the publishing task was full.
    Dropped,
    /// The device had its share of notices this second.
    RateLimited,
}

impl NoticeOutcome {
    pub fn label(self) -> &'static str {
        match self {
            NoticeOutcome::Sent => "sent",
            NoticeOutcome::Dropped => "dropped",
            NoticeOutcome::RateLimited => "rate_limited",
        }
    }
}

/// A device was (or was not) told why its data was refused.
pub struct RefusalNoticed<'a> {
    pub tenant: &'a TenantId,
    pub outcome: NoticeOutcome,
}

impl RefusalNoticed<'_> {
    pub fn emit(self) {
        counter!(REFUSAL_NOTICES, "tenant" => self.tenant.to_string(), "outcome" => self.outcome.label())
            .increment(1);
    }
}
