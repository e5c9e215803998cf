//! CONNECT (MQTT 5 §3.1, MQTT 3.1.1 §3.1).
//!
//! Variable header: Protocol Name "MQTT", Protocol Level, Connect Flags,
//! Keep Alive, Properties (MQTT 5). Payload, in this order: Client
//! Identifier, Will Properties (MQTT 5), Will Topic, Will Payload, User
//! Name, Password — each optional part present as its flag says.
//!
//! CONNECT is self-describing: it is decoded by its own Protocol Level, not
//! by the connection's version, which is unknown until it arrives.

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyOwner};
use super::topic::validate_topic_name_bytes;
use super::types::{MqttStr, QoS, Reader, binary_len, put_binary, put_str, str_len};

/// Connect Flags bits (MQTT 5 §3.1.2.3, Figure 3-4).
const RESERVED: u8 = 0b0000_0001;
const CLEAN_START: u8 = 0b0000_0010;
const WILL_FLAG: u8 = 0b0000_0100;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_QOS_MASK: u8 = 0b0001_1000;
const WILL_RETAIN: u8 = 0b0010_0000;
const PASSWORD: u8 = 0b0100_0000;
const USER_NAME: u8 = 0b1000_0000;

/// The protocol name of MQTT 3.1.1 and 5 (MQTT 5 §3.1.2.1).
const PROTOCOL_NAME: &[u8] = b"MQTT";
/// The protocol name of MQTT 3.1 (level 3), which we do not speak.
const PROTOCOL_NAME_V31: &[u8] = b"MQIsdp";

/// A connection request (MQTT 5 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol the client speaks, from the Protocol Level. Encoding
    /// uses this, not the version passed to [`encode`](super::encode).
    pub protocol_version: ProtocolVersion,
    /// Clean Start (MQTT 5 §3.1.2.4); "Clean Session" in 3.1.1 §3.1.2.4.
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 disables it (MQTT 5 §3.1.2.10).
    pub keep_alive: u16,
    /// CONNECT properties (MQTT 5 §3.1.2.11).
    pub properties: Properties,
    /// Client Identifier (MQTT 5 §3.1.3.1). May be empty; whether that is
    /// acceptable (3.1.1 requires Clean Session then) is for the server to
    /// decide and answer with CONNACK 0x85 / return code 2.
    pub client_id: MqttStr,
    /// The Will Message, if the Will Flag is set (MQTT 5 §3.1.2.5).
    pub will: Option<Will>,
    /// User Name (MQTT 5 §3.1.3.5).
    pub username: Option<MqttStr>,
    /// Password (MQTT 5 §3.1.3.6). MQTT 3.1.1 forbids a password without a
    /// user name [MQTT-3.1.2-22]; MQTT 5 allows it.
    pub password: Option<Bytes>,
}

/// A Will Message: published by the server if the connection ends without
/// a normal DISCONNECT (MQTT 5 §3.1.2.5, §3.1.3.2–§3.1.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will Topic: a Topic Name, so non-empty and without wildcards.
    pub topic: MqttStr,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will Properties (MQTT 5 §3.1.3.2).
    pub properties: Properties,
}

