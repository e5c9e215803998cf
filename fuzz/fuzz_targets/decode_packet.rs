//! Decodes arbitrary bytes as an MQTT stream in both protocol versions.
//! Decoding must never panic, and every packet that decodes must re-encode
//! and decode again to an equal packet.
//!
//! The check is `crates/ferrule-mqtt/tests/common/mod.rs`, which also runs
//! on stable as a regular test over `fuzz/regressions/`. When this target
//! finds a crash, copy the input from `fuzz/artifacts/` into
//! `fuzz/regressions/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// The one copy of the check, shared with the regression test that runs it
/// on stable over `fuzz/regressions/`.
#[path = "../../crates/ferrule-mqtt/tests/common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::decode_roundtrip_check(data));
