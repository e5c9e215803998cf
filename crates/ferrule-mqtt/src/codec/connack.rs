//! CONNACK (MQTT 5 §3.2, MQTT 3.1.1 §3.2).
//!
//! Variable header: Connect Acknowledge Flags (bit 0 Session Present, bits
//! 7–1 reserved), Connect Reason Code (a 3.1.1 "return code" 0–5), and
//! Properties (MQTT 5). No payload.

use bytes::{BufMut, BytesMut};

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::frame::PacketType;
use super::properties::{Properties, PropertyOwner};
use super::reason::ReasonCode;
use super::types::Reader;

/// The server's answer to a CONNECT (MQTT 5 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session Present (MQTT 5 §3.2.2.1.1).
    pub session_present: bool,
    /// Connect Reason Code (MQTT 5 §3.2.2.2). For MQTT 3.1.1 it is mapped
    /// to a return code with [`ReasonCode::to_v311_connack`], and decoded
    /// back with [`ReasonCode::from_v311_connack`].
    pub reason_code: ReasonCode,
    /// CONNACK properties (MQTT 5 §3.2.2.3).
    pub properties: Properties,
}

impl ConnAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        // Bits 7–1 "are reserved and MUST be set to 0" (MQTT 5 §3.2.2.1).
        if flags & 0xFE != 0 {
            return Err(DecodeError::InvalidConnAckFlags);
        }
        let code = r.u8()?;
        let (reason_code, properties) = match version {
            ProtocolVersion::V311 => (
                ReasonCode::from_v311_connack(code).ok_or(DecodeError::InvalidReturnCode(code))?,
                Properties::default(),
            ),
            ProtocolVersion::V5 => (
                ReasonCode(code),
                Properties::decode(r, PropertyOwner::ConnAck)?,
            ),
        };
        Ok(ConnAck {
            session_present: flags & 0x01 != 0,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match version {
            ProtocolVersion::V311 => {
                self.v311_return_code()?;
                Ok(2)
            }
            ProtocolVersion::V5 => Ok(2 + self.properties.encoded_len(PropertyOwner::ConnAck)?),
        }
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u8(u8::from(self.session_present));
        match version {
            ProtocolVersion::V311 => out.put_u8(self.v311_return_code().unwrap_or(3)),
            ProtocolVersion::V5 => {
                out.put_u8(self.reason_code.0);
                self.properties.write(out);
            }
        }
    }

    fn v311_return_code(&self) -> Result<u8, EncodeError> {
        self.reason_code
            .to_v311_connack()
            .ok_or(EncodeError::InvalidReasonCode {
                code: self.reason_code,
                packet_type: PacketType::ConnAck,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU16, NonZeroU32};

    use super::super::test_util::*;
    use super::super::{Packet, QoS};
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn v311_accepted_and_refused() {
        // Accepted, no session: 0x20 0x02 0x00 0x00 (MQTT 3.1.1 §3.2).
        let ok = ConnAck::default();
        assert_eq!(
            decode_one(&[0x20, 0x02, 0x00, 0x00], V311),
            Packet::ConnAck(ok.clone())
        );
        assert_eq!(
            encode_to_vec(&Packet::ConnAck(ok), V311),
            [0x20, 0x02, 0x00, 0x00]
        );
        // Session present.
        let Packet::ConnAck(c) = decode_one(&[0x20, 0x02, 0x01, 0x00], V311) else {
            panic!()
        };
        assert!(c.session_present);
        // Return code 4: bad user name or password.
        let Packet::ConnAck(c) = decode_one(&[0x20, 0x02, 0x00, 0x04], V311) else {
            panic!()
        };
        assert_eq!(c.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }

    #[test]
    fn v5_reason_codes_map_to_v311_return_codes() {
        let cases = [
            (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
            (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
            (ReasonCode::SERVER_UNAVAILABLE, 3),
            (ReasonCode::SERVER_BUSY, 3),
            (ReasonCode::BAD_USER_NAME_OR_PASSWORD, 4),
            (ReasonCode::NOT_AUTHORIZED, 5),
        ];
        for (reason_code, v311) in cases {
            let c = ConnAck {
                reason_code,
                // Properties are dropped in 3.1.1.
                properties: Properties {
                    reason_string: Some(s("no")),
                    ..Properties::default()
                },
                ..ConnAck::default()
            };
            assert_eq!(
                encode_to_vec(&Packet::ConnAck(c), V311),
                [0x20, 0x02, 0x00, v311]
            );
        }
        let c = ConnAck {
            reason_code: ReasonCode::GRANTED_QOS_1,
            ..ConnAck::default()
        };
        assert_eq!(
            c.body_len(V311),
            Err(EncodeError::InvalidReasonCode {
                code: ReasonCode::GRANTED_QOS_1,
                packet_type: PacketType::ConnAck
            })
        );
    }

    #[test]
    fn v311_reserved_return_code_is_malformed() {
        let err = decode_err(&[0x20, 0x02, 0x00, 0x06], V311);
        assert_eq!(err, DecodeError::InvalidReturnCode(6));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    #[test]
    fn reserved_flags_are_malformed() {
        for v in [V311, V5] {
            let err = decode_err(&[0x20, 0x03, 0x02, 0x00, 0x00], v);
            assert_eq!(err, DecodeError::InvalidConnAckFlags);
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        }
    }

    #[test]
    fn v5_connack_with_server_capabilities() {
        #[rustfmt::skip]
        let wire = [
            0x20, 0x14,                         // CONNACK, Remaining Length 20
            0x00,                               // no session present
            0x00,                               // Success
            0x11,                               // Property Length 17
            0x21, 0x00, 0x14,                   // Receive Maximum 20
            0x22, 0x00, 0x0A,                   // Topic Alias Maximum 10
            0x24, 0x01,                         // Maximum QoS 1
            0x25, 0x00,                         // Retain Available: no
            0x27, 0x00, 0x01, 0x00, 0x00,       // Maximum Packet Size 65536
            0x2A, 0x00,                         // Shared Subscription Available: no
        ];
        let c = ConnAck {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties {
                receive_maximum: NonZeroU16::new(20),
                topic_alias_maximum: Some(10),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(false),
                maximum_packet_size: NonZeroU32::new(65_536),
                shared_subscription_available: Some(false),
                ..Properties::default()
            },
        };
        assert_eq!(decode_one(&wire, V5), Packet::ConnAck(c.clone()));
        assert_eq!(encode_to_vec(&Packet::ConnAck(c), V5), wire);
    }

    #[test]
    fn v5_connack_requires_property_length() {
        // Unlike the acks, CONNACK has no short form in MQTT 5.
        assert_eq!(
            decode_err(&[0x20, 0x02, 0x00, 0x00], V5),
            DecodeError::UnexpectedEndOfPacket
        );
    }

    #[test]
    fn v5_roundtrip_keeps_any_reason_code() {
        let c = ConnAck {
            session_present: false,
            reason_code: ReasonCode::USE_ANOTHER_SERVER,
            properties: Properties {
                server_reference: Some(s("other.example:1883")),
                assigned_client_identifier: Some(s("auto-1")),
                server_keep_alive: Some(30),
                response_information: Some(s("resp/")),
                wildcard_subscription_available: Some(true),
                subscription_identifiers_available: Some(true),
                session_expiry_interval: Some(0),
                ..Properties::default()
            },
        };
        assert_eq!(
            roundtrip(&Packet::ConnAck(c.clone()), V5),
            Packet::ConnAck(c)
        );
    }
}
