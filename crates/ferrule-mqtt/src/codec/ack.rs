//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5 §3.4–§3.7): the QoS 1 and
//! QoS 2 handshake packets, which share one shape. [`Packet`](super::Packet)
//! says which of the four an [`Ack`] is.
//!
//! MQTT 3.1.1: a Packet Identifier only (Remaining Length 2).
//! MQTT 5: a Packet Identifier, then the optional Reason Code and
//! Properties tail (see `tail.rs`).

use bytes::{BufMut, BytesMut};

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyOwner};
use super::reason::ReasonCode;
use super::tail;
use super::types::{PacketId, Reader};

/// The body of a PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The Packet Identifier of the PUBLISH (or PUBREC/PUBREL) acknowledged.
    pub packet_id: PacketId,
    /// MQTT 5 Reason Code; dropped in MQTT 3.1.1 (decodes as Success).
    pub reason_code: ReasonCode,
    /// MQTT 5 properties: Reason String and User Properties only.
    pub properties: Properties,
}

impl Ack {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Ack {
            packet_id,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
        owner: PropertyOwner,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let (reason_code, properties) = match version {
            // Anything after the identifier is a trailing-bytes error.
            ProtocolVersion::V311 => (ReasonCode::SUCCESS, Properties::default()),
            ProtocolVersion::V5 => tail::decode(r, owner)?,
        };
        Ok(Ack {
            packet_id,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(
        &self,
        version: ProtocolVersion,
        owner: PropertyOwner,
    ) -> Result<usize, EncodeError> {
        Ok(match version {
            ProtocolVersion::V311 => 2,
            ProtocolVersion::V5 => {
                2 + tail::encoded_len(self.reason_code, &self.properties, owner)?
            }
        })
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version == ProtocolVersion::V5 {
            tail::write(self.reason_code, &self.properties, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{DecodeError, MqttStr, Packet};
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn v311_acks_are_two_bytes_of_packet_id() {
        // PUBACK id 10, PUBREC id 10, PUBREL (flags 0b0010) id 10, PUBCOMP id 10.
        let a = Ack::new(pid(10));
        assert_eq!(
            decode_one(&[0x40, 0x02, 0x00, 0x0A], V311),
            Packet::PubAck(a.clone())
        );
        assert_eq!(
            decode_one(&[0x50, 0x02, 0x00, 0x0A], V311),
            Packet::PubRec(a.clone())
        );
        assert_eq!(
            decode_one(&[0x62, 0x02, 0x00, 0x0A], V311),
            Packet::PubRel(a.clone())
        );
        assert_eq!(
            decode_one(&[0x70, 0x02, 0x00, 0x0A], V311),
            Packet::PubComp(a.clone())
        );
        assert_eq!(
            encode_to_vec(&Packet::PubRel(a), V311),
            [0x62, 0x02, 0x00, 0x0A]
        );
    }

    #[test]
    fn v311_drops_reason_code_and_properties() {
        let a = Ack {
            packet_id: pid(1),
            reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: Properties {
                reason_string: Some(MqttStr::from_static("nobody")),
                ..Properties::default()
            },
        };
        assert_eq!(
            encode_to_vec(&Packet::PubAck(a), V311),
            [0x40, 0x02, 0x00, 0x01]
        );
        // ... and does not accept them on the wire.
        assert_eq!(
            decode_err(&[0x40, 0x03, 0x00, 0x01, 0x10], V311),
            DecodeError::TrailingBytes(1)
        );
    }

    #[test]
    fn v5_short_forms_decode() {
        // Remaining Length 2: Success, no properties (MQTT 5 §3.4.2.1).
        assert_eq!(
            decode_one(&[0x40, 0x02, 0x00, 0x07], V5),
            Packet::PubAck(Ack::new(pid(7)))
        );
        // Remaining Length 3: Reason Code, no Property Length (§3.4.2.2.1).
        let Packet::PubRec(a) = decode_one(&[0x50, 0x03, 0x00, 0x07, 0x10], V5) else {
            panic!("not a PUBREC")
        };
        assert_eq!(a.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        assert!(a.properties.is_empty());
        // Remaining Length 4: Reason Code and an empty Property Length.
        assert_eq!(
            decode_one(&[0x70, 0x04, 0x00, 0x07, 0x00, 0x00], V5),
            Packet::PubComp(Ack::new(pid(7)))
        );
    }

    #[test]
    fn v5_encodes_shortest_form() {
        assert_eq!(
            encode_to_vec(&Packet::PubAck(Ack::new(pid(7))), V5),
            [0x40, 0x02, 0x00, 0x07]
        );
        let mut a = Ack::new(pid(7));
        a.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        assert_eq!(
            encode_to_vec(&Packet::PubRel(a.clone()), V5),
            [0x62, 0x03, 0x00, 0x07, 0x92]
        );
        a.properties.reason_string = Some(MqttStr::from_static("gone"));
        #[rustfmt::skip]
        let wire = [
            0x62, 0x0B,              // PUBREL, Remaining Length 11
            0x00, 0x07,              // Packet Identifier 7
            0x92,                    // Packet Identifier not found
            0x07,                    // Property Length 7
            0x1F, 0x00, 0x04, b'g', b'o', b'n', b'e', // Reason String "gone"
        ];
        assert_eq!(encode_to_vec(&Packet::PubRel(a.clone()), V5), wire);
        assert_eq!(decode_one(&wire, V5), Packet::PubRel(a));
    }

    #[test]
    fn zero_packet_id_is_protocol_error() {
        for v in [V311, V5] {
            let err = decode_err(&[0x40, 0x02, 0x00, 0x00], v);
            assert_eq!(err, DecodeError::ZeroPacketId);
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn truncated_or_disallowed_content() {
        assert_eq!(
            decode_err(&[0x40, 0x01, 0x00], V5),
            DecodeError::UnexpectedEndOfPacket
        );
        // Topic Alias (0x23) is not allowed in a PUBACK.
        assert!(matches!(
            decode_err(&[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01], V5),
            DecodeError::PropertyNotAllowed {
                packet: "PUBACK",
                ..
            }
        ));
    }

    #[test]
    fn roundtrips() {
        let a = Ack {
            packet_id: pid(65535),
            reason_code: ReasonCode::QUOTA_EXCEEDED,
            properties: Properties {
                user_properties: vec![(MqttStr::from_static("a"), MqttStr::from_static("b"))],
                ..Properties::default()
            },
        };
        for p in [
            Packet::PubAck(a.clone()),
            Packet::PubRec(a.clone()),
            Packet::PubRel(a.clone()),
            Packet::PubComp(a.clone()),
        ] {
            assert_eq!(roundtrip(&p, V5), p);
        }
        assert_eq!(
            roundtrip(&Packet::PubAck(a), V311),
            Packet::PubAck(Ack::new(pid(65535)))
        );
    }
}
