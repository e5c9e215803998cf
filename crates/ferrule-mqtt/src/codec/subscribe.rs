//! SUBSCRIBE (MQTT 5 §3.8, MQTT 3.1.1 §3.8).
//!
//! Fixed header flags 0b0010. Variable header: Packet Identifier,
//! Properties (MQTT 5). Payload: one or more Topic Filter + Subscription
//! Options pairs. In 3.1.1 the options byte is just the requested QoS.

use bytes::{BufMut, BytesMut};

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyOwner};
use super::types::{MqttStr, PacketId, QoS, Reader, put_str, str_len};

/// Retain Handling (MQTT 5 §3.8.3.1): when retained messages are sent for
/// a new subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send retained messages.
    DoNotSend = 2,
}

/// Subscription Options (MQTT 5 §3.8.3.1). MQTT 3.1.1 has only `qos`;
/// the other options are dropped when encoding for it and decode as their
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client wants messages at (bits 1–0).
    pub qos: QoS,
    /// No Local: do not forward the client's own messages (bit 2).
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag when forwarding (bit 3).
    pub retain_as_published: bool,
    /// Retain Handling (bits 5–4).
    pub retain_handling: RetainHandling,
}

const QOS_MASK: u8 = 0b0000_0011;
const NO_LOCAL: u8 = 0b0000_0100;
const RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
const RETAIN_HANDLING_SHIFT: u8 = 4;
const RETAIN_HANDLING_MASK: u8 = 0b0011_0000;

impl SubscriptionOptions {
    /// Options asking for `qos`, everything else default.
    pub fn new(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        }
    }

    fn decode(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        // Reserved bits: 7–2 in 3.1.1, 7–6 in MQTT 5 [MQTT-3.8.3-5].
        let reserved = match version {
            ProtocolVersion::V311 => !QOS_MASK,
            ProtocolVersion::V5 => 0b1100_0000,
        };
        if byte & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions);
        }
        // "It is a Protocol Error if the Maximum QoS field has the value 3"
        // (MQTT 5 §3.8.3.1).
        let qos = QoS::from_u8(byte & QOS_MASK).ok_or(DecodeError::InvalidSubscriptionQoS)?;
        // "It is a Protocol Error to send a Retain Handling value of 3".
        let retain_handling = match (byte & RETAIN_HANDLING_MASK) >> RETAIN_HANDLING_SHIFT {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & NO_LOCAL != 0,
            retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    fn encode(self, version: ProtocolVersion) -> u8 {
        let qos = self.qos.as_u8();
        match version {
            ProtocolVersion::V311 => qos,
            ProtocolVersion::V5 => {
                let mut byte = qos | ((self.retain_handling as u8) << RETAIN_HANDLING_SHIFT);
                if self.no_local {
                    byte |= NO_LOCAL;
                }
                if self.retain_as_published {
                    byte |= RETAIN_AS_PUBLISHED;
                }
                byte
            }
        }
    }
}

/// One Topic Filter and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The Topic Filter. Only UTF-8 validity is checked by the codec; use
    /// [`validate_topic_filter`](super::topic::validate_topic_filter) to
    /// check wildcard placement and answer 0x8F per filter.
    pub topic_filter: MqttStr,
    /// Subscription Options.
    pub options: SubscriptionOptions,
}

