//! MQTT data representations (MQTT 5 §1.5, MQTT 3.1.1 §1.5): integers,
//! Variable Byte Integers, UTF-8 Encoded Strings and Binary Data, plus the
//! bounds-checked [`Reader`] every packet decoder reads its body through.

use std::fmt;
use std::num::NonZeroU16;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};

/// A Packet Identifier (MQTT 5 §2.2.1). Zero is never valid on the wire,
/// so the type rules it out.
pub type PacketId = NonZeroU16;

/// Largest value a Variable Byte Integer can hold: four bytes of seven bits
/// (MQTT 5 §1.5.5). Also the largest Remaining Length.
pub const VARINT_MAX: u32 = 268_435_455;

/// Largest length of a UTF-8 Encoded String or Binary Data: both carry a
/// Two Byte Integer length prefix (MQTT 5 §1.5.4, §1.5.6).
pub const MAX_PREFIXED_LEN: usize = u16::MAX as usize;

/// Quality of Service level (MQTT 5 §4.3): the one the whole server uses,
/// so a decoded level goes to the router as it is.
pub use ferrule_core::QoS;

/// Why a string cannot be an MQTT UTF-8 Encoded String (MQTT 5 §1.5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StrError {
    /// Longer than the 65,535 bytes a two-byte length prefix can express.
    #[error("string is {0} bytes long, more than 65535")]
    TooLong(usize),
    /// Not well-formed UTF-8 (this includes UTF-16 surrogates) [MQTT-1.5.4-1].
    #[error("string is not well-formed UTF-8")]
    InvalidUtf8,
    /// Contains U+0000, which MQTT forbids [MQTT-1.5.4-2].
    #[error("string contains the null character U+0000")]
    NullCharacter,
}

impl From<StrError> for DecodeError {
    fn from(e: StrError) -> Self {
        match e {
            // Unreachable on decode (the prefix is a u16), kept for totality.
            StrError::TooLong(_) | StrError::InvalidUtf8 => DecodeError::InvalidUtf8,
            StrError::NullCharacter => DecodeError::NullCharacter,
        }
    }
}

/// An MQTT UTF-8 Encoded String: well-formed UTF-8, no U+0000, at most
/// 65,535 bytes (MQTT 5 §1.5.4).
///
/// It is backed by [`Bytes`] so a decoded topic or property is a zero-copy
/// slice of the received frame, and cloning it (for example, fanning a topic
/// out to many subscribers) is a reference-count increment. The invariants
/// hold by construction, so encoding an `MqttStr` never fails.
///
/// Because the crate forbids `unsafe`, [`MqttStr::as_str`] re-checks UTF-8
/// (linear, but fast); prefer [`MqttStr::as_bytes`] where bytes will do,
/// e.g. when splitting a topic on `/`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MqttStr(Bytes);

impl MqttStr {
    /// Wraps a `'static` string without copying.
    ///
    /// # Panics
    /// If `s` is longer than 65,535 bytes or contains U+0000; meant for
    /// literals, where that is a programming error.
    pub const fn from_static(s: &'static str) -> Self {
        let bytes = s.as_bytes();
        assert!(
            bytes.len() <= MAX_PREFIXED_LEN,
            "MQTT string longer than 65535 bytes"
        );
        let mut i = 0;
        while i < bytes.len() {
            assert!(bytes[i] != 0, "MQTT string contains U+0000");
            i += 1;
        }
        MqttStr(Bytes::from_static(bytes))
    }

