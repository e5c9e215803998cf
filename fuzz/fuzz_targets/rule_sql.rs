//! Compiles arbitrary text as a rule and, when it compiles, evaluates it on
//! an arbitrary payload. Neither may panic, whatever the input.
//!
//! The input is split at its first NUL byte: the SQL before, the payload
//! after (as JSON when it parses, else as a string, as the engine does).

#![no_main]

use ferrule_rules::sql::{Input, compile};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (sql, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(sql) = std::str::from_utf8(sql) else {
        return;
    };
    let Ok(program) = compile(sql) else {
        return;
    };
    let payload: Value = serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
    let attributes = serde_json::json!({"location": {"lat": 1.5}, "limit": 30});
    let input = Input {
        tenant: "t1",
        topic: "devices/d1/telemetry",
        payload: &payload,
        client_id: Some("c1"),
        device_id: Some("d1"),
        timestamp_ms: 1_700_000_000_000,
        attributes: Some(&attributes),
        defaults: None,
    };
    if let Ok(Some(out)) = program.evaluate(&input) {
        // Output must serialize (no NaN or infinity slipped through).
        assert!(serde_json::to_string(&out).is_ok());
    }
    let _ = program.matches_topic("devices/d1/telemetry");
});
