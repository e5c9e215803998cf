//! AUTH (MQTT 5 §3.15): extended authentication exchange, MQTT 5 only.
//!
//! Same shape as DISCONNECT: the optional Reason Code and Properties tail
//! (see `tail.rs`); Remaining Length 0 means Success (MQTT 5 §3.15.2.1).

use bytes::BytesMut;

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::frame::PacketType;
use super::properties::{Properties, PropertyOwner};
use super::reason::ReasonCode;
use super::tail;
use super::types::Reader;

/// An authentication exchange step (MQTT 5 §3.15).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// 0x00 Success, 0x18 Continue authentication or 0x19 Re-authenticate.
    pub reason_code: ReasonCode,
    /// Authentication Method and Data, Reason String, User Properties.
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let (reason_code, properties) = tail::decode(r, PropertyOwner::Auth)?;
        Ok(Auth {
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if version == ProtocolVersion::V311 {
            return Err(EncodeError::NotInVersion {
                packet_type: PacketType::Auth,
                version,
            });
        }
        tail::encoded_len(self.reason_code, &self.properties, PropertyOwner::Auth)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        tail::write(self.reason_code, &self.properties, out);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::Packet;
    use super::super::test_util::*;
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn continue_authentication() {
        #[rustfmt::skip]
        let wire = [
            0xF0, 0x10,
            0x18,                                           // Continue authentication
            0x0E,                                           // Property Length 14
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // Authentication Method "SCRAM"
            0x16, 0x00, 0x03, 0x01, 0x02, 0x03,             // Authentication Data
        ];
        let a = Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
                ..Properties::default()
            },
        };
        assert_eq!(decode_one(&wire, V5), Packet::Auth(a.clone()));
        assert_eq!(encode_to_vec(&Packet::Auth(a), V5), wire);
    }

    #[test]
    fn short_forms() {
        assert_eq!(decode_one(&[0xF0, 0x00], V5), Packet::Auth(Auth::default()));
        assert_eq!(
            encode_to_vec(&Packet::Auth(Auth::default()), V5),
            [0xF0, 0x00]
        );
        let Packet::Auth(a) = decode_one(&[0xF0, 0x01, 0x19], V5) else {
            panic!()
        };
        assert_eq!(a.reason_code, ReasonCode::RE_AUTHENTICATE);
    }

    #[test]
    fn auth_is_not_mqtt_311() {
        assert_eq!(
            decode_err(&[0xF0, 0x00], V311),
            DecodeError::ReservedPacketType(15)
        );
        assert!(matches!(
            Auth::default().body_len(V311),
            Err(EncodeError::NotInVersion { .. })
        ));
    }

    #[test]
    fn auth_data_without_method_is_protocol_error() {
        let err = decode_err(&[0xF0, 0x07, 0x18, 0x05, 0x16, 0x00, 0x02, 0x01, 0x02], V5);
        assert_eq!(err, DecodeError::AuthDataWithoutMethod);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }
}
