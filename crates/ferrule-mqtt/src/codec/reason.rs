//! Reason Codes (MQTT 5 §2.4) and their MQTT 3.1.1 counterparts.

use std::fmt;

/// An MQTT 5 Reason Code (MQTT 5 §2.4). Values below 0x80 mean success,
/// 0x80 and above mean failure.
///
/// A newtype rather than an enum because MQTT gives one value several names
/// depending on the packet (0x00 is Success, Normal disconnection and
/// Granted QoS 0) and because a peer may send codes we do not know; those
/// are carried through unchanged rather than rejected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    /// 0x00 Success (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH).
    pub const SUCCESS: Self = Self(0x00);
    /// 0x00 Normal disconnection (DISCONNECT).
    pub const NORMAL_DISCONNECTION: Self = Self(0x00);
    /// 0x00 Granted QoS 0 (SUBACK).
    pub const GRANTED_QOS_0: Self = Self(0x00);
    /// 0x01 Granted QoS 1 (SUBACK).
    pub const GRANTED_QOS_1: Self = Self(0x01);
    /// 0x02 Granted QoS 2 (SUBACK).
    pub const GRANTED_QOS_2: Self = Self(0x02);
    /// 0x04 Disconnect with Will Message (DISCONNECT).
    pub const DISCONNECT_WITH_WILL_MESSAGE: Self = Self(0x04);
    /// 0x10 No matching subscribers (PUBACK, PUBREC).
    pub const NO_MATCHING_SUBSCRIBERS: Self = Self(0x10);
    /// 0x11 No subscription existed (UNSUBACK).
    pub const NO_SUBSCRIPTION_EXISTED: Self = Self(0x11);
    /// 0x18 Continue authentication (AUTH).
    pub const CONTINUE_AUTHENTICATION: Self = Self(0x18);
    /// 0x19 Re-authenticate (AUTH).
    pub const RE_AUTHENTICATE: Self = Self(0x19);
    /// 0x80 Unspecified error.
    pub const UNSPECIFIED_ERROR: Self = Self(0x80);
    /// 0x81 Malformed Packet.
    pub const MALFORMED_PACKET: Self = Self(0x81);
    /// 0x82 Protocol Error.
    pub const PROTOCOL_ERROR: Self = Self(0x82);
    /// 0x83 Implementation specific error.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: Self = Self(0x83);
    /// 0x84 Unsupported Protocol Version (CONNACK).
    pub const UNSUPPORTED_PROTOCOL_VERSION: Self = Self(0x84);
    /// 0x85 Client Identifier not valid (CONNACK).
    pub const CLIENT_IDENTIFIER_NOT_VALID: Self = Self(0x85);
    /// 0x86 Bad User Name or Password (CONNACK).
    pub const BAD_USER_NAME_OR_PASSWORD: Self = Self(0x86);
    /// 0x87 Not authorized.
    pub const NOT_AUTHORIZED: Self = Self(0x87);
    /// 0x88 Server unavailable (CONNACK).
    pub const SERVER_UNAVAILABLE: Self = Self(0x88);
    /// 0x89 Server busy.
    pub const SERVER_BUSY: Self = Self(0x89);
    /// 0x8A Banned (CONNACK).
    pub const BANNED: Self = Self(0x8A);
    /// 0x8B Server shutting down (DISCONNECT).
    pub const SERVER_SHUTTING_DOWN: Self = Self(0x8B);
    /// 0x8C Bad authentication method.
    pub const BAD_AUTHENTICATION_METHOD: Self = Self(0x8C);
    /// 0x8D Keep Alive timeout (DISCONNECT).
    pub const KEEP_ALIVE_TIMEOUT: Self = Self(0x8D);
    /// 0x8E Session taken over (DISCONNECT).
    pub const SESSION_TAKEN_OVER: Self = Self(0x8E);
    /// 0x8F Topic Filter invalid.
    pub const TOPIC_FILTER_INVALID: Self = Self(0x8F);
    /// 0x90 Topic Name invalid.
    pub const TOPIC_NAME_INVALID: Self = Self(0x90);
    /// 0x91 Packet Identifier in use.
    pub const PACKET_IDENTIFIER_IN_USE: Self = Self(0x91);
    /// 0x92 Packet Identifier not found.
    pub const PACKET_IDENTIFIER_NOT_FOUND: Self = Self(0x92);
    /// 0x93 Receive Maximum exceeded (DISCONNECT).
    pub const RECEIVE_MAXIMUM_EXCEEDED: Self = Self(0x93);
    /// 0x94 Topic Alias invalid (DISCONNECT).
    pub const TOPIC_ALIAS_INVALID: Self = Self(0x94);
    /// 0x95 Packet too large.
    pub const PACKET_TOO_LARGE: Self = Self(0x95);
    /// 0x96 Message rate too high (DISCONNECT).
    pub const MESSAGE_RATE_TOO_HIGH: Self = Self(0x96);
    /// 0x97 Quota exceeded.
    pub const QUOTA_EXCEEDED: Self = Self(0x97);
    /// 0x98 Administrative action (DISCONNECT).
    pub const ADMINISTRATIVE_ACTION: Self = Self(0x98);
    /// 0x99 Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: Self = Self(0x99);
    /// 0x9A Retain not supported.
    pub const RETAIN_NOT_SUPPORTED: Self = Self(0x9A);
    /// 0x9B QoS not supported.
    pub const QOS_NOT_SUPPORTED: Self = Self(0x9B);
    /// 0x9C Use another server.
    pub const USE_ANOTHER_SERVER: Self = Self(0x9C);
    /// 0x9D Server moved.
    pub const SERVER_MOVED: Self = Self(0x9D);
    /// 0x9E Shared Subscriptions not supported.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0x9E);
    /// 0x9F Connection rate exceeded.
    pub const CONNECTION_RATE_EXCEEDED: Self = Self(0x9F);
    /// 0xA0 Maximum connect time (DISCONNECT).
    pub const MAXIMUM_CONNECT_TIME: Self = Self(0xA0);
    /// 0xA1 Subscription Identifiers not supported.
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: Self = Self(0xA1);
    /// 0xA2 Wildcard Subscriptions not supported.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0xA2);

    /// Whether this code reports a failure (0x80 or above, MQTT 5 §2.4).
    pub const fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The MQTT 3.1.1 CONNACK return code (MQTT 3.1.1 §3.2.2.3, Table 3.1)
    /// that best expresses this reason code, or `None` for a non-zero
    /// success code, which no CONNACK may carry.
    ///
    /// 3.1.1 has only five refusals, so failures without a direct match
    /// become 3 "Server unavailable": the client may retry later.
    pub const fn to_v311_connack(self) -> Option<u8> {
        Some(match self.0 {
            0x00 => 0,
            0x84 => 1,        // unacceptable protocol version
            0x85 => 2,        // identifier rejected
            0x86 | 0x8C => 4, // bad user name or password
            0x87 | 0x8A => 5, // not authorized
            0x80..=0xFF => 3, // server unavailable
            _ => return None,
        })
    }

    /// The reason code for an MQTT 3.1.1 CONNACK return code, or `None` for
    /// the reserved values 6–255 (MQTT 3.1.1 §3.2.2.3).
    pub const fn from_v311_connack(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::SUCCESS,
            1 => Self::UNSUPPORTED_PROTOCOL_VERSION,
            2 => Self::CLIENT_IDENTIFIER_NOT_VALID,
            3 => Self::SERVER_UNAVAILABLE,
            4 => Self::BAD_USER_NAME_OR_PASSWORD,
            5 => Self::NOT_AUTHORIZED,
            _ => return None,
        })
    }

    /// The generic MQTT 5 name of this code (the DISCONNECT/CONNACK name
    /// where several exist), or `None` if MQTT 5 does not define it.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "Success",
            0x01 => "Granted QoS 1",
            0x02 => "Granted QoS 2",
            0x04 => "Disconnect with Will Message",
            0x10 => "No matching subscribers",
            0x11 => "No subscription existed",
            0x18 => "Continue authentication",
            0x19 => "Re-authenticate",
            0x80 => "Unspecified error",
            0x81 => "Malformed Packet",
            0x82 => "Protocol Error",
            0x83 => "Implementation specific error",
            0x84 => "Unsupported Protocol Version",
            0x85 => "Client Identifier not valid",
            0x86 => "Bad User Name or Password",
            0x87 => "Not authorized",
            0x88 => "Server unavailable",
            0x89 => "Server busy",
            0x8A => "Banned",
            0x8B => "Server shutting down",
            0x8C => "Bad authentication method",
            0x8D => "Keep Alive timeout",
            0x8E => "Session taken over",
            0x8F => "Topic Filter invalid",
            0x90 => "Topic Name invalid",
            0x91 => "Packet Identifier in use",
            0x92 => "Packet Identifier not found",
            0x93 => "Receive Maximum exceeded",
            0x94 => "Topic Alias invalid",
            0x95 => "Packet too large",
            0x96 => "Message rate too high",
            0x97 => "Quota exceeded",
            0x98 => "Administrative action",
            0x99 => "Payload format invalid",
            0x9A => "Retain not supported",
            0x9B => "QoS not supported",
            0x9C => "Use another server",
            0x9D => "Server moved",
            0x9E => "Shared Subscriptions not supported",
            0x9F => "Connection rate exceeded",
            0xA0 => "Maximum connect time",
            0xA1 => "Subscription Identifiers not supported",
            0xA2 => "Wildcard Subscriptions not supported",
            _ => return None,
        })
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode({:#04x}", self.0)?;
        if let Some(name) = self.name() {
            write!(f, " {name}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#04x})", self.0),
            None => write!(f, "reason code {:#04x}", self.0),
        }
    }
}

