//! Helpers shared by the packet modules' unit tests.

use bytes::BytesMut;

use super::{DecodeError, MqttStr, Packet, PacketId, ProtocolVersion, decode, encode};

/// Decodes exactly one packet that fills `bytes` completely.
pub(crate) fn decode_one(bytes: &[u8], version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, usize::MAX)
        .unwrap_or_else(|e| panic!("decode failed: {e:?}"))
        .expect("complete packet");
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    packet
}

/// The error decoding `bytes` (which must hold a complete frame) gives.
pub(crate) fn decode_err(bytes: &[u8], version: ProtocolVersion) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, version, usize::MAX) {
        Err(e) => e,
        Ok(p) => panic!("expected an error, decoded {p:?}"),
    }
}

/// Encodes `packet`, panicking on error.
pub(crate) fn encode_to_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).unwrap_or_else(|e| panic!("encode failed: {e:?}"));
    out.to_vec()
}

/// Encodes then decodes `packet`.
pub(crate) fn roundtrip(packet: &Packet, version: ProtocolVersion) -> Packet {
    decode_one(&encode_to_vec(packet, version), version)
}

/// A static MQTT string.
pub(crate) const fn s(text: &'static str) -> MqttStr {
    MqttStr::from_static(text)
}

/// A packet identifier; panics on 0.
pub(crate) fn pid(id: u16) -> PacketId {
    PacketId::new(id).expect("non-zero packet id")
}
