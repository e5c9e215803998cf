//! UNSUBACK (MQTT 5 §3.11, MQTT 3.1.1 §3.11).
//!
//! MQTT 3.1.1: a Packet Identifier only. MQTT 5: Packet Identifier,
//! Properties, then one reason code per Topic Filter of the UNSUBSCRIBE.

use bytes::{BufMut, BytesMut};

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyOwner};
use super::reason::ReasonCode;
use super::types::{PacketId, Reader};

/// An unsubscribe acknowledgement (MQTT 5 §3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// MQTT 5 properties: Reason String and User Properties.
    pub properties: Properties,
    /// MQTT 5: one per Topic Filter (0x00 Success, 0x11 No subscription
    /// existed, or a failure). Empty in MQTT 3.1.1, where it is dropped.
    pub reason_codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let (properties, reason_codes) = match version {
            // Anything more is a trailing-bytes error.
            ProtocolVersion::V311 => (Properties::default(), Vec::new()),
            ProtocolVersion::V5 => {
                let properties = Properties::decode(r, PropertyOwner::UnsubAck)?;
                let codes = r.take_rest().iter().map(|&c| ReasonCode(c)).collect();
                (properties, codes)
            }
        };
        Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(match version {
            ProtocolVersion::V311 => 2,
            ProtocolVersion::V5 => (2 + self.properties.encoded_len(PropertyOwner::UnsubAck)?)
                .saturating_add(self.reason_codes.len()),
        })
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version == ProtocolVersion::V5 {
            self.properties.write(out);
            for code in &self.reason_codes {
                out.put_u8(code.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Packet;
    use super::super::test_util::*;
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn v311_unsuback_is_packet_id_only() {
        let u = UnsubAck {
            packet_id: pid(5),
            properties: Properties::default(),
            reason_codes: vec![],
        };
        assert_eq!(
            decode_one(&[0xB0, 0x02, 0x00, 0x05], V311),
            Packet::UnsubAck(u.clone())
        );
        let with_codes = UnsubAck {
            reason_codes: vec![ReasonCode::SUCCESS],
            ..u
        };
        assert_eq!(
            encode_to_vec(&Packet::UnsubAck(with_codes), V311),
            [0xB0, 0x02, 0x00, 0x05]
        );
        assert_eq!(
            decode_err(&[0xB0, 0x03, 0x00, 0x05, 0x00], V311),
            DecodeError::TrailingBytes(1)
        );
    }

    #[test]
    fn v5_unsuback() {
        // Success, then No subscription existed.
        let wire = [0xB0, 0x05, 0x00, 0x05, 0x00, 0x00, 0x11];
        let u = UnsubAck {
            packet_id: pid(5),
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        };
        assert_eq!(decode_one(&wire, V5), Packet::UnsubAck(u.clone()));
        assert_eq!(encode_to_vec(&Packet::UnsubAck(u), V5), wire);
        // The Property Length is mandatory in MQTT 5.
        assert_eq!(
            decode_err(&[0xB0, 0x02, 0x00, 0x05], V5),
            DecodeError::UnexpectedEndOfPacket
        );
    }
}