impl From<u8> for ReasonCode {
    fn from(code: u8) -> Self {
        Self(code)
    }
}

impl From<ReasonCode> for u8 {
    fn from(code: ReasonCode) -> u8 {
        code.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v311_connack_mapping() {
        // The mappings MQTT 3.1.1 §3.2.2.3 Table 3.1 lines up with.
        let table = [
            (ReasonCode::SUCCESS, 0),
            (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
            (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
            (ReasonCode::SERVER_UNAVAILABLE, 3),
            (ReasonCode::SERVER_BUSY, 3),
            (ReasonCode::BAD_USER_NAME_OR_PASSWORD, 4),
            (ReasonCode::NOT_AUTHORIZED, 5),
            (ReasonCode::BANNED, 5),
            (ReasonCode::UNSPECIFIED_ERROR, 3),
        ];
        for (code, v311) in table {
            assert_eq!(code.to_v311_connack(), Some(v311), "{code:?}");
        }
        assert_eq!(ReasonCode(0x01).to_v311_connack(), None);
        for v311 in 0..=5 {
            let code = ReasonCode::from_v311_connack(v311).unwrap();
            assert_eq!(code.to_v311_connack(), Some(v311));
        }
        assert_eq!(ReasonCode::from_v311_connack(6), None);
    }

    #[test]
    fn display_names_known_codes() {
        assert_eq!(
            ReasonCode::PACKET_TOO_LARGE.to_string(),
            "Packet too large (0x95)"
        );
        assert_eq!(ReasonCode(0x42).to_string(), "reason code 0x42");
        assert!(ReasonCode::MALFORMED_PACKET.is_error());
        assert!(!ReasonCode::GRANTED_QOS_2.is_error());
    }
}