/// A subscribe request (MQTT 5 §3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier (MQTT 5 §3.8.2).
    pub packet_id: PacketId,
    /// SUBSCRIBE properties: at most one Subscription Identifier, and User
    /// Properties (MQTT 5 §3.8.2.1).
    pub properties: Properties,
    /// At least one subscription [MQTT-3.8.3-2].
    pub subscriptions: Vec<Subscription>,
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = match version {
            ProtocolVersion::V311 => Properties::default(),
            ProtocolVersion::V5 => Properties::decode(r, PropertyOwner::Subscribe)?,
        };
        // The Vec grows with filters actually parsed, never from a claimed
        // count, so its size is bounded by the bytes received.
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let topic_filter = r.string()?;
            let options = SubscriptionOptions::decode(r.u8()?, version)?;
            subscriptions.push(Subscription {
                topic_filter,
                options,
            });
        }
        // "A SUBSCRIBE packet with no Payload is a Protocol Error"
        // (MQTT 5 §3.8.3, [MQTT-3.8.3-2]).
        if subscriptions.is_empty() {
            return Err(DecodeError::NoTopicFilters);
        }
        Ok(Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.subscriptions.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        let properties_len = match version {
            ProtocolVersion::V311 => 0,
            ProtocolVersion::V5 => self.properties.encoded_len(PropertyOwner::Subscribe)?,
        };
        let filters_len = self.subscriptions.iter().fold(0usize, |len, s| {
            len.saturating_add(str_len(&s.topic_filter) + 1)
        });
        Ok((2 + properties_len).saturating_add(filters_len))
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version == ProtocolVersion::V5 {
            self.properties.write(out);
        }
        for s in &self.subscriptions {
            put_str(out, &s.topic_filter);
            out.put_u8(s.options.encode(version));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{Packet, ReasonCode};
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn v311_subscribe_two_filters() {
        // mosquitto_sub -V mqttv311 -t a/b -t c/# -q 1 (packet id 1)
        #[rustfmt::skip]
        let wire = [
            0x82, 0x0E,                         // SUBSCRIBE (flags 0b0010), Remaining Length 14
            0x00, 0x01,                         // Packet Identifier 1
            0x00, 0x03, b'a', b'/', b'b', 0x01, // "a/b" QoS 1
            0x00, 0x03, b'c', b'/', b'#', 0x01, // "c/#" QoS 1
        ];
        let sub = Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            subscriptions: vec![
                Subscription {
                    topic_filter: s("a/b"),
                    options: SubscriptionOptions::new(QoS::AtLeastOnce),
                },
                Subscription {
                    topic_filter: s("c/#"),
                    options: SubscriptionOptions::new(QoS::AtLeastOnce),
                },
            ],
        };
        assert_eq!(decode_one(&wire, V311), Packet::Subscribe(sub.clone()));
        assert_eq!(encode_to_vec(&Packet::Subscribe(sub), V311), wire);
    }

    #[test]
    fn v5_subscribe_with_options_and_identifier() {
        #[rustfmt::skip]
        let wire = [
            0x82, 0x0B,                   // SUBSCRIBE, Remaining Length 11
            0x00, 0x0A,                   // Packet Identifier 10
            0x02, 0x0B, 0x05,             // Property Length 2: Subscription Identifier 5
            0x00, 0x03, b's', b'/', b'+', // Topic Filter "s/+"
            0x2E,                         // QoS 2, No Local, Retain As Published, Retain Handling 2
        ];
        let sub = Subscribe {
            packet_id: pid(10),
            properties: Properties {
                subscription_identifiers: vec![5],
                ..Properties::default()
            },
            subscriptions: vec![Subscription {
                topic_filter: s("s/+"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            }],
        };
        assert_eq!(decode_one(&wire, V5), Packet::Subscribe(sub.clone()));
        assert_eq!(encode_to_vec(&Packet::Subscribe(sub.clone()), V5), wire);
        // 3.1.1 keeps only the QoS.
        let mut v311 = sub;
        v311.properties = Properties::default();
        v311.subscriptions[0].options = SubscriptionOptions::new(QoS::ExactlyOnce);
        let packet = Packet::Subscribe(v311);
        assert_eq!(roundtrip(&packet, V311), packet);
    }

    #[test]
    fn no_filters_is_protocol_error() {
        for v in [V311, V5] {
            let wire: &[u8] = if v == V5 {
                &[0x82, 0x03, 0x00, 0x01, 0x00]
            } else {
                &[0x82, 0x02, 0x00, 0x01]
            };
            let err = decode_err(wire, v);
            assert_eq!(err, DecodeError::NoTopicFilters);
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
        let empty = Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            subscriptions: vec![],
        };
        assert_eq!(empty.body_len(V5), Err(EncodeError::NoTopicFilters));
    }

    #[test]
    fn reserved_option_bits_are_malformed() {
        // Bit 2 (No Local) does not exist in 3.1.1.
        let err = decode_err(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04], V311);
        assert_eq!(err, DecodeError::InvalidSubscriptionOptions);
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        // Bits 7–6 are reserved in MQTT 5.
        let err = decode_err(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40], V5);
        assert_eq!(err, DecodeError::InvalidSubscriptionOptions);
    }

    #[test]
    fn qos3_and_retain_handling3_are_protocol_errors() {
        let err = decode_err(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x03], V5);
        assert_eq!(err, DecodeError::InvalidSubscriptionQoS);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        let err = decode_err(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30], V5);
        assert_eq!(err, DecodeError::InvalidRetainHandling);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    #[test]
    fn wrong_fixed_header_flags_are_malformed() {
        let err = decode_err(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], V311);
        assert!(matches!(err, DecodeError::InvalidHeaderFlags { .. }));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    #[test]
    fn zero_packet_id_and_truncated_filter() {
        assert_eq!(
            decode_err(&[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], V311),
            DecodeError::ZeroPacketId
        );
        // Filter without its options byte.
        assert_eq!(
            decode_err(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], V311),
            DecodeError::UnexpectedEndOfPacket
        );
    }

    #[test]
    fn two_subscription_identifiers_are_protocol_error() {
        #[rustfmt::skip]
        let wire = [
            0x82, 0x0B,
            0x00, 0x01,
            0x04, 0x0B, 0x01, 0x0B, 0x02, // two Subscription Identifiers
            0x00, 0x01, b'a', 0x00,
        ];
        let err = decode_err(&wire, V5);
        assert_eq!(
            err,
            DecodeError::DuplicateProperty(super::super::PropertyId::SubscriptionIdentifier)
        );
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }
}