    /// Copies `s` into a new `MqttStr`, checking the MQTT rules.
    pub fn new(s: &str) -> Result<Self, StrError> {
        check_str_rules(s.as_bytes())?;
        Ok(MqttStr(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// Wraps `bytes` without copying, checking UTF-8 and the MQTT rules.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, StrError> {
        if std::str::from_utf8(&bytes).is_err() {
            return Err(StrError::InvalidUtf8);
        }
        check_str_rules(&bytes)?;
        Ok(MqttStr(bytes))
    }

    /// The string. Re-validates UTF-8 (see the type's docs for why).
    pub fn as_str(&self) -> &str {
        // Invariant: validated at construction, so the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The UTF-8 bytes, without validation cost.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying shared buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes (not characters).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The MQTT-specific rules on top of UTF-8 validity: length and U+0000.
fn check_str_rules(bytes: &[u8]) -> Result<(), StrError> {
    if bytes.len() > MAX_PREFIXED_LEN {
        return Err(StrError::TooLong(bytes.len()));
    }
    // In UTF-8 the byte 0x00 only ever encodes U+0000.
    if bytes.contains(&0) {
        return Err(StrError::NullCharacter);
    }
    Ok(())
}

impl fmt::Debug for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<[u8]> for MqttStr {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq<str> for MqttStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for MqttStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl TryFrom<&str> for MqttStr {
    type Error = StrError;
    fn try_from(s: &str) -> Result<Self, StrError> {
        MqttStr::new(s)
    }
}

impl TryFrom<String> for MqttStr {
    type Error = StrError;
    fn try_from(s: String) -> Result<Self, StrError> {
        check_str_rules(s.as_bytes())?;
        Ok(MqttStr(Bytes::from(s)))
    }
}

impl TryFrom<Bytes> for MqttStr {
    type Error = StrError;
    fn try_from(b: Bytes) -> Result<Self, StrError> {
        MqttStr::from_bytes(b)
    }
}

/// Bytes needed to encode `value` as a Variable Byte Integer (MQTT 5 §1.5.5).
pub(crate) const fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a Variable Byte Integer. Callers guarantee `value <= VARINT_MAX`
/// (checked when the packet's length is computed).
pub(crate) fn put_varint(out: &mut BytesMut, value: usize) {
    debug_assert!(value <= VARINT_MAX as usize);
    let mut value = value;
    loop {
        // Truncation intended: the low seven bits.
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// Writes a UTF-8 Encoded String: two-byte length, then the bytes.
pub(crate) fn put_str(out: &mut BytesMut, s: &MqttStr) {
    // MqttStr guarantees len <= 65535.
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// Wire length of a UTF-8 Encoded String.
pub(crate) fn str_len(s: &MqttStr) -> usize {
    2 + s.len()
}

/// Wire length of Binary Data (MQTT 5 §1.5.6), failing if the two-byte
/// prefix cannot express it.
pub(crate) fn binary_len(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > MAX_PREFIXED_LEN {
        return Err(EncodeError::BinaryTooLong(b.len()));
    }
    Ok(2 + b.len())
}

/// Writes Binary Data. Callers checked the length with [`binary_len`].
pub(crate) fn put_binary(out: &mut BytesMut, b: &[u8]) {
    debug_assert!(b.len() <= MAX_PREFIXED_LEN);
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}

/// A cursor over one packet's body. Every read is bounds-checked and a
/// short read is [`DecodeError::UnexpectedEndOfPacket`]: the body was
/// already cut to the Remaining Length, so running out means the packet's
/// own content overran its declared length (malformed, MQTT 5 §4.13).
///
/// Reads of strings and binary data return `Bytes` slices of the frame, so
/// nothing is copied and no allocation is sized from an untrusted length.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next `n` bytes as a zero-copy slice.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::UnexpectedEndOfPacket);
        }
        Ok(self.buf.split_to(n))
    }

    /// Takes everything left (e.g. a PUBLISH payload, MQTT 5 §3.3.3).
    pub(crate) fn take_rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// The next `N` bytes, copied out; avoids the reference-count traffic
    /// of slicing for fixed-size integers.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes: [u8; N] = self
            .buf
            .get(..N)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::UnexpectedEndOfPacket)?;
        self.buf.advance(N);
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let [b] = self.array()?;
        Ok(b)
    }

    /// Two Byte Integer, big-endian (MQTT 5 §1.5.2).
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Four Byte Integer, big-endian (MQTT 5 §1.5.3).
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Variable Byte Integer (MQTT 5 §1.5.5): at most four bytes.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match parse_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::UnexpectedEndOfPacket),
        }
    }