impl Connect {
    /// A clean-start CONNECT for `version` with no will or credentials.
    pub fn new(version: ProtocolVersion, client_id: MqttStr, keep_alive: u16) -> Self {
        Connect {
            protocol_version: version,
            clean_start: true,
            keep_alive,
            properties: Properties::default(),
            client_id,
            will: None,
            username: None,
            password: None,
        }
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let version = read_protocol(r)?;
        let v5 = version == ProtocolVersion::V5;
        let flags = r.u8()?;
        // "The Server MUST validate that the reserved flag in the CONNECT
        // packet is set to 0" [MQTT-3.1.2-3].
        if flags & RESERVED != 0 {
            return Err(DecodeError::InvalidConnectFlags("reserved flag is set"));
        }
        let will_flag = flags & WILL_FLAG != 0;
        let will_qos_bits = (flags & WILL_QOS_MASK) >> WILL_QOS_SHIFT;
        let will_retain = flags & WILL_RETAIN != 0;
        if !will_flag && (will_qos_bits != 0 || will_retain) {
            // [MQTT-3.1.2-11], [MQTT-3.1.2-13]: without a Will, Will QoS
            // and Will Retain must be 0.
            return Err(DecodeError::InvalidConnectFlags(
                "will QoS or will retain set without the will flag",
            ));
        }
        // "A value of 3 (0x03) is a Malformed Packet" (MQTT 5 §3.1.2.6).
        let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidQoS)?;
        let has_password = flags & PASSWORD != 0;
        let has_username = flags & USER_NAME != 0;
        if !v5 && has_password && !has_username {
            return Err(DecodeError::InvalidConnectFlags(
                "password flag set without the user name flag",
            ));
        }
        let keep_alive = r.u16()?;
        let properties = if v5 {
            Properties::decode(r, PropertyOwner::Connect)?
        } else {
            Properties::default()
        };
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if v5 {
                Properties::decode(r, PropertyOwner::Will)?
            } else {
                Properties::default()
            };
            let topic = r.string()?;
            validate_topic_name_bytes(topic.as_bytes()).map_err(DecodeError::InvalidTopicName)?;
            let payload = r.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string()?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary()?)
        } else {
            None
        };
        Ok(Connect {
            protocol_version: version,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        let v5 = self.protocol_version == ProtocolVersion::V5;
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::PasswordWithoutUserName);
        }
        // Protocol Name, Level, Connect Flags, Keep Alive.
        let mut len = 2 + PROTOCOL_NAME.len() + 1 + 1 + 2;
        if v5 {
            len += self.properties.encoded_len(PropertyOwner::Connect)?;
        }
        len += str_len(&self.client_id);
        if let Some(will) = &self.will {
            validate_topic_name_bytes(will.topic.as_bytes())
                .map_err(EncodeError::InvalidTopicName)?;
            if v5 {
                len += will.properties.encoded_len(PropertyOwner::Will)?;
            }
            len += str_len(&will.topic) + binary_len(&will.payload)?;
        }
        if let Some(username) = &self.username {
            len += str_len(username);
        }
        if let Some(password) = &self.password {
            len += binary_len(password)?;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        let v5 = self.protocol_version == ProtocolVersion::V5;
        out.put_u16(PROTOCOL_NAME.len() as u16);
        out.put_slice(PROTOCOL_NAME);
        out.put_u8(self.protocol_version.level());
        out.put_u8(self.flags());
        out.put_u16(self.keep_alive);
        if v5 {
            self.properties.write(out);
        }
        put_str(out, &self.client_id);
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(out);
            }
            put_str(out, &will.topic);
            put_binary(out, &will.payload);
        }
        if let Some(username) = &self.username {
            put_str(out, username);
        }
        if let Some(password) = &self.password {
            put_binary(out, password);
        }
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL_FLAG | (will.qos.as_u8() << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        if self.username.is_some() {
            flags |= USER_NAME;
        }
        flags
    }
}

