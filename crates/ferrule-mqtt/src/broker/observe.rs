//! Broker observability events: each logs and counts in one call, so metric
//! names and label values live here and nowhere else. Label vocabularies are
//! enums: a call site can only name a reason this file knows.

use ferrule_core::TenantId;
use metrics::{counter, gauge};

use crate::codec::{ProtocolVersion, ReasonCode};

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

/// A client's CONNECT was accepted: the connection is open.
pub struct ConnectionOpened {
    pub version: ProtocolVersion,
    /// [`Transport::label`](super::Transport::label).
    pub transport: &'static str,
}

impl ConnectionOpened {
    pub fn emit(self) {
        let protocol = match self.version {
            ProtocolVersion::V5 => "5",
            ProtocolVersion::V311 => "3.1.1",
        };
        counter!(CONNECTS, "protocol" => protocol).increment(1);
        gauge!(CONNECTIONS, "transport" => self.transport).increment(1.0);
    }
}

/// An open connection closed, for whatever reason.
pub fn connection_closed(transport: &'static str) {
    gauge!(CONNECTIONS, "transport" => transport).decrement(1.0);
}

/// Why a connection was turned away before it opened: the `reason` label of
/// `ferrule_mqtt_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedReason {
    /// Its source address opened connections too fast (closed unanswered).
    ConnectRate,
    /// Its TLS handshake failed or took too long.
    TlsHandshake,
    /// It sent no CONNECT within the connect timeout.
    ConnectTimeout,
    ProtocolVersion,
    AuthMethod,
    BadCredentials,
    NotAuthorized,
    Unavailable,
    Throttled,
    Busy,
    ClientId,
    MaxConnections,
    MaxConnectionsTenant,
}

impl RefusedReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectRate => "connect_rate",
            Self::TlsHandshake => "tls_handshake",
            Self::ConnectTimeout => "connect_timeout",
            Self::ProtocolVersion => "protocol_version",
            Self::AuthMethod => "auth_method",
            Self::BadCredentials => "bad_credentials",
            Self::NotAuthorized => "not_authorized",
            Self::Unavailable => "unavailable",
            Self::Throttled => "throttled",
            Self::Busy => "busy",
            Self::ClientId => "client_id",
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsTenant => "max_connections_tenant",
        }
    }
}

/// A connection was refused before it opened (with a refusing CONNACK, or
/// closed without one).
pub struct ConnectionRefused {
    pub reason: RefusedReason,
}

impl ConnectionRefused {
    pub fn emit(self) {
        let reason = self.reason.label();
        counter!(REFUSED, "reason" => reason).increment(1);
        tracing::debug!(reason, "MQTT connection refused");
    }
}

/// PUBLISH packets read from clients.
pub fn messages_in(n: u64) {
    counter!(MESSAGES_IN).increment(n);
}

/// PUBLISH packets written to clients.
pub fn messages_out(n: u64) {
    counter!(MESSAGES_OUT).increment(n);
}

/// Why a message was not delivered: the `reason` label of
/// `ferrule_mqtt_messages_dropped_total` (without a tenant label; see
/// [`SessionBytesFull`] for the one with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The session's queue holds `mqtt.max_queued` messages already.
    QueueFull,
    /// Its Message Expiry passed while it was queued.
    Expired,
    /// Larger than the client's Maximum Packet Size.
    TooLarge,
    /// Declared UTF-8 by its publisher, and it is not.
    PayloadFormatInvalid,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Expired => "expired",
            Self::TooLarge => "too_large",
            Self::PayloadFormatInvalid => "payload_format_invalid",
        }
    }
}

/// `n` messages were not delivered.
pub struct MessagesDropped {
    pub reason: DropReason,
    pub n: u64,
}

impl MessagesDropped {
    pub fn emit(self) {
        counter!(DROPPED, "reason" => self.reason.label()).increment(self.n);
    }
}

/// A message for a session of `tenant` was not delivered: the session holds
/// `mqtt.max_queued_bytes` already. Counted per tenant, so an operator sees
/// whose subscribers fall behind.
pub struct SessionBytesFull<'a> {
    pub tenant: &'a TenantId,
}

impl SessionBytesFull<'_> {
    pub fn emit(self) {
        counter!(DROPPED, "reason" => "queue_bytes", "tenant" => self.tenant.to_string())
            .increment(1);
    }
}

/// A client broke the protocol; the connection is closed with `code`.
pub struct ProtocolViolated<'a> {
    pub code: ReasonCode,
    pub detail: &'a str,
}

impl ProtocolViolated<'_> {
    pub fn emit(self) {
        let code = self.code.0;
        counter!(PROTOCOL_ERRORS, "reason_code" => format!("0x{code:02X}")).increment(1);
        tracing::debug!(
            reason_code = code,
            detail = self.detail,
            "MQTT protocol error"
        );
    }
}

/// What an ACL refused: the `access` label of `ferrule_mqtt_denied_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeniedAccess {
    Publish,
    Subscribe,
    /// Messages on their way to a client, through a subscription.
    Receive,
    /// A client's will, when it is due.
    Will,
}

impl DeniedAccess {
    pub fn label(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Receive => "receive",
            Self::Will => "will",
        }
    }
}

/// An ACL refused a publish, a subscription, a will, or `n` messages on
/// their way to a client.
pub struct Denied<'a> {
    pub access: DeniedAccess,
    pub tenant: &'a TenantId,
    pub n: u64,
}

impl Denied<'_> {
    pub fn emit(self) {
        counter!(DENIED, "access" => self.access.label(), "tenant" => self.tenant.to_string())
            .increment(self.n);
    }
}

/// Whose rate limit was hit: the `scope` label of `ferrule_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// One MQTT connection's own limit.
    Client,
    /// The limit its tenant shares across connections and HTTP ingest.
    Tenant,
}

impl RateScope {
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Tenant => "tenant",
        }
    }
}

/// A client or tenant went over its rate limit: an MQTT connection paused
/// reading until its tokens were available, or an HTTP ingest request was
/// refused with 429.
pub struct RateLimited<'a> {
    pub scope: RateScope,
    pub tenant: &'a TenantId,
}

impl RateLimited<'_> {
    pub fn emit(self) {
        let scope = self.scope.label();
        counter!(RATE_LIMITED, "scope" => scope, "tenant" => self.tenant.to_string()).increment(1);
        tracing::debug!(scope, tenant = %self.tenant, "rate limited");
    }
}
