//! Parses arbitrary bytes as a device's telemetry payload. Parsing must
//! never panic; a refusal must leave the output exactly as it was; an
//! accepted payload must respect every limit.

#![no_main]

use ferrule_core::telemetry::{PayloadLimits, Reading, TelemetryValue, parse_telemetry};
use libfuzzer_sys::fuzz_target;

const RECEIVED: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    // Small limits, so that every limit is reachable from short inputs.
    let limits = PayloadLimits {
        max_points: 50,
        max_keys_per_object: 20,
        max_depth: 3,
        max_key_bytes: 40,
        max_string_bytes: 30,
        max_future_skew_ms: 1000,
        // Low, so that both sides of the era check are reachable.
        min_ts_ms: 1000,
    };
    let sentinel = Reading {
        ts: -1,
        key: "kept".into(),
        value: TelemetryValue::Bool(true),
        server_stamped: false,
    };
    let mut out = vec![sentinel.clone()];
    match parse_telemetry(data, RECEIVED, &limits, &mut out) {
        Err(_) => assert_eq!(out, vec![sentinel], "a refusal must not touch the output"),
        Ok(()) => {
            assert_eq!(out[0], sentinel);
            let readings = &out[1..];
            assert!(readings.len() <= limits.max_points);
            for r in readings {
                assert!(r.ts >= limits.min_ts_ms && r.ts <= RECEIVED + limits.max_future_skew_ms);
                // Only a reading without its own ts is stamped, with the receive time.
                assert!(!r.server_stamped || r.ts == RECEIVED);
                assert!(!r.key.is_empty() && r.key.len() <= limits.max_key_bytes);
                match &r.value {
                    TelemetryValue::Number(x) => assert!(x.is_finite()),
                    TelemetryValue::Text(s) => assert!(s.len() <= limits.max_string_bytes),
                    TelemetryValue::Bool(_) => {}
                }
            }
        }
    }
});
