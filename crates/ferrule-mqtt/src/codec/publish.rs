//! PUBLISH (MQTT 5 §3.3, MQTT 3.1.1 §3.3): the hot path.
//!
//! Fixed header flags: DUP (bit 3), QoS (bits 2–1), RETAIN (bit 0).
//! Variable header: Topic Name, Packet Identifier (QoS 1 and 2 only),
//! Properties (MQTT 5). Payload: the rest of the packet, no length prefix.
//!
//! Decoding slices the topic and payload out of the frame, so a QoS 0
//! PUBLISH without properties costs no allocation, and the payload can be
//! fanned out to many subscribers by cloning a [`Bytes`].
//!
//! Left to the session, because they depend on direction or connection
//! state: resolving and bounds-checking Topic Aliases (§3.3.2.3.4),
//! refusing Subscription Identifiers from a client [MQTT-3.3.4-6], Receive
//! Maximum accounting, and the optional UTF-8 check of payloads marked with
//! Payload Format Indicator 1 (§3.3.2.3.2, reason 0x99).

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyOwner};
use super::topic::{TopicError, check_no_wildcards};
use super::types::{MqttStr, PacketId, QoS, Reader, put_str, str_len};

/// An application message (MQTT 5 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this may be a re-delivery (MQTT 5 §3.3.1.1). Must be `false`
    /// at QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// QoS level (MQTT 5 §3.3.1.2).
    pub qos: QoS,
    /// RETAIN (MQTT 5 §3.3.1.3).
    pub retain: bool,
    /// Topic Name (MQTT 5 §3.3.2.1): no wildcards; empty only in MQTT 5
    /// together with a Topic Alias property, which the session resolves.
    pub topic: MqttStr,
    /// Present exactly when `qos` is 1 or 2 (MQTT 5 §3.3.2.2).
    pub packet_id: Option<PacketId>,
    /// MQTT 5 properties (dropped when encoding for 3.1.1).
    pub properties: Properties,
    /// The Application Message (MQTT 5 §3.3.3).
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0, non-retained PUBLISH without properties.
    pub fn new(topic: MqttStr, payload: impl Into<Bytes>) -> Self {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: Properties::default(),
            payload: payload.into(),
        }
    }

    pub(crate) fn header_flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | (self.qos.as_u8() << 1) | u8::from(self.retain)
    }

    pub(crate) fn decode(
        flags: u8,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let dup = flags & 0b1000 != 0;
        let retain = flags & 0b0001 != 0;
        // "If a Server or Client receives a PUBLISH packet which has both QoS
        // bits set to 1 it is a Malformed Packet" [MQTT-3.3.1-4].
        let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
        // "The DUP flag MUST be set to 0 for all QoS 0 messages"
        // [MQTT-3.3.1-2]. 3.1.1 says the same; we reject it in both.
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        let topic = r.string()?;
        check_no_wildcards(topic.as_bytes()).map_err(DecodeError::InvalidTopicName)?;
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(r.packet_id()?),
        };
        let properties = match version {
            ProtocolVersion::V311 => Properties::default(),
            ProtocolVersion::V5 => Properties::decode(r, PropertyOwner::Publish)?,
        };
        if topic.is_empty() {
            match version {
                // MQTT 3.1.1 §4.7.3: topic names are at least one character.
                ProtocolVersion::V311 => {
                    return Err(DecodeError::InvalidTopicName(TopicError::Empty));
                }
                // MQTT 5 §3.3.2.3.4: "It is a Protocol Error if the Topic
                // Name is zero length and there is no Topic Alias."
                ProtocolVersion::V5 if properties.topic_alias.is_none() => {
                    return Err(DecodeError::MissingTopicAlias);
                }
                ProtocolVersion::V5 => {}
            }
        }
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: r.take_rest(),
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) | (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(_)) => {}
            _ => return Err(EncodeError::PacketIdMismatch),
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::DupWithQoS0);
        }
        check_no_wildcards(self.topic.as_bytes()).map_err(EncodeError::InvalidTopicName)?;
        let properties_len = match version {
            ProtocolVersion::V311 => {
                if self.topic.is_empty() {
                    return Err(EncodeError::InvalidTopicName(TopicError::Empty));
                }
                0
            }
            ProtocolVersion::V5 => {
                if self.topic.is_empty() && self.properties.topic_alias.is_none() {
                    return Err(EncodeError::MissingTopicAlias);
                }
                self.properties.encoded_len(PropertyOwner::Publish)?
            }
        };
        let packet_id_len = if self.packet_id.is_some() { 2 } else { 0 };
        Ok((str_len(&self.topic) + packet_id_len + properties_len)
            .saturating_add(self.payload.len()))
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        put_str(out, &self.topic);
        if let Some(id) = self.packet_id {
            out.put_u16(id.get());
        }
        if version == ProtocolVersion::V5 {
            self.properties.write(out);
        }
        out.put_slice(&self.payload);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::super::test_util::*;
    use super::super::{DecodeError, Packet, ReasonCode, decode};
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn qos0_publish_v311() {
        // mosquitto_pub -V mqttv311 -t a/b -m hi
        #[rustfmt::skip]
        let wire = [
            0x30, 0x07,                   // PUBLISH, QoS 0, Remaining Length 7
            0x00, 0x03, b'a', b'/', b'b', // Topic Name "a/b"
            b'h', b'i',                   // payload
        ];
        let p = Publish::new(s("a/b"), &b"hi"[..]);
        assert_eq!(decode_one(&wire, V311), Packet::Publish(p.clone()));
        assert_eq!(encode_to_vec(&Packet::Publish(p), V311), wire);
    }

    #[test]
    fn qos1_retained_publish_v5_with_properties() {
        #[rustfmt::skip]
        let wire = [
            0x3B, 0x0D,                   // PUBLISH, DUP, QoS 1, RETAIN; Remaining Length 13
            0x00, 0x03, b'a', b'/', b'b', // Topic Name "a/b"
            0x12, 0x34,                   // Packet Identifier 0x1234
            0x05,                         // Property Length 5
            0x02, 0x00, 0x00, 0x0E, 0x10, // Message Expiry Interval 3600 s
            // empty payload
        ];
        let p = Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: s("a/b"),
            packet_id: Some(pid(0x1234)),
            properties: Properties {
                message_expiry_interval: Some(3600),
                ..Properties::default()
            },
            payload: Bytes::new(),
        };
        assert_eq!(decode_one(&wire, V5), Packet::Publish(p.clone()));
        assert_eq!(encode_to_vec(&Packet::Publish(p), V5), wire);
    }

    #[test]
    fn topic_and_payload_are_slices_of_the_frame() {
        let wire = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
        let mut buf = BytesMut::from(&wire[..]);
        let base = buf.as_ptr() as usize;
        let Some(Packet::Publish(p)) = decode(&mut buf, V311, 1024).unwrap() else {
            panic!("not a PUBLISH")
        };
        // Pointers into the original allocation prove nothing was copied.
        assert_eq!(p.topic.as_bytes().as_ptr() as usize, base + 4);
        assert_eq!(p.payload.as_ptr() as usize, base + 7);
    }

    #[test]
    fn qos3_is_malformed() {
        for v in [V311, V5] {
            let err = decode_err(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01], v);
            assert_eq!(err, DecodeError::InvalidQoS);
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        }
    }

    #[test]
    fn dup_at_qos0_is_malformed() {
        for v in [V311, V5] {
            let err = decode_err(&[0x38, 0x03, 0x00, 0x01, b'a'], v);
            assert_eq!(err, DecodeError::DupWithQoS0);
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        }
        let mut p = Publish::new(s("a"), Bytes::new());
        p.dup = true;
        assert_eq!(p.body_len(V5), Err(EncodeError::DupWithQoS0));
    }

    #[test]
    fn zero_packet_id_at_qos1_is_protocol_error() {
        let err = decode_err(&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00], V311);
        assert_eq!(err, DecodeError::ZeroPacketId);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    #[test]
    fn wildcards_in_topic_name_are_rejected() {
        for (topic, v) in [(b'+', V311), (b'#', V5)] {
            let err = decode_err(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', topic], v);
            assert_eq!(
                err,
                DecodeError::InvalidTopicName(TopicError::WildcardInName)
            );
            assert_eq!(err.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
        }
        let p = Publish::new(s("a/+"), Bytes::new());
        assert_eq!(
            p.body_len(V5),
            Err(EncodeError::InvalidTopicName(TopicError::WildcardInName))
        );
    }

    #[test]
    fn empty_topic_needs_alias_in_v5_and_is_invalid_in_v311() {
        assert_eq!(
            decode_err(&[0x30, 0x03, 0x00, 0x00, b'x'], V311),
            DecodeError::InvalidTopicName(TopicError::Empty)
        );
        let err = decode_err(&[0x30, 0x04, 0x00, 0x00, 0x00, b'x'], V5);
        assert_eq!(err, DecodeError::MissingTopicAlias);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        // With Topic Alias 5 the empty topic is fine; resolving the alias is
        // the session's job (MQTT 5 §3.3.2.3.4).
        #[rustfmt::skip]
        let wire = [
            0x30, 0x07,
            0x00, 0x00,             // empty Topic Name
            0x03, 0x23, 0x00, 0x05, // Property Length 3, Topic Alias 5
            b'x',
        ];
        let Packet::Publish(p) = decode_one(&wire, V5) else {
            panic!()
        };
        assert!(p.topic.is_empty());
        assert_eq!(p.properties.topic_alias, NonZeroU16::new(5));
        assert_eq!(encode_to_vec(&Packet::Publish(p.clone()), V5), wire);
        // The alias cannot be expressed in 3.1.1.
        assert_eq!(
            p.body_len(V311),
            Err(EncodeError::InvalidTopicName(TopicError::Empty))
        );
    }

    #[test]
    fn packet_id_must_match_qos_on_encode() {
        let mut p = Publish::new(s("t"), Bytes::new());
        p.packet_id = Some(pid(1));
        assert_eq!(p.body_len(V5), Err(EncodeError::PacketIdMismatch));
        p.packet_id = None;
        p.qos = QoS::ExactlyOnce;
        assert_eq!(p.body_len(V5), Err(EncodeError::PacketIdMismatch));
    }

    #[test]
    fn truncated_publish_is_malformed() {
        // Topic length 5 but only 1 byte in the packet.
        assert_eq!(
            decode_err(&[0x30, 0x03, 0x00, 0x05, b'a'], V5),
            DecodeError::UnexpectedEndOfPacket
        );
        // QoS 1 without room for the Packet Identifier.
        assert_eq!(
            decode_err(&[0x32, 0x03, 0x00, 0x01, b'a'], V5),
            DecodeError::UnexpectedEndOfPacket
        );
    }

    #[test]
    fn invalid_utf8_and_null_in_topic_are_malformed() {
        let err = decode_err(&[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28], V5);
        assert_eq!(err, DecodeError::InvalidUtf8);
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        let err = decode_err(&[0x30, 0x04, 0x00, 0x02, b'a', 0x00], V311);
        assert_eq!(err, DecodeError::NullCharacter);
    }

    #[test]
    fn publish_properties_survive_roundtrip_and_are_dropped_for_v311() {
        let p = Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: s("dev/42/temp"),
            packet_id: Some(pid(9)),
            properties: Properties {
                payload_format_indicator: Some(true),
                content_type: Some(s("text/plain")),
                response_topic: Some(s("dev/42/reply")),
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                subscription_identifiers: vec![3, 268_435_455],
                user_properties: vec![(s("unit"), s("°C"))],
                ..Properties::default()
            },
            payload: Bytes::from_static(b"21.5"),
        };
        let packet = Packet::Publish(p.clone());
        assert_eq!(roundtrip(&packet, V5), packet);
        let mut bare = p;
        bare.properties = Properties::default();
        assert_eq!(roundtrip(&packet, V311), Packet::Publish(bare));
    }
}
