//! Decode and encode errors.
//!
//! Every [`DecodeError`] maps to the Reason Code the server must put in the
//! DISCONNECT (or, for a bad CONNECT, the CONNACK) it sends before closing
//! (MQTT 5 §4.13). MQTT 5 distinguishes a *Malformed Packet* (0x81: the
//! bytes cannot be parsed as the spec says) from a *Protocol Error* (0x82:
//! parsed fine, but carries something the protocol does not allow); each
//! variant follows the wording the spec uses for that rule.

use super::ProtocolVersion;
use super::frame::PacketType;
use super::properties::PropertyId;
use super::reason::ReasonCode;
use super::topic::TopicError;

/// Why bytes could not be decoded into a packet. Decoding never panics;
/// after an error the connection should be closed (the buffer's contents
/// are then unspecified).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet is larger than the maximum packet size the receiver
    /// accepts (MQTT 5 §3.1.2.11.4 / §3.2.2.3.6). Reported as soon as the
    /// fixed header is known, before the body has arrived.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Total packet size (fixed header included) the header announced.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// A Variable Byte Integer (Remaining Length, Property Length, …)
    /// longer than four bytes (MQTT 5 §1.5.5).
    #[error("variable byte integer longer than four bytes")]
    MalformedVariableByteInteger,
    /// Control packet type 0, or 15 (AUTH) in MQTT 3.1.1 (MQTT 5 §2.1.2).
    #[error("reserved control packet type {0}")]
    ReservedPacketType(u8),
    /// The fixed header's flag bits are not the ones MQTT 5 §2.1.3 Table 2-2
    /// requires for this packet type.
    #[error("invalid fixed header flags {flags:#06b} for {packet_type:?}")]
    InvalidHeaderFlags {
        /// The packet type from the fixed header.
        packet_type: PacketType,
        /// The four flag bits received.
        flags: u8,
    },
    /// The packet's content needs more bytes than the Remaining Length
    /// provides (a string, property list, … overruns the packet).
    #[error("packet content overruns its remaining length")]
    UnexpectedEndOfPacket,
    /// Bytes left over after the packet's content (MQTT 5 §2.1.4).
    #[error("{0} unexpected bytes after the packet's content")]
    TrailingBytes(usize),
    /// A UTF-8 Encoded String that is not well-formed UTF-8 [MQTT-1.5.4-1].
    #[error("string is not well-formed UTF-8")]
    InvalidUtf8,
    /// A UTF-8 Encoded String containing U+0000 [MQTT-1.5.4-2].
    #[error("string contains the null character U+0000")]
    NullCharacter,
    /// QoS 3 in a PUBLISH fixed header [MQTT-3.3.1-4] or as a Will QoS
    /// (MQTT 5 §3.1.2.6).
    #[error("QoS value 3 is invalid")]
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// Packet Identifier 0 [MQTT-2.2.1-3].
    #[error("packet identifier is zero")]
    ZeroPacketId,
    /// A Topic Name (PUBLISH or Will) containing wildcards [MQTT-3.3.2-2],
    /// or empty where no Topic Alias may stand in for it (MQTT 5 §4.7.3).
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// An empty PUBLISH Topic Name without a Topic Alias (MQTT 5 §3.3.2.3.4).
    #[error("empty topic name without a topic alias")]
    MissingTopicAlias,
    /// A CONNECT whose Protocol Name is not "MQTT" (MQTT 5 §3.1.2.1).
    #[error("protocol name is not \"MQTT\"")]
    InvalidProtocolName,
    /// A CONNECT with a Protocol Level other than 4 (3.1.1) or 5 (5.0),
    /// including MQTT 3.1's "MQIsdp"/3 (MQTT 5 §3.1.2.2).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// CONNECT flags break a rule of MQTT 5 §3.1.2.3–§3.1.2.9.
    #[error("invalid CONNECT flags: {0}")]
    InvalidConnectFlags(&'static str),
    /// Reserved bits 7–1 of the CONNACK Acknowledge Flags set (MQTT 5
    /// §3.2.2.1).
    #[error("reserved CONNACK acknowledge flag bits set")]
    InvalidConnAckFlags,
    /// A property identifier MQTT 5 does not define (MQTT 5 §2.2.2.2).
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    /// A property not valid for this packet type, a Malformed Packet
    /// (MQTT 5 §2.2.2.2).
    #[error("property {property:?} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The offending property.
        property: PropertyId,
        /// Where it appeared ("PUBLISH", "Will", …).
        packet: &'static str,
    },
    /// A single-valued property given more than once (a Protocol Error per
    /// each property's definition, e.g. MQTT 5 §3.1.2.11.2).
    #[error("property {0:?} appears more than once")]
    DuplicateProperty(PropertyId),
    /// A property value the spec forbids, e.g. Receive Maximum 0 or a
    /// Maximum QoS of 2 (a Protocol Error per each property's definition).
    #[error("invalid value for property {0:?}")]
    InvalidPropertyValue(PropertyId),
    /// Authentication Data without an Authentication Method (MQTT 5
    /// §3.1.2.11.10).
    #[error("authentication data without an authentication method")]
    AuthDataWithoutMethod,
    /// A SUBSCRIBE or UNSUBSCRIBE without any Topic Filter [MQTT-3.8.3-2],
    /// [MQTT-3.10.3-2].
    #[error("no topic filters")]
    NoTopicFilters,
    /// Reserved bits set in Subscription Options [MQTT-3.8.3-5].
    #[error("reserved bits set in subscription options")]
    InvalidSubscriptionOptions,
    /// Maximum QoS 3 in Subscription Options (MQTT 5 §3.8.3.1).
    #[error("subscription QoS 3 is invalid")]
    InvalidSubscriptionQoS,
    /// Retain Handling 3 in Subscription Options (MQTT 5 §3.8.3.1).
    #[error("retain handling 3 is invalid")]
    InvalidRetainHandling,
    /// An MQTT 3.1.1 CONNACK or SUBACK return code the 3.1.1 spec reserves
    /// (§3.2.2.3, [MQTT-3.9.3-2]).
    #[error("reserved MQTT 3.1.1 return code {0:#04x}")]
    InvalidReturnCode(u8),
}

