//! SUBACK (MQTT 5 §3.9, MQTT 3.1.1 §3.9).
//!
//! Variable header: Packet Identifier, Properties (MQTT 5). Payload: one
//! reason code per Topic Filter of the SUBSCRIBE, in order. MQTT 3.1.1
//! allows only 0x00, 0x01, 0x02 (granted QoS) and 0x80 (failure)
//! [MQTT-3.9.3-2].

use bytes::{BufMut, BytesMut};

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::frame::PacketType;
use super::properties::{Properties, PropertyOwner};
use super::reason::ReasonCode;
use super::types::{PacketId, Reader};

/// A subscribe acknowledgement (MQTT 5 §3.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// SUBACK properties: Reason String and User Properties.
    pub properties: Properties,
    /// One per subscription: a granted QoS (0x00–0x02) or a failure
    /// (0x80 and above). Any MQTT 5 failure becomes 0x80 in MQTT 3.1.1.
    pub reason_codes: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = match version {
            ProtocolVersion::V311 => Properties::default(),
            ProtocolVersion::V5 => Properties::decode(r, PropertyOwner::SubAck)?,
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            if version == ProtocolVersion::V311 && !matches!(code, 0x00 | 0x01 | 0x02 | 0x80) {
                return Err(DecodeError::InvalidReturnCode(code));
            }
            reason_codes.push(ReasonCode(code));
        }
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let properties_len = match version {
            ProtocolVersion::V311 => {
                for &code in &self.reason_codes {
                    v311_return_code(code)?;
                }
                0
            }
            ProtocolVersion::V5 => self.properties.encoded_len(PropertyOwner::SubAck)?,
        };
        Ok((2 + properties_len).saturating_add(self.reason_codes.len()))
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        match version {
            ProtocolVersion::V311 => {
                for &code in &self.reason_codes {
                    out.put_u8(v311_return_code(code).unwrap_or(0x80));
                }
            }
            ProtocolVersion::V5 => {
                self.properties.write(out);
                for code in &self.reason_codes {
                    out.put_u8(code.0);
                }
            }
        }
    }
}

/// The MQTT 3.1.1 SUBACK return code for a reason code: granted QoS as is,
/// every failure as 0x80 (MQTT 3.1.1 §3.9.3).
fn v311_return_code(code: ReasonCode) -> Result<u8, EncodeError> {
    match code.0 {
        0x00..=0x02 => Ok(code.0),
        0x80..=0xFF => Ok(0x80),
        _ => Err(EncodeError::InvalidReasonCode {
            code,
            packet_type: PacketType::SubAck,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Packet;
    use super::super::test_util::*;
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn v311_suback() {
        // Granted QoS 1, then failure.
        let wire = [0x90, 0x04, 0x00, 0x01, 0x01, 0x80];
        let ack = SubAck {
            packet_id: pid(1),
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR],
        };
        assert_eq!(decode_one(&wire, V311), Packet::SubAck(ack.clone()));
        assert_eq!(encode_to_vec(&Packet::SubAck(ack), V311), wire);
    }

    #[test]
    fn v5_failures_collapse_to_0x80_in_v311() {
        let ack = SubAck {
            packet_id: pid(2),
            properties: Properties {
                reason_string: Some(s("denied")),
                ..Properties::default()
            },
            reason_codes: vec![
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::NOT_AUTHORIZED,
                ReasonCode::TOPIC_FILTER_INVALID,
            ],
        };
        assert_eq!(
            encode_to_vec(&Packet::SubAck(ack.clone()), V311),
            [0x90, 0x05, 0x00, 0x02, 0x02, 0x80, 0x80]
        );
        #[rustfmt::skip]
        let v5 = [
            0x90, 0x0F,
            0x00, 0x02,
            0x09, 0x1F, 0x00, 0x06, b'd', b'e', b'n', b'i', b'e', b'd',
            0x02, 0x87, 0x8F,
        ];
        assert_eq!(encode_to_vec(&Packet::SubAck(ack.clone()), V5), v5);
        assert_eq!(decode_one(&v5, V5), Packet::SubAck(ack));
    }

    #[test]
    fn v311_reserved_return_code_is_malformed() {
        let err = decode_err(&[0x90, 0x03, 0x00, 0x01, 0x03], V311);
        assert_eq!(err, DecodeError::InvalidReturnCode(3));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        let bad = SubAck {
            packet_id: pid(1),
            properties: Properties::default(),
            reason_codes: vec![ReasonCode(0x11)],
        };
        assert!(matches!(
            bad.body_len(V311),
            Err(EncodeError::InvalidReasonCode { .. })
        ));
    }

    #[test]
    fn suback_property_rules() {
        // Subscription Identifier is not a SUBACK property.
        assert!(matches!(
            decode_err(&[0x90, 0x06, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00], V5),
            DecodeError::PropertyNotAllowed {
                packet: "SUBACK",
                ..
            }
        ));
        assert_eq!(
            decode_err(&[0x90, 0x03, 0x00, 0x00, 0x00], V5),
            DecodeError::ZeroPacketId
        );
    }
}
