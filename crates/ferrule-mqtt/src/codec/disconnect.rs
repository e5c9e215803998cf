//! DISCONNECT (MQTT 5 §3.14, MQTT 3.1.1 §3.14).
//!
//! MQTT 3.1.1: no variable header. MQTT 5: the optional Reason Code and
//! Properties tail (see `tail.rs`); a Remaining Length of 0 means Normal
//! disconnection (MQTT 5 §3.14.2.1).

use bytes::BytesMut;

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyOwner};
use super::reason::ReasonCode;
use super::tail;
use super::types::Reader;

/// A disconnect notification (MQTT 5 §3.14), sent by either side in MQTT 5.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Disconnect Reason Code; dropped in MQTT 3.1.1.
    pub reason_code: ReasonCode,
    /// Session Expiry Interval, Reason String, User Properties, Server
    /// Reference (MQTT 5 §3.14.2.2).
    pub properties: Properties,
}

impl Disconnect {
    /// A disconnect with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Disconnect {
            reason_code,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let (reason_code, properties) = match version {
            ProtocolVersion::V311 => (ReasonCode::NORMAL_DISCONNECTION, Properties::default()),
            ProtocolVersion::V5 => tail::decode(r, PropertyOwner::Disconnect)?,
        };
        Ok(Disconnect {
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match version {
            ProtocolVersion::V311 => Ok(0),
            ProtocolVersion::V5 => tail::encoded_len(
                self.reason_code,
                &self.properties,
                PropertyOwner::Disconnect,
            ),
        }
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        if version == ProtocolVersion::V5 {
            tail::write(self.reason_code, &self.properties, out);
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
    fn normal_disconnect_is_two_bytes_in_both_versions() {
        for v in [V311, V5] {
            assert_eq!(
                decode_one(&[0xE0, 0x00], v),
                Packet::Disconnect(Disconnect::default())
            );
            assert_eq!(
                encode_to_vec(&Packet::Disconnect(Disconnect::default()), v),
                [0xE0, 0x00]
            );
        }
    }

    #[test]
    fn v5_reason_code_forms() {
        // Reason Code only: Remaining Length 1 (MQTT 5 §3.14.2.2.1).
        let d = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
        assert_eq!(
            decode_one(&[0xE0, 0x01, 0x8E], V5),
            Packet::Disconnect(d.clone())
        );
        assert_eq!(
            encode_to_vec(&Packet::Disconnect(d.clone()), V5),
            [0xE0, 0x01, 0x8E]
        );
        // With an explicit empty Property Length.
        assert_eq!(
            decode_one(&[0xE0, 0x02, 0x8E, 0x00], V5),
            Packet::Disconnect(d.clone())
        );
        // MQTT 3.1.1 drops the reason code.
        assert_eq!(encode_to_vec(&Packet::Disconnect(d), V311), [0xE0, 0x00]);
        assert_eq!(
            decode_err(&[0xE0, 0x01, 0x8E], V311),
            DecodeError::TrailingBytes(1)
        );
    }

    #[test]
    fn v5_disconnect_with_properties() {
        #[rustfmt::skip]
        let wire = [
            0xE0, 0x0D,
            0x9C,                                     // Use another server
            0x0B,                                     // Property Length 11
            0x11, 0x00, 0x00, 0x00, 0x00,             // Session Expiry Interval 0
            0x1C, 0x00, 0x03, b'h', b':', b'1',       // Server Reference "h:1"
        ];
        let d = Disconnect {
            reason_code: ReasonCode::USE_ANOTHER_SERVER,
            properties: Properties {
                session_expiry_interval: Some(0),
                server_reference: Some(s("h:1")),
                ..Properties::default()
            },
        };
        assert_eq!(decode_one(&wire, V5), Packet::Disconnect(d.clone()));
        assert_eq!(encode_to_vec(&Packet::Disconnect(d), V5), wire);
        // Fixed header flags must be 0.
        assert!(matches!(
            decode_err(&[0xE1, 0x00], V5),
            DecodeError::InvalidHeaderFlags { .. }
        ));
    }
}