/// Reads Protocol Name and Protocol Level (MQTT 5 §3.1.2.1–§3.1.2.2).
fn read_protocol(r: &mut Reader) -> Result<ProtocolVersion, DecodeError> {
    let name = r.string()?;
    let level = r.u8()?;
    match (name.as_bytes(), level) {
        (PROTOCOL_NAME, 4) => Ok(ProtocolVersion::V311),
        (PROTOCOL_NAME, 5) => Ok(ProtocolVersion::V5),
        // A protocol we recognise but do not speak (e.g. MQTT 3.1): the
        // server answers CONNACK 0x84 / 3.1.1 return code 1 [MQTT-3.1.2-2].
        (PROTOCOL_NAME | PROTOCOL_NAME_V31, level) => {
            Err(DecodeError::UnsupportedProtocolVersion(level))
        }
        _ => Err(DecodeError::InvalidProtocolName),
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::super::test_util::*;
    use super::super::{DecodeError, EncodeError, Packet, ReasonCode};
    use super::*;
    use ProtocolVersion::*;

    /// What `mosquitto_pub -V mqttv311 -i mosq-client -t t -m m` sends
    /// first: clean session, keep alive 60, no credentials or will.
    #[rustfmt::skip]
    const MOSQUITTO_PUB_V311: [u8; 25] = [
        0x10, 0x17,                         // CONNECT, Remaining Length 23
        0x00, 0x04, b'M', b'Q', b'T', b'T', // Protocol Name
        0x04,                               // Protocol Level 4 (3.1.1)
        0x02,                               // Connect Flags: Clean Session
        0x00, 0x3C,                         // Keep Alive 60
        0x00, 0x0B, b'm', b'o', b's', b'q', b'-', b'c', b'l', b'i', b'e', b'n', b't',
    ];

    #[test]
    fn mosquitto_pub_v311_connect() {
        let expected = Connect::new(V311, s("mosq-client"), 60);
        // The `version` argument does not matter for CONNECT.
        for v in [V311, V5] {
            assert_eq!(
                decode_one(&MOSQUITTO_PUB_V311, v),
                Packet::Connect(Box::new(expected.clone()))
            );
        }
        assert_eq!(encode_to_vec(&expected.into(), V5), MOSQUITTO_PUB_V311);
    }

    /// An MQTT 5 CONNECT whose variable header is the MQTT 5 §3.1.2.12
    /// example (user name, password, will QoS 1, will flag, clean start;
    /// keep alive 10; Session Expiry Interval 10), with a payload assembled
    /// field by field after §3.1.3.
    fn v5_with_will_bytes() -> Vec<u8> {
        #[rustfmt::skip]
        let mut body: Vec<u8> = vec![
            0x00, 0x04, b'M', b'Q', b'T', b'T', // Protocol Name
            0x05,                               // Protocol Level 5
            0xCE,                               // user name, password, will QoS 1, will flag, clean start
            0x00, 0x0A,                         // Keep Alive 10
            0x05,                               // Property Length 5
            0x11, 0x00, 0x00, 0x00, 0x0A,       // Session Expiry Interval 10
            0x00, 0x03, b'c', b'i', b'd',       // Client Identifier "cid"
            0x07,                               // Will Property Length 7
            0x18, 0x00, 0x00, 0x00, 0x1E,       //   Will Delay Interval 30
            0x01, 0x01,                         //   Payload Format Indicator: UTF-8
            0x00, 0x07, b'c', b'i', b'd', b'/', b'l', b'w', b't', // Will Topic "cid/lwt"
            0x00, 0x04, b'g', b'o', b'n', b'e', // Will Payload "gone"
            0x00, 0x04, b'u', b's', b'e', b'r', // User Name "user"
            0x00, 0x02, 0xBE, 0xEF,             // Password (binary)
        ];
        let mut wire = vec![0x10, body.len() as u8];
        wire.append(&mut body);
        wire
    }

    fn v5_with_will() -> Connect {
        Connect {
            protocol_version: V5,
            clean_start: true,
            keep_alive: 10,
            properties: Properties {
                session_expiry_interval: Some(10),
                ..Properties::default()
            },
            client_id: s("cid"),
            will: Some(Will {
                topic: s("cid/lwt"),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties {
                    will_delay_interval: Some(30),
                    payload_format_indicator: Some(true),
                    ..Properties::default()
                },
            }),
            username: Some(s("user")),
            password: Some(Bytes::from_static(&[0xBE, 0xEF])),
        }
    }

    #[test]
    fn v5_connect_with_will() {
        let wire = v5_with_will_bytes();
        assert_eq!(wire.len(), 2 + 54);
        let expected = Packet::Connect(Box::new(v5_with_will()));
        assert_eq!(decode_one(&wire, V311), expected);
        // Properties are written in identifier order, so re-encoding puts
        // the Payload Format Indicator (0x01) before Will Delay (0x18).
        let reencoded = encode_to_vec(&expected, V311);
        assert_eq!(decode_one(&reencoded, V5), expected);
        assert_eq!(reencoded.len(), wire.len());
    }

    #[test]
    fn v311_connect_roundtrip_drops_properties() {
        let mut c = v5_with_will();
        c.protocol_version = V311;
        let decoded = roundtrip(&c.clone().into(), V5);
        c.properties = Properties::default();
        if let Some(w) = &mut c.will {
            w.properties = Properties::default();
        }
        assert_eq!(decoded, c.into());
    }

    #[test]
    fn unsupported_protocol_levels() {
        // MQTT 3.1: "MQIsdp", level 3.
        #[rustfmt::skip]
        let v31 = [
            0x10, 0x0E,
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03,
            0x02, 0x00, 0x3C, 0x00, 0x00,
        ];
        let err = decode_err(&v31, V311);
        assert_eq!(err, DecodeError::UnsupportedProtocolVersion(3));
        assert!(err.is_unsupported_protocol());
        assert_eq!(err.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        // "MQTT" level 6: the error is reported whatever follows the level.
        let err = decode_err(&[0x10, 0x07, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06], V5);
        assert_eq!(err, DecodeError::UnsupportedProtocolVersion(6));
        let err = decode_err(&[0x10, 0x07, 0x00, 0x04, b'H', b'T', b'T', b'P', 0x04], V5);
        assert_eq!(err, DecodeError::InvalidProtocolName);
        assert_eq!(err.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        assert!(!DecodeError::InvalidUtf8.is_unsupported_protocol());
    }

    /// A 3.1.1 CONNECT with the given flags byte and payload.
    fn v311_with_flags(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x3C];
        body.extend_from_slice(payload);
        let mut wire = vec![0x10, body.len() as u8];
        wire.extend(body);
        wire
    }

    #[test]
    fn connect_flag_rules() {
        let client_id = [0x00, 0x01, b'c'];
        // Reserved bit set [MQTT-3.1.2-3].
        let err = decode_err(&v311_with_flags(0x03, &client_id), V311);
        assert!(matches!(err, DecodeError::InvalidConnectFlags(_)));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        // Will QoS without Will Flag [MQTT-3.1.2-11].
        assert!(matches!(
            decode_err(&v311_with_flags(0x0A, &client_id), V311),
            DecodeError::InvalidConnectFlags(_)
        ));
        // Will Retain without Will Flag [MQTT-3.1.2-13].
        assert!(matches!(
            decode_err(&v311_with_flags(0x22, &client_id), V311),
            DecodeError::InvalidConnectFlags(_)
        ));
        // Will QoS 3.
        assert_eq!(
            decode_err(&v311_with_flags(0x1E, &client_id), V311),
            DecodeError::InvalidQoS
        );
        // Password without user name: malformed in 3.1.1 [MQTT-3.1.2-22] ...
        let mut payload = client_id.to_vec();
        payload.extend([0x00, 0x02, b'p', b'w']);
        assert!(matches!(
            decode_err(&v311_with_flags(0x42, &payload), V311),
            DecodeError::InvalidConnectFlags(_)
        ));
        // ... but allowed in MQTT 5 (§3.1.2.9).
        let mut c = Connect::new(V5, s("c"), 60);
        c.password = Some(Bytes::from_static(b"pw"));
        assert_eq!(roundtrip(&c.clone().into(), V5), c.clone().into());
        c.protocol_version = V311;
        assert_eq!(c.body_len(), Err(EncodeError::PasswordWithoutUserName));
    }

    #[test]
    fn will_topic_must_be_a_topic_name() {
        // Will flag, QoS 0; Will Topic "a/#".
        let payload = [0x00, 0x01, b'c', 0x00, 0x03, b'a', b'/', b'#', 0x00, 0x00];
        assert!(matches!(
            decode_err(&v311_with_flags(0x06, &payload), V311),
            DecodeError::InvalidTopicName(_)
        ));
        let payload = [0x00, 0x01, b'c', 0x00, 0x01, b'w', 0x00, 0x00];
        let Packet::Connect(c) = decode_one(&v311_with_flags(0x36, &payload), V311) else {
            panic!()
        };
        let will = c.will.expect("will");
        assert_eq!(
            (will.qos, will.retain, will.topic),
            (QoS::ExactlyOnce, true, s("w"))
        );
    }

    #[test]
    fn connect_properties_are_checked() {
        // Topic Alias (0x23) is a PUBLISH property.
        #[rustfmt::skip]
        let wire = [
            0x10, 0x10,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C,
            0x03, 0x23, 0x00, 0x01,
            0x00, 0x00,
        ];
        assert!(matches!(
            decode_err(&wire, V311),
            DecodeError::PropertyNotAllowed {
                packet: "CONNECT",
                ..
            }
        ));
        // Receive Maximum 0 is a Protocol Error (MQTT 5 §3.1.2.11.3).
        #[rustfmt::skip]
        let wire = [
            0x10, 0x10,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C,
            0x03, 0x21, 0x00, 0x00,
            0x00, 0x00,
        ];
        assert_eq!(
            decode_err(&wire, V5).reason_code(),
            ReasonCode::PROTOCOL_ERROR
        );
        let mut c = Connect::new(V5, s(""), 0);
        c.properties.receive_maximum = NonZeroU16::new(20);
        c.properties.request_problem_information = Some(false);
        c.properties.authentication_method = Some(s("SCRAM-SHA-1"));
        c.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
        assert_eq!(roundtrip(&c.clone().into(), V311), c.into());
    }

    #[test]
    fn truncated_connect_is_malformed() {
        let mut wire = MOSQUITTO_PUB_V311.to_vec();
        wire.pop();
        wire[1] -= 1;
        assert_eq!(decode_err(&wire, V311), DecodeError::UnexpectedEndOfPacket);
    }
}
