//! UNSUBSCRIBE (MQTT 5 §3.10, MQTT 3.1.1 §3.10).
//!
//! Fixed header flags 0b0010. Variable header: Packet Identifier,
//! Properties (MQTT 5). Payload: one or more Topic Filters.

use bytes::{BufMut, BytesMut};

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyOwner};
use super::types::{MqttStr, PacketId, Reader, put_str, str_len};

/// An unsubscribe request (MQTT 5 §3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// UNSUBSCRIBE properties: User Properties only.
    pub properties: Properties,
    /// At least one Topic Filter [MQTT-3.10.3-2].
    pub topic_filters: Vec<MqttStr>,
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = match version {
            ProtocolVersion::V311 => Properties::default(),
            ProtocolVersion::V5 => Properties::decode(r, PropertyOwner::Unsubscribe)?,
        };
        let mut topic_filters = Vec::new();
        while !r.is_empty() {
            topic_filters.push(r.string()?);
        }
        // "An UNSUBSCRIBE packet with no Payload is a Protocol Error"
        // (MQTT 5 §3.10.3).
        if topic_filters.is_empty() {
            return Err(DecodeError::NoTopicFilters);
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            topic_filters,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.topic_filters.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        let properties_len = match version {
            ProtocolVersion::V311 => 0,
            ProtocolVersion::V5 => self.properties.encoded_len(PropertyOwner::Unsubscribe)?,
        };
        let filters_len = self
            .topic_filters
            .iter()
            .fold(0usize, |len, f| len.saturating_add(str_len(f)));
        Ok((2 + properties_len).saturating_add(filters_len))
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version == ProtocolVersion::V5 {
            self.properties.write(out);
        }
        for f in &self.topic_filters {
            put_str(out, f);
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
    fn v311_unsubscribe() {
        #[rustfmt::skip]
        let wire = [
            0xA2, 0x0C,                         // UNSUBSCRIBE (flags 0b0010), Remaining Length 12
            0x00, 0x05,                         // Packet Identifier 5
            0x00, 0x03, b'a', b'/', b'b',       // "a/b"
            0x00, 0x03, b'c', b'/', b'#',       // "c/#"
        ];
        let u = Unsubscribe {
            packet_id: pid(5),
            properties: Properties::default(),
            topic_filters: vec![s("a/b"), s("c/#")],
        };
        assert_eq!(decode_one(&wire, V311), Packet::Unsubscribe(u.clone()));
        assert_eq!(encode_to_vec(&Packet::Unsubscribe(u), V311), wire);
    }

    #[test]
    fn v5_unsubscribe_with_user_property() {
        let u = Unsubscribe {
            packet_id: pid(5),
            properties: Properties {
                user_properties: vec![(s("why"), s("done"))],
                ..Properties::default()
            },
            topic_filters: vec![s("x")],
        };
        let p = Packet::Unsubscribe(u);
        assert_eq!(roundtrip(&p, V5), p);
        // Flags must be 0b0010 [MQTT-3.10.1-1].
        assert!(matches!(
            decode_err(&[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], V311),
            DecodeError::InvalidHeaderFlags { .. }
        ));
    }

    #[test]
    fn no_filters_is_protocol_error() {
        let err = decode_err(&[0xA2, 0x03, 0x00, 0x01, 0x00], V5);
        assert_eq!(err, DecodeError::NoTopicFilters);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        assert_eq!(
            decode_err(&[0xA2, 0x02, 0x00, 0x01], V311),
            DecodeError::NoTopicFilters
        );
    }
}
