//! The MQTT wire codec: MQTT 3.1.1 (protocol level 4) and MQTT 5.0
//! (protocol level 5), all fifteen control packets, both directions.
//!
//! [`decode`] takes one packet off the front of a receive buffer; [`encode`]
//! appends one to a send buffer. The server decodes client→server packets
//! and encodes server→client ones; clients and load generators do the
//! opposite, so every packet goes both ways.
//!
//! # Decoding
//! Decoding is two-pass. The framer first reads only the fixed header
//! and answers "incomplete" (`Ok(None)`, nothing consumed), "too large", or
//! "complete". Only a complete frame is split off the buffer and parsed.
//! Decoding never panics, and never allocates ahead of bytes that have
//! arrived: strings, binary data and PUBLISH payloads are [`Bytes`](bytes::Bytes) slices
//! of the frame, so a QoS 0 PUBLISH without properties decodes without a
//! heap allocation of its own.
//!
//! The decoder enforces the spec's rules for a well-formed packet (flags,
//! lengths, UTF-8, property placement, packet identifiers, …); session
//! rules (topic alias ranges, receive maximum, first packet is CONNECT, …)
//! belong to the session. A [`DecodeError`] tells the server which Reason
//! Code to close the connection with.
//!
//! # Encoding
//! Encoding validates first and writes only if the whole packet is valid,
//! so it checks the same rules the decoder does: a packet that encodes
//! decodes back to an equal packet. When encoding for MQTT 3.1.1 the
//! MQTT 5-only parts are dropped: properties, reason codes of acks and
//! DISCONNECT, and the MQTT 5 subscription options; CONNACK and SUBACK
//! reason codes map to 3.1.1 return codes. A CONNECT is always encoded in
//! its own [`Connect::protocol_version`].

use bytes::{BufMut, BytesMut};

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod error;
mod frame;
mod properties;
mod publish;
mod reason;
mod suback;
mod subscribe;
mod tail;
pub mod topic;
mod types;
mod unsuback;
mod unsubscribe;

pub use ack::Ack;
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use error::{DecodeError, EncodeError};
pub use frame::PacketType;
pub use properties::{Properties, PropertyId};
pub use publish::Publish;
pub use reason::ReasonCode;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, Subscription, SubscriptionOptions};
pub use types::{MqttStr, PacketId, QoS, StrError, VARINT_MAX};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

use properties::PropertyOwner;
use types::{Reader, put_varint, varint_len};

/// The MQTT protocol version a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

impl ProtocolVersion {
    /// The Protocol Level byte of the CONNECT (MQTT 5 §3.1.2.2).
    pub const fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// An MQTT Control Packet (MQTT 5 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (MQTT 5 §3.1). Boxed: with two property sets it is by far the
    /// largest packet, and it is sent once per connection.
    Connect(Box<Connect>),
    /// CONNACK (MQTT 5 §3.2).
    ConnAck(ConnAck),
    /// PUBLISH (MQTT 5 §3.3).
    Publish(Publish),
    /// PUBACK (MQTT 5 §3.4).
    PubAck(Ack),
    /// PUBREC (MQTT 5 §3.5).
    PubRec(Ack),
    /// PUBREL (MQTT 5 §3.6).
    PubRel(Ack),
    /// PUBCOMP (MQTT 5 §3.7).
    PubComp(Ack),
    /// SUBSCRIBE (MQTT 5 §3.8).
    Subscribe(Subscribe),
    /// SUBACK (MQTT 5 §3.9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (MQTT 5 §3.10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (MQTT 5 §3.11).
    UnsubAck(UnsubAck),
    /// PINGREQ (MQTT 5 §3.12).
    PingReq,
    /// PINGRESP (MQTT 5 §3.13).
    PingResp,
    /// DISCONNECT (MQTT 5 §3.14).
    Disconnect(Disconnect),
    /// AUTH (MQTT 5 §3.15); MQTT 5 only.
    Auth(Auth),
}

impl Packet {
    /// The control packet type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// The version the packet is encoded in: a CONNECT names its own.
    fn wire_version(&self, version: ProtocolVersion) -> ProtocolVersion {
        match self {
            Packet::Connect(c) => c.protocol_version,
            _ => version,
        }
    }

