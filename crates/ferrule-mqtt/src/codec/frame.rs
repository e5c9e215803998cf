//! The fixed header (MQTT 5 §2.1): packet type, flags and Remaining Length.
//!
//! Framing is the first of the decoder's two passes. It looks at the start
//! of the receive buffer without consuming or allocating, and says either
//! "incomplete", "invalid" or "a frame of N bytes". Only a complete frame is
//! handed to the packet parsers, so no parser ever waits for bytes, and no
//! allocation is sized by a length the peer merely claims.

use super::ProtocolVersion;
use super::error::DecodeError;
use super::types::parse_varint;

/// MQTT Control Packet types (MQTT 5 §2.1.2, Table 2-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect to Server.
    Connect = 1,
    /// Connect acknowledgment.
    ConnAck = 2,
    /// Publish message.
    Publish = 3,
    /// Publish acknowledgment (QoS 1).
    PubAck = 4,
    /// Publish received (QoS 2 delivery part 1).
    PubRec = 5,
    /// Publish release (QoS 2 delivery part 2).
    PubRel = 6,
    /// Publish complete (QoS 2 delivery part 3).
    PubComp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgment.
    SubAck = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgment.
    UnsubAck = 11,
    /// PING request.
    PingReq = 12,
    /// PING response.
    PingResp = 13,
    /// Disconnect notification.
    Disconnect = 14,
    /// Authentication exchange (MQTT 5 only).
    Auth = 15,
}

impl PacketType {
    /// The packet type in the high nibble of the first byte, if defined in
    /// `version` (0 is reserved; 15 is reserved in MQTT 3.1.1 §2.2.1).
    fn from_nibble(nibble: u8, version: ProtocolVersion) -> Option<Self> {
        use PacketType::*;
        Some(match nibble {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 if version == ProtocolVersion::V5 => Auth,
            _ => return None,
        })
    }

    /// The fixed flags MQTT 5 §2.1.3 Table 2-2 requires, or `None` for
    /// PUBLISH, whose flags carry DUP, QoS and RETAIN. PUBREL, SUBSCRIBE and
    /// UNSUBSCRIBE use 0b0010 (a remnant of MQTT 3.1's QoS 1 marking).
    pub(crate) const fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// The packet's name as the spec writes it, for error messages.
    pub const fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            PingReq => "PINGREQ",
            PingResp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub(crate) packet_type: PacketType,
    /// The low nibble of the first byte.
    pub(crate) flags: u8,
    /// Bytes taken by the fixed header itself: 1 + the varint's length.
    pub(crate) header_len: usize,
    /// The Remaining Length: bytes of variable header and payload.
    pub(crate) remaining_len: usize,
}

impl FixedHeader {
    /// Total bytes of the frame, header included. At most 5 + 268,435,455,
    /// so it cannot overflow.
    pub(crate) fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Parses the fixed header at the start of `buf` without consuming it.
///
/// Returns `Ok(None)` while the header is incomplete. The first byte is
/// checked as soon as it is present, so garbage is rejected without waiting
/// for more input.
pub(crate) fn parse_fixed_header(
    buf: &[u8],
    version: ProtocolVersion,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let nibble = first >> 4;
    let flags = first & 0x0F;
    let packet_type =
        PacketType::from_nibble(nibble, version).ok_or(DecodeError::ReservedPacketType(nibble))?;
    if let Some(required) = packet_type.required_flags() {
        // "If invalid flags are received it is a Malformed Packet" (MQTT 5 §2.1.3).
        if flags != required {
            return Err(DecodeError::InvalidHeaderFlags { packet_type, flags });
        }
    }
    let Some((remaining_len, varint_len)) = parse_varint(rest)? else {
        return Ok(None);
    };
    Ok(Some(FixedHeader {
        packet_type,
        flags,
        header_len: 1 + varint_len,
        // u32 always fits in usize on the platforms we target (>= 32 bit).
        remaining_len: remaining_len as usize,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn parses_header_without_body() {
        // PUBLISH QoS 1 retain, remaining length 321 = 0xC1 0x02.
        let h = parse_fixed_header(&[0x33, 0xC1, 0x02], V5)
            .unwrap()
            .unwrap();
        assert_eq!(h.packet_type, PacketType::Publish);
        assert_eq!(h.flags, 0b0011);
        assert_eq!(h.header_len, 3);
        assert_eq!(h.remaining_len, 321);
        assert_eq!(h.frame_len(), 324);
    }

    #[test]
    fn incomplete_header_is_none() {
        assert_eq!(parse_fixed_header(&[], V5), Ok(None));
        assert_eq!(parse_fixed_header(&[0x30], V5), Ok(None));
        assert_eq!(parse_fixed_header(&[0x30, 0x80, 0x80], V5), Ok(None));
    }

    #[test]
    fn reserved_types_are_malformed() {
        assert_eq!(
            parse_fixed_header(&[0x00, 0x00], V5),
            Err(DecodeError::ReservedPacketType(0))
        );
        // AUTH (15) only exists in MQTT 5.
        assert_eq!(
            parse_fixed_header(&[0xF0, 0x00], V311),
            Err(DecodeError::ReservedPacketType(15))
        );
        assert!(parse_fixed_header(&[0xF0, 0x00], V5).unwrap().is_some());
    }

    #[test]
    fn fixed_flags_are_enforced_from_the_first_byte() {
        // SUBSCRIBE must carry 0b0010 [MQTT-3.8.1-1]; rejected before the
        // remaining length has even arrived.
        assert_eq!(
            parse_fixed_header(&[0x80], V311),
            Err(DecodeError::InvalidHeaderFlags {
                packet_type: PacketType::Subscribe,
                flags: 0
            })
        );
        assert_eq!(
            parse_fixed_header(&[0xC1, 0x00], V5),
            Err(DecodeError::InvalidHeaderFlags {
                packet_type: PacketType::PingReq,
                flags: 1
            })
        );
        assert!(parse_fixed_header(&[0x62, 0x02], V5).unwrap().is_some());
        assert!(matches!(
            parse_fixed_header(&[0x60, 0x02], V5),
            Err(DecodeError::InvalidHeaderFlags { .. })
        ));
    }

    #[test]
    fn five_byte_remaining_length_is_malformed() {
        assert_eq!(
            parse_fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], V5),
            Err(DecodeError::MalformedVariableByteInteger)
        );
    }
}
