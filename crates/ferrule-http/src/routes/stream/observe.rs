//! Live stream observability events: metric names and label values live
//! here and nowhere else.

use metrics::{counter, gauge};

pub const STREAM_CONNECTIONS: &str = "ferrule_stream_connections";
pub const STREAM_OPENED: &str = "ferrule_stream_opened_total";
pub const STREAM_CLOSED: &str = "ferrule_stream_closed_total";
pub const STREAM_DROPPED: &str = "ferrule_stream_dropped_total";
pub const STREAM_REFUSED: &str = "ferrule_stream_refused_total";
pub const STREAM_MESSAGES: &str = "ferrule_stream_messages_sent_total";
pub const STREAM_BAD_INPUT: &str = "ferrule_stream_bad_input_total";

/// A stream was upgraded and runs. Its gauge goes down again only when the
/// router has let go of its inbox ([`StreamReleased`]), so a subscription
/// left behind in the router shows as a stream that never ends.
pub struct StreamOpened;

impl StreamOpened {
    pub fn emit(self) {
        counter!(STREAM_OPENED).increment(1);
        gauge!(STREAM_CONNECTIONS).increment(1.0);
    }
}

/// The last reference to a stream's inbox is gone: nothing can deliver to
/// it any more.
pub struct StreamReleased;

impl StreamReleased {
    pub fn emit(self) {
        gauge!(STREAM_CONNECTIONS).decrement(1.0);
    }
}

/// Why the server ended a stream: the `reason` label of
/// `ferrule_stream_closed_total`, and of `ferrule_stream_dropped_total` for
/// the reasons that drop a client against its will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it, or the connection broke.
    Client,
    /// More messages or bytes waited than the stream may hold.
    Slow,
    /// No pong came back in time.
    NoPong,
    /// The caller's credentials were revoked, expired or changed.
    Credentials,
    /// The client sent a frame over the size limit, or broke the protocol.
    Protocol,
    /// The server is shutting down.
    Shutdown,
}

impl CloseReason {
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Slow => "slow",
            CloseReason::NoPong => "no_pong",
            CloseReason::Credentials => "credentials",
            CloseReason::Protocol => "protocol",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// Whether the server dropped the client (counted as a drop too).
    fn is_drop(self) -> bool {
        matches!(
            self,
            CloseReason::Slow | CloseReason::NoPong | CloseReason::Protocol
        )
    }
}

/// A stream ended.
pub struct StreamClosed<'a> {
    pub reason: CloseReason,
    pub tenant: &'a ferrule_core::TenantId,
    /// How many messages were waiting, for a slow reader.
    pub waiting: usize,
}

impl StreamClosed<'_> {
    pub fn emit(self) {
        let reason = self.reason.label();
        counter!(STREAM_CLOSED, "reason" => reason).increment(1);
        if self.reason.is_drop() {
            counter!(STREAM_DROPPED, "reason" => reason, "tenant" => self.tenant.to_string())
                .increment(1);
            tracing::info!(
                tenant = %self.tenant,
                reason,
                waiting = self.waiting,
                "live stream dropped"
            );
        } else {
            tracing::debug!(tenant = %self.tenant, reason, "live stream closed");
        }
    }
}

/// Why a stream was refused before its upgrade: the `reason` label of
/// `ferrule_stream_refused_total` (authentication failures are counted as
/// everywhere else, in `ferrule_auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedReason {
    /// The identity already has as many streams open as it may.
    IdentityLimit,
    /// The tenant already has as many streams open as it may.
    TenantLimit,
    /// A device asked: streams are for users and API keys.
    Device,
}

impl RefusedReason {
    pub fn label(self) -> &'static str {
        match self {
            RefusedReason::IdentityLimit => "identity_limit",
            RefusedReason::TenantLimit => "tenant_limit",
            RefusedReason::Device => "device",
        }
    }
}

pub struct StreamRefused {
    pub reason: RefusedReason,
}

impl StreamRefused {
    pub fn emit(self) {
        counter!(STREAM_REFUSED, "reason" => self.reason.label()).increment(1);
        tracing::debug!(reason = self.reason.label(), "live stream refused");
    }
}

/// Messages went out to a stream's client.
pub fn messages_sent(n: usize) {
    counter!(STREAM_MESSAGES).increment(n as u64);
}

/// What a client sent that the server could not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadInput {
    /// Not JSON, or not one of the operations.
    Request,
    /// A filter refused as invalid (not for an ACL denial, which says nothing).
    Filter,
}

impl BadInput {
    pub fn emit(self) {
        let kind = match self {
            BadInput::Request => "request",
            BadInput::Filter => "filter",
        };
        counter!(STREAM_BAD_INPUT, "kind" => kind).increment(1);
    }
}