    /// Validates the packet for `version` and returns its Remaining Length.
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            Packet::Connect(p) => p.body_len(),
            Packet::ConnAck(p) => p.body_len(version),
            Packet::Publish(p) => p.body_len(version),
            Packet::PubAck(p) => p.body_len(version, PropertyOwner::PubAck),
            Packet::PubRec(p) => p.body_len(version, PropertyOwner::PubRec),
            Packet::PubRel(p) => p.body_len(version, PropertyOwner::PubRel),
            Packet::PubComp(p) => p.body_len(version, PropertyOwner::PubComp),
            Packet::Subscribe(p) => p.body_len(version),
            Packet::SubAck(p) => p.body_len(version),
            Packet::Unsubscribe(p) => p.body_len(version),
            Packet::UnsubAck(p) => p.body_len(version),
            Packet::PingReq | Packet::PingResp => Ok(0),
            Packet::Disconnect(p) => p.body_len(version),
            Packet::Auth(p) => p.body_len(version),
        }
    }

    /// Writes the variable header and payload; only after `body_len` passed.
    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        match self {
            Packet::Connect(p) => p.write_body(out),
            Packet::ConnAck(p) => p.write_body(version, out),
            Packet::Publish(p) => p.write_body(version, out),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.write_body(version, out)
            }
            Packet::Subscribe(p) => p.write_body(version, out),
            Packet::SubAck(p) => p.write_body(version, out),
            Packet::Unsubscribe(p) => p.write_body(version, out),
            Packet::UnsubAck(p) => p.write_body(version, out),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.write_body(version, out),
            Packet::Auth(p) => p.write_body(out),
        }
    }

    /// The low nibble of the first byte (MQTT 5 §2.1.3).
    fn header_flags(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.header_flags(),
            other => other.packet_type().required_flags().unwrap_or(0),
        }
    }
}

macro_rules! impl_from_for_packet {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Packet {
            fn from(p: $ty) -> Self {
                Packet::$variant(p)
            }
        })*
    };
}

impl_from_for_packet!(
    ConnAck(ConnAck),
    Publish(Publish),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    Disconnect(Disconnect),
    Auth(Auth),
);

impl From<Connect> for Packet {
    fn from(p: Connect) -> Self {
        Packet::Connect(Box::new(p))
    }
}

/// Decodes one packet from the front of `buf`.
///
/// * `Ok(None)`: not a whole packet yet; nothing was consumed. Read more
///   into `buf` and call again.
/// * `Ok(Some(packet))`: the packet's bytes were removed from `buf`.
/// * `Err(_)`: the stream is unusable; close the connection, sending
///   [`DecodeError::reason_code`] where the protocol allows.
///
/// `version` is the connection's protocol version. A CONNECT is decoded
/// whatever `version` says: it carries its own protocol name and level,
/// and before it arrives the server cannot know the version (any value
/// works then; [`Connect::protocol_version`] tells what the client speaks).
///
/// `max_packet_size` bounds the *total* packet size, fixed header included,
/// as MQTT 5's Maximum Packet Size does (MQTT 5 §3.1.2.11.4). It is checked
/// as soon as the fixed header is readable, before the body arrives.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = frame::parse_fixed_header(buf, version)? else {
        return Ok(None);
    };
    let size = header.frame_len();
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    // Second pass: the whole frame is here. `freeze` shares the buffer, so
    // slices of the frame are zero-copy.
    let frame = buf.split_to(size).freeze();
    let mut r = Reader::new(frame.slice(header.header_len..));
    let packet = decode_body(header, &mut r, version)?;
    r.finish()?;
    Ok(Some(packet))
}

/// The frame at the front of `buf`, from its fixed header alone: its packet
/// type, the flags of the first byte's low nibble, and its whole length in
/// bytes (`Ok(None)` while the fixed header is incomplete). Nothing else is
/// checked, so a client that only counts frames (a load generator's
/// subscriber) can skip them without decoding; [`decode`] judges the rest.
pub fn peek_frame(
    buf: &[u8],
    version: ProtocolVersion,
) -> Result<Option<(PacketType, u8, usize)>, DecodeError> {
    Ok(frame::parse_fixed_header(buf, version)?.map(|h| (h.packet_type, h.flags, h.frame_len())))
}

/// Parses a complete frame's variable header and payload.
fn decode_body(
    header: frame::FixedHeader,
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    use PropertyOwner as O;
    Ok(match header.packet_type {
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(r)?)),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(r, version)?),
        PacketType::Publish => Packet::Publish(Publish::decode(header.flags, r, version)?),
        PacketType::PubAck => Packet::PubAck(Ack::decode(r, version, O::PubAck)?),
        PacketType::PubRec => Packet::PubRec(Ack::decode(r, version, O::PubRec)?),
        PacketType::PubRel => Packet::PubRel(Ack::decode(r, version, O::PubRel)?),
        PacketType::PubComp => Packet::PubComp(Ack::decode(r, version, O::PubComp)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, version)?),
        // No variable header or payload (MQTT 5 §3.12, §3.13): `finish`
        // rejects a non-zero Remaining Length.
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(r, version)?),
        // The framer only yields AUTH for MQTT 5.
        PacketType::Auth => Packet::Auth(Auth::decode(r)?),
    })
}

