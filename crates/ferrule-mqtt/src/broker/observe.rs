//! Broker observability events: metric names and labels live here only.

use metrics::{counter, gauge};

pub const CONNECTIONS: &str = "ferrule_mqtt_connections";
pub const CONNECTS: &str = "ferrule_mqtt_connects_total";
pub const REFUSED: &str = "ferrule_mqtt_refused_total";
pub const MESSAGES_IN: &str = "ferrule_mqtt_messages_received_total";
pub const MESSAGES_OUT: &str = "ferrule_mqtt_messages_sent_total";
pub const DROPPED: &str = "ferrule_mqtt_messages_dropped_total";
pub const PROTOCOL_ERRORS: &str = "ferrule_mqtt_protocol_errors_total";
pub const DENIED: &str = "ferrule_mqtt_denied_total";
pub const RATE_LIMITED: &str = "ferrule_rate_limited_total";

/// Every metric the broker emits, for docs and tests.
pub const METRIC_NAMES: &[&str] = &[
    CONNECTIONS,
    CONNECTS,
    REFUSED,
    MESSAGES_IN,
    MESSAGES_OUT,
    DROPPED,
    PROTOCOL_ERRORS,
    DENIED,
    RATE_LIMITED,
];

pub fn connection_opened(protocol: &'static str) {
    counter!(CONNECTS, "protocol" => protocol).increment(1);
    gauge!(CONNECTIONS).increment(1.0);
}

pub fn connection_closed() {
    gauge!(CONNECTIONS).decrement(1.0);
}

/// A CONNECT was refused; `reason` is one of a fixed vocabulary.
pub fn refused(reason: &'static str) {
    counter!(REFUSED, "reason" => reason).increment(1);
    tracing::debug!(reason, "MQTT connection refused");
}

pub fn messages_in(n: u64) {
    counter!(MESSAGES_IN).increment(n);
}

pub fn messages_out(n: u64) {
    counter!(MESSAGES_OUT).increment(n);
}

/// A message was not delivered; `reason`: queue_full, expired, too_large.
pub fn dropped(reason: &'static str, n: u64) {
    counter!(DROPPED, "reason" => reason).increment(n);
}

/// A message for a session of `tenant` was not delivered; `reason`:
/// queue_bytes (the session holds `mqtt.max_queued_bytes` already).
pub fn dropped_in_tenant(reason: &'static str, tenant: &ferrule_core::TenantId, n: u64) {
    counter!(DROPPED, "reason" => reason, "tenant" => tenant.to_string()).increment(n);
}

/// A client broke the protocol; the connection is closed with `code`.
pub fn protocol_error(code: u8, detail: &str) {
    counter!(PROTOCOL_ERRORS, "reason_code" => format!("0x{code:02X}")).increment(1);
    tracing::debug!(reason_code = code, detail, "MQTT protocol error");
}

/// An ACL refused a publish, a subscription, a will, or `n` messages on
/// their way to a client (`receive`).
pub fn denied(access: &'static str, tenant: &ferrule_core::TenantId, n: u64) {
    counter!(DENIED, "access" => access, "tenant" => tenant.to_string()).increment(n);
}

/// A client or tenant went over its rate limit: an MQTT connection paused
/// reading until its tokens were available, or an HTTP ingest request was
/// refused with 429. `scope`: `client` or `tenant`.
pub struct RateLimited<'a> {
    pub scope: &'static str,
    pub tenant: &'a ferrule_core::TenantId,
}

impl RateLimited<'_> {
    pub fn emit(self) {
        counter!(RATE_LIMITED, "scope" => self.scope, "tenant" => self.tenant.to_string())
            .increment(1);
        tracing::debug!(scope = self.scope, tenant = %self.tenant, "rate limited");
    }
}
