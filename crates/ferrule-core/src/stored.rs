//! Broker state as it is kept across restarts: persistent sessions (their
//! subscriptions and undelivered QoS 1/2 messages) and retained messages.
//!
//! Plain data shared by the broker (which snapshots and restores it) and the
//! stores (which keep it); neither needs to know the other.

use bytes::Bytes;

use crate::{MessageProperties, QoS, TenantId};

/// A message as stored: everything needed to deliver it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Option<MessageProperties>,
    /// Wall-clock expiry, ms since the Unix epoch.
    pub expires_at_ms: Option<i64>,
    /// The publishing MQTT client, for "no local".
    pub origin_client: Option<String>,
    pub received_at_ms: i64,
}

/// A message waiting for a session, or in flight to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub message: StoredMessage,
    /// The QoS and retain flag it is delivered with.
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// Set when it was in flight: redelivered with DUP under this id.
    pub packet_id: Option<u16>,
    /// In flight and PUBREC received: only PUBREL remains.
    pub released: bool,
}

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// As subscribed, including any `$share/GROUP/` prefix.
    pub filter: String,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub subscription_id: Option<u32>,
}

/// Names a session: client ids are scoped to the identity that connected, so
/// one device can never resume (or kick) another's session by reusing its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub tenant: TenantId,
    /// [`crate::Principal::session_owner`] of the identity.
    pub owner: String,
    pub client_id: String,
}

/// A persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub tenant: TenantId,
    pub owner: String,
    pub client_id: String,
    /// When the session ends if no client resumes it, ms since the epoch.
    pub expires_at_ms: i64,
    /// How long it outlives a connection, in seconds.
    pub expiry_secs: u64,
    pub subscriptions: Vec<StoredSubscription>,
    /// In-flight deliveries first (in send order), then the queue.
    pub deliveries: Vec<StoredDelivery>,
    /// QoS 2 packet ids received and routed, awaiting PUBREL.
    pub inbound_qos2: Vec<u16>,
}
