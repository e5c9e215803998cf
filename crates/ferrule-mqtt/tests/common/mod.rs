//! The decode → encode → decode check shared by the property tests, the
//! fuzz regression test and the fuzz target itself
//! (`fuzz/fuzz_targets/decode_packet.rs` includes this file).

use bytes::BytesMut;
use ferrule_mqtt::codec::{ProtocolVersion, decode, encode, encoded_len};

/// The maximum packet size the fuzz target decodes with: small, so the
/// PacketTooLarge path is exercised too.
pub const FUZZ_MAX_PACKET_SIZE: usize = 1024;

/// Decodes `data` as a stream of packets in both protocol versions. Every
/// packet that decodes must re-encode, with `encoded_len` agreeing, and
/// decode again to an equal packet. An incomplete frame must leave the
/// buffer untouched. Panics (the fuzzer's "crash") on any violation.
pub fn decode_roundtrip_check(data: &[u8]) {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, FUZZ_MAX_PACKET_SIZE) {
                Ok(Some(packet)) => {
                    assert!(buf.len() < before, "a decoded packet must consume bytes");
                    let mut wire = BytesMut::new();
                    if let Err(e) = encode(&packet, version, &mut wire) {
                        panic!("decoded packet failed to re-encode: {e}\n{packet:#?}");
                    }
                    assert_eq!(encoded_len(&packet, version), Ok(wire.len()));
                    let again = decode(&mut wire, version, usize::MAX)
                        .unwrap_or_else(|e| panic!("re-encoded packet failed to decode: {e}"))
                        .expect("a re-encoded packet is complete");
                    assert_eq!(again, packet, "round trip changed the packet");
                    assert!(wire.is_empty(), "re-encoded packet left bytes over");
                }
                Ok(None) => {
                    assert_eq!(
                        buf.len(),
                        before,
                        "an incomplete frame must not be consumed"
                    );
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
