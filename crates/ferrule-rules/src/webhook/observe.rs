//! Observability events of webhooks. Metric names live here only; every
//! label is a tenant id or a fixed word.

use std::time::Duration;

use ferrule_core::TenantId;
use metrics::{counter, histogram};

pub const REQUESTS: &str = "ferrule_webhook_requests_total";
pub const DEAD_LETTERS: &str = "ferrule_webhook_dead_letters_total";
pub const DROPPED: &str = "ferrule_webhook_dropped_total";
pub const DURATION: &str = "ferrule_webhook_duration_seconds";
pub const LOST_AT_SHUTDOWN: &str = "ferrule_webhook_lost_at_shutdown_total";
pub const STORE_ERRORS: &str = "ferrule_webhook_store_errors_total";

/// How one attempt ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx.
    Success,
    /// Failed; no more attempts.
    Failure,
    /// Failed; another attempt follows.
    Retry,
}

impl AttemptOutcome {
    fn label(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Failure => "failure",
            AttemptOutcome::Retry => "retry",
        }
    }
}

/// One attempt ended.
pub struct AttemptEnded<'a> {
    pub tenant: &'a TenantId,
    pub rule: &'a str,
    pub outcome: AttemptOutcome,
    pub elapsed: Duration,
    pub error: Option<&'a str>,
}

impl AttemptEnded<'_> {
    pub fn emit(self) {
        counter!(REQUESTS, "tenant" => self.tenant.to_string(), "outcome" => self.outcome.label())
            .increment(1);
        histogram!(DURATION).record(self.elapsed.as_secs_f64());
        match self.error {
            Some(error) => tracing::debug!(
                tenant = %self.tenant, rule = self.rule, outcome = self.outcome.label(),
                error, "webhook attempt failed"
            ),
            None => tracing::trace!(tenant = %self.tenant, rule = self.rule, "webhook delivered"),
        }
    }
}

/// A call failed for good and was kept as a dead letter (`id`: `None`
/// when the store failed or the rule is gone).
pub struct DeadLettered<'a> {
    pub tenant: &'a TenantId,
    pub rule: &'a str,
    pub attempts: u32,
    pub error: &'a str,
    pub id: Option<u64>,
}

impl DeadLettered<'_> {
    pub fn emit(self) {
        counter!(DEAD_LETTERS, "tenant" => self.tenant.to_string()).increment(1);
        tracing::info!(
            tenant = %self.tenant, rule = self.rule, attempts = self.attempts,
            error = self.error, dead_letter = self.id,
            "webhook call failed for good"
        );
    }
}

/// A call was not queued: the tenant's queue is full.
pub struct Dropped<'a> {
    pub tenant: &'a TenantId,
    pub rule: &'a str,
}

impl Dropped<'_> {
    pub fn emit(self) {
        counter!(DROPPED, "tenant" => self.tenant.to_string()).increment(1);
        tracing::debug!(tenant = %self.tenant, rule = self.rule, "webhook queue full; call dropped");
    }
}

/// The store failed to keep a dead letter or a replay's outcome.
pub struct StoreFailed<'a> {
    pub what: &'static str,
    pub error: &'a dyn std::error::Error,
}

impl StoreFailed<'_> {
    pub fn emit(self) {
        counter!(STORE_ERRORS).increment(1);
        tracing::error!(error = %self.error, "webhooks: could not {}", self.what);
    }
}

/// A call that was queued when the server shut down, never made.
pub fn lost_at_shutdown(tenant: &TenantId, rule: &str) {
    counter!(LOST_AT_SHUTDOWN).increment(1);
    tracing::debug!(tenant = %tenant, rule, "webhook call not made: shutting down");
}
