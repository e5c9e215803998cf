//! Decodes arbitrary bytes as an MQTT stream in both protocol versions.
//! Decoding must never panic, and every packet that decodes must re-encode
//! and decode again to an equal packet.
//!
//! The same check runs on stable as a regular test over `fuzz/regressions/`
//! (`crates/ferrule-mqtt/tests/common/mod.rs`); keep the two in step. When
//! this target finds a crash, copy the input from `fuzz/artifacts/` into
//! `fuzz/regressions/`.

#![no_main]

use bytes::BytesMut;
use ferrule_mqtt::codec::{ProtocolVersion, decode, encode, encoded_len};
use libfuzzer_sys::fuzz_target;

/// Small, so the PacketTooLarge path is exercised too.
const MAX_PACKET_SIZE: usize = 1024;

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, MAX_PACKET_SIZE) {
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
});