    /// A Packet Identifier; zero is a Protocol Error (MQTT 5 §2.2.1: a
    /// packet that needs one "MUST contain a non-zero 16-bit Packet
    /// Identifier" [MQTT-2.2.1-3]).
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        NonZeroU16::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// UTF-8 Encoded String (MQTT 5 §1.5.4), zero-copy.
    pub(crate) fn string(&mut self) -> Result<MqttStr, DecodeError> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        Ok(MqttStr::from_bytes(bytes)?)
    }

    /// Binary Data (MQTT 5 §1.5.6), zero-copy.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    /// Fails if anything is left: content must fill exactly the Remaining
    /// Length (MQTT 5 §2.1.4).
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }
}

/// Parses a Variable Byte Integer from the front of `buf` without consuming.
/// `Ok(None)` means more bytes are needed; a continuation bit on the fourth
/// byte is malformed (MQTT 5 §1.5.5). Non-minimal encodings (e.g. `0x80
/// 0x00` for 0) are accepted, as most brokers do; the encoder never emits
/// them.
pub(crate) fn parse_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        // i < 4, so the shift is at most 21 and the value stays below 2^28.
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::MalformedVariableByteInteger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_spec_boundaries() {
        // MQTT 5 §1.5.5, Table 1-1: the edges of each encoded size.
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for &(value, wire) in cases {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(&out[..], wire, "encode {value}");
            assert_eq!(varint_len(value), wire.len());
            assert_eq!(
                parse_varint(wire).unwrap(),
                Some((value as u32, wire.len()))
            );
            // Every strict prefix is incomplete, never an error.
            for cut in 0..wire.len() {
                assert_eq!(parse_varint(&wire[..cut]).unwrap(), None);
            }
        }
    }

    #[test]
    fn varint_fifth_byte_is_malformed() {
        assert_eq!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::MalformedVariableByteInteger)
        );
        assert_eq!(
            parse_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::MalformedVariableByteInteger)
        );
    }

    #[test]
    fn mqtt_str_rules() {
        assert_eq!(MqttStr::new("a\0b"), Err(StrError::NullCharacter));
        assert_eq!(
            MqttStr::new(&"x".repeat(65_536)),
            Err(StrError::TooLong(65_536))
        );
        assert!(MqttStr::new(&"x".repeat(65_535)).is_ok());
        // A UTF-16 surrogate encoded as UTF-8 (CESU style) is ill-formed
        // [MQTT-1.5.4-1].
        assert_eq!(
            MqttStr::from_bytes(Bytes::from_static(&[0xED, 0xA0, 0x80])),
            Err(StrError::InvalidUtf8)
        );
        let s = MqttStr::from_static("sensors/température");
        assert_eq!(s.as_str(), "sensors/température");
        assert_eq!(s, "sensors/température");
        assert_eq!(format!("{s:?}"), "\"sensors/température\"");
    }

    #[test]
    fn reader_reports_overruns() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert_eq!(r.string(), Err(DecodeError::UnexpectedEndOfPacket));
        let mut r = Reader::new(Bytes::from_static(&[0x00]));
        assert_eq!(r.u16(), Err(DecodeError::UnexpectedEndOfPacket));
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x00]));
        assert_eq!(r.packet_id(), Err(DecodeError::ZeroPacketId));
        let r = Reader::new(Bytes::from_static(&[0x01]));
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn binary_too_long_fails_to_encode() {
        assert_eq!(
            binary_len(&vec![0; 65_536]),
            Err(EncodeError::BinaryTooLong(65_536))
        );
        assert_eq!(binary_len(&[1, 2, 3]), Ok(5));
    }
}