/// Appends `packet`, encoded for `version`, to `out`. On error nothing is
/// written. See the [module docs](self) for the MQTT 3.1.1 down-conversion.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let version = packet.wire_version(version);
    let body_len = checked_body_len(packet, version)?;
    out.reserve(1 + varint_len(body_len) + body_len);
    out.put_u8(((packet.packet_type() as u8) << 4) | packet.header_flags());
    put_varint(out, body_len);
    let start = out.len();
    packet.write_body(version, out);
    debug_assert_eq!(out.len() - start, body_len, "{packet:?}");
    Ok(())
}

/// The number of bytes [`encode`] would write, fixed header included,
/// without encoding. Compare it with the peer's Maximum Packet Size before
/// sending (MQTT 5 §3.1.2.11.4). Fails exactly when `encode` would.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let body_len = checked_body_len(packet, packet.wire_version(version))?;
    Ok(1 + varint_len(body_len) + body_len)
}

fn checked_body_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let body_len = packet.body_len(version)?;
    if body_len > VARINT_MAX as usize {
        return Err(EncodeError::PacketTooLarge(body_len));
    }
    Ok(body_len)
}

#[cfg(test)]
pub(crate) mod test_util;

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn ping_packets() {
        // MQTT 5 §3.12.1 / §3.13.1: 0xC0 0x00 and 0xD0 0x00 in both versions.
        for v in [V311, V5] {
            assert_eq!(decode_one(&[0xC0, 0x00], v), Packet::PingReq);
            assert_eq!(decode_one(&[0xD0, 0x00], v), Packet::PingResp);
            assert_eq!(encode_to_vec(&Packet::PingReq, v), [0xC0, 0x00]);
            assert_eq!(encode_to_vec(&Packet::PingResp, v), [0xD0, 0x00]);
            assert_eq!(
                decode_err(&[0xC0, 0x01, 0x00], v),
                DecodeError::TrailingBytes(1)
            );
        }
    }

    #[test]
    fn incomplete_frame_consumes_nothing() {
        let mut buf = BytesMut::from(&[0x30, 0x05, 0x00, 0x01][..]);
        assert_eq!(decode(&mut buf, V5, 1024), Ok(None));
        assert_eq!(buf.len(), 4);
    }

    #[test]
    fn too_large_is_reported_before_the_body_arrives() {
        // PUBLISH announcing a 1,000-byte body; only the header is here.
        let mut buf = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
        let err = decode(&mut buf, V5, 512).unwrap_err();
        assert_eq!(
            err,
            DecodeError::PacketTooLarge {
                size: 1003,
                max: 512
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
        // The limit counts the whole packet, header included.
        let mut ok = BytesMut::from(&[0xC0, 0x00][..]);
        assert_eq!(decode(&mut ok, V5, 2), Ok(Some(Packet::PingReq)));
        let mut too_big = BytesMut::from(&[0xC0, 0x00][..]);
        assert!(matches!(
            decode(&mut too_big, V5, 1),
            Err(DecodeError::PacketTooLarge { size: 2, max: 1 })
        ));
    }

    #[test]
    fn leaves_following_bytes_in_the_buffer() {
        let mut buf = BytesMut::from(&[0xC0, 0x00, 0xD0][..]);
        assert_eq!(decode(&mut buf, V5, 1024), Ok(Some(Packet::PingReq)));
        assert_eq!(&buf[..], &[0xD0]);
        assert_eq!(decode(&mut buf, V5, 1024), Ok(None));
    }

    #[test]
    fn encode_error_writes_nothing() {
        let mut out = BytesMut::from(&b"prefix"[..]);
        let auth = Packet::Auth(Auth::default());
        assert_eq!(
            encode(&auth, V311, &mut out),
            Err(EncodeError::NotInVersion {
                packet_type: PacketType::Auth,
                version: V311
            })
        );
        assert_eq!(&out[..], b"prefix");
    }

    #[test]
    fn encoded_len_matches_encode() {
        let p = Packet::Publish(Publish::new(MqttStr::from_static("a/b"), vec![7u8; 300]));
        for v in [V311, V5] {
            assert_eq!(encoded_len(&p, v).unwrap(), encode_to_vec(&p, v).len());
        }
    }
}
