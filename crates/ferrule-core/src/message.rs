//! The one currency of Ferrule: a message on a tenant's topic.
//!
//! Everything that happens — a device's telemetry over MQTT or HTTP, a rule's
//! republish, a command from the API — becomes a [`Message`] handed to the
//! router, shared by reference (`Arc<Message>`) among all who receive it. The
//! topic and payload are `Bytes` slices of the buffer they arrived in, so
//! fanning a message out copies nothing.

use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;

use crate::TenantId;

/// MQTT quality of service (MQTT 5 §4.3), shared by every transport; the
/// MQTT codec encodes this same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: at most once delivery.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once delivery.
    AtLeastOnce = 1,
    /// QoS 2: exactly once delivery.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit wire value; `None` for the invalid value 3.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Where a message came from; lets a subscriber skip its own messages
/// (MQTT 5 "no local") and lets rules and logs say who sent what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An MQTT client: its client id, and the broker's id for its session
    /// (client ids are only unique per identity, so "no local" compares the
    /// session; 0 when unknown, e.g. restored after a restart).
    Mqtt { client_id: ByteString, session: u64 },
    /// The HTTP API (ingest, commands, desired state).
    Api,
    /// A rule's action: the rule's id, and how many rules the message has
    /// passed through (a republish of a republish…), so that the rules
    /// engine can stop loops.
    Rule { rule: String, hops: u8 },
    /// Ferrule itself (wills, system topics).
    System,
}

/// MQTT 5 application properties carried end to end. Boxed in [`Message`]
/// because most messages have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// 1 when the payload is declared UTF-8.
    pub payload_format_indicator: Option<bool>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(ByteString, ByteString)>,
}

impl MessageProperties {
    pub fn is_empty(&self) -> bool {
        self == &MessageProperties::default()
    }
}

/// A message on a tenant's topic.
#[derive(Debug, Clone)]
pub struct Message {
    pub tenant: TenantId,
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Option<Box<MessageProperties>>,
    /// When the message stops being deliverable (MQTT 5 message expiry).
    pub expires_at: Option<Instant>,
    pub origin: Origin,
    /// Server receive time, ms since the Unix epoch.
    pub received_at_ms: i64,
}

impl Message {
    /// A message with no properties, received now.
    pub fn new(
        tenant: TenantId,
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        origin: Origin,
    ) -> Self {
        Message {
            tenant,
            topic,
            payload,
            qos,
            retain: false,
            properties: None,
            expires_at: None,
            origin,
            received_at_ms: now_ms(),
        }
    }

    /// Whether the message has outlived its expiry.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
