//! Observability events: each is a type that logs and counts in one call, so
//! metric names and label sets live here and nowhere else.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub const HTTP_REQUESTS: &str = "ferrule_http_requests_total";
pub const HTTP_DURATION: &str = "ferrule_http_request_duration_seconds";
pub const AUTH_FAILURES: &str = "ferrule_auth_failures_total";
pub const AUTH_THROTTLED: &str = "ferrule_auth_throttled_total";
pub const DELETIONS: &str = "ferrule_deletions_total";
pub const BUILD_INFO: &str = "ferrule_build_info";
pub const HTTP_CONNECTIONS_OPEN: &str = "ferrule_http_connections_open";
pub const HTTP_CONNECTIONS_REFUSED: &str = "ferrule_http_connections_refused_total";
pub const HTTP_TIMEOUTS: &str = "ferrule_http_timeouts_total";

/// Buckets for request latency, from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// An HTTP request finished. `route` is the matched route template
/// (`/api/v1/devices/{id}`), never the raw path, so cardinality stays bounded.
pub struct HttpRequestCompleted<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

impl HttpRequestCompleted<'_> {
    pub fn emit(self) {
        let labels = [
            ("route", self.route.to_owned()),
            ("method", self.method.to_owned()),
            ("status", self.status.to_string()),
        ];
        counter!(HTTP_REQUESTS, &labels).increment(1);
        histogram!(HTTP_DURATION, "route" => self.route.to_owned(), "method" => self.method.to_owned())
            .record(self.elapsed.as_secs_f64());
        if self.status >= 500 {
            tracing::warn!(route = self.route, status = self.status, "request failed");
        } else {
            tracing::debug!(
                route = self.route,
                status = self.status,
                elapsed_us = self.elapsed.as_micros() as u64,
                "request"
            );
        }
    }
}

/// Someone presented credentials that did not authenticate.
pub struct AuthFailed {
    pub transport: &'static str,
    pub reason: &'static str,
}

impl AuthFailed {
    pub fn emit(self) {
        counter!(AUTH_FAILURES, "transport" => self.transport, "reason" => self.reason)
            .increment(1);
        tracing::info!(
            transport = self.transport,
            reason = self.reason,
            "authentication failed"
        );
    }
}

/// A login was refused without checking its password: its account or
/// address is backing off after failed logins.
pub struct AuthThrottled<'a> {
    /// `http` or `mqtt`.
    pub channel: &'static str,
    /// `account` or `source`.
    pub scope: &'static str,
    /// The account's tenant; `None` for an unknown account.
    pub tenant: Option<&'a ferrule_core::TenantId>,
}

impl AuthThrottled<'_> {
    pub fn emit(self) {
        let tenant = self.tenant.map(|t| t.to_string()).unwrap_or_default();
        counter!(AUTH_THROTTLED, "channel" => self.channel, "scope" => self.scope, "tenant" => tenant.clone())
            .increment(1);
        tracing::debug!(
            channel = self.channel,
            scope = self.scope,
            tenant,
            "login refused: backing off after failed logins"
        );
    }
}

/// A tenant or a device was deleted everywhere (its telemetry rows may
/// still be going, in the background).
pub struct Deleted<'a> {
    pub tenant: &'a ferrule_core::TenantId,
    /// `None` for the whole tenant.
    pub device: Option<&'a ferrule_core::DeviceId>,
    /// MQTT connections closed, sessions ended, retained messages dropped.
    pub connections: usize,
    pub sessions: usize,
    pub retained: usize,
}

impl Deleted<'_> {
    pub fn emit(self) {
        let kind = if self.device.is_some() {
            "device"
        } else {
            "tenant"
        };
        counter!(DELETIONS, "kind" => kind).increment(1);
        tracing::info!(
            kind,
            tenant = %self.tenant,
            device = self.device.map(|d| d.as_str()),
            connections = self.connections,
            sessions = self.sessions,
            retained = self.retained,
            "deleted a {kind} and everything it owned"
        );
    }
}

/// An HTTP connection was closed as soon as accepted. `reason`: `total`,
/// `per_address` (a cap was reached) or `tls_handshake`.
pub struct HttpConnectionRefused {
    pub reason: &'static str,
    pub peer: std::net::SocketAddr,
}

impl HttpConnectionRefused {
    pub fn emit(self) {
        counter!(HTTP_CONNECTIONS_REFUSED, "reason" => self.reason).increment(1);
        tracing::debug!(reason = self.reason, peer = %self.peer, "HTTP connection refused");
    }
}

/// An HTTP connection or request outlived a limit. `kind`: `header` (the
/// request head, or the TLS handshake, was too slow), `idle` (a keep-alive
/// connection at rest) or `body` (answered 408).
pub struct HttpTimedOut {
    pub kind: &'static str,
}

impl HttpTimedOut {
    pub fn emit(self) {
        counter!(HTTP_TIMEOUTS, "kind" => self.kind).increment(1);
        tracing::debug!(kind = self.kind, "HTTP timeout");
    }
}

/// HTTP connections open now (HTTP and HTTPS).
pub fn http_connections_open(n: usize) {
    gauge!(HTTP_CONNECTIONS_OPEN).set(n as f64);
}

/// The running build, as a constant-1 gauge with the version as a label.
pub fn record_build_info() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