impl DecodeError {
    /// The Reason Code to send in the DISCONNECT (or CONNACK) that closes
    /// the connection (MQTT 5 §4.13.1). For
    /// [`UnsupportedProtocolVersion`](Self::UnsupportedProtocolVersion) and
    /// [`InvalidProtocolName`](Self::InvalidProtocolName) it is 0x84, which
    /// the server sends in a CONNACK (see
    /// [`is_unsupported_protocol`](Self::is_unsupported_protocol)).
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnsupportedProtocolVersion(_) | InvalidProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            InvalidTopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            ZeroPacketId
            | MissingTopicAlias
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod
            | NoTopicFilters
            | InvalidSubscriptionQoS
            | InvalidRetainHandling => ReasonCode::PROTOCOL_ERROR,
            MalformedVariableByteInteger
            | ReservedPacketType(_)
            | InvalidHeaderFlags { .. }
            | UnexpectedEndOfPacket
            | TrailingBytes(_)
            | InvalidUtf8
            | NullCharacter
            | InvalidQoS
            | DupWithQoS0
            | InvalidConnectFlags(_)
            | InvalidConnAckFlags
            | UnknownProperty(_)
            | PropertyNotAllowed { .. }
            | InvalidSubscriptionOptions
            | InvalidReturnCode(_) => ReasonCode::MALFORMED_PACKET,
        }
    }

    /// Whether this is a CONNECT for a protocol we do not speak. The server
    /// answers it with a CONNACK rather than a DISCONNECT: in the MQTT 3.1.1
    /// format, return code 0x01 [MQTT-3.1.2-2] — encode a
    /// [`ConnAck`](super::ConnAck) with
    /// [`ReasonCode::UNSUPPORTED_PROTOCOL_VERSION`] for
    /// [`ProtocolVersion::V311`] — and then closes the connection.
    pub fn is_unsupported_protocol(&self) -> bool {
        matches!(
            self,
            DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName
        )
    }
}

/// Why a packet could not be encoded. Encoding checks the same rules
/// decoding does, so whatever encodes successfully decodes back to an equal
/// packet (after the MQTT 3.1.1 down-conversion described on
/// [`encode`](super::encode)). Nothing is written on error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The Remaining Length would exceed 268,435,455 bytes (MQTT 5 §2.1.4).
    #[error("packet body of {0} bytes exceeds the MQTT limit of 268435455")]
    PacketTooLarge(usize),
    /// Binary Data longer than 65,535 bytes (MQTT 5 §1.5.6).
    #[error("binary data of {0} bytes exceeds 65535")]
    BinaryTooLong(usize),
    /// A QoS 0 PUBLISH with a packet identifier, or QoS 1/2 without one
    /// (MQTT 5 §2.2.1).
    #[error("packet identifier must be present exactly when QoS > 0")]
    PacketIdMismatch,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// A Topic Name with wildcards, or empty where not allowed.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// An empty PUBLISH Topic Name without a Topic Alias (MQTT 5 §3.3.2.3.4).
    #[error("empty topic name without a topic alias")]
    MissingTopicAlias,
    /// A SUBSCRIBE or UNSUBSCRIBE without Topic Filters.
    #[error("no topic filters")]
    NoTopicFilters,
    /// A property not valid for this packet type (MQTT 5 §2.2.2.2).
    #[error("property {property:?} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The offending property.
        property: PropertyId,
        /// Where it appeared.
        packet: &'static str,
    },
    /// A property value the spec forbids (Subscription Identifier 0 or above
    /// 268,435,455, several Subscription Identifiers outside PUBLISH,
    /// Maximum QoS 2).
    #[error("invalid value for property {0:?}")]
    InvalidPropertyValue(PropertyId),
    /// Authentication Data without an Authentication Method.
    #[error("authentication data without an authentication method")]
    AuthDataWithoutMethod,
    /// A password without a user name, which MQTT 3.1.1 forbids
    /// [MQTT-3.1.2-22].
    #[error("password without user name is not allowed in MQTT 3.1.1")]
    PasswordWithoutUserName,
    /// A packet type that does not exist in this protocol version (AUTH in
    /// MQTT 3.1.1).
    #[error("{packet_type:?} does not exist in {version:?}")]
    NotInVersion {
        /// The packet type.
        packet_type: PacketType,
        /// The version it was encoded for.
        version: ProtocolVersion,
    },
    /// A reason code the packet cannot carry in this version: a non-zero
    /// success code in a CONNACK, or an MQTT 3.1.1 SUBACK code other than
    /// a granted QoS or a failure.
    #[error("reason code {code} cannot be sent in {packet_type:?}")]
    InvalidReasonCode {
        /// The reason code.
        code: ReasonCode,
        /// The packet type.
        packet_type: PacketType,
    },
}
