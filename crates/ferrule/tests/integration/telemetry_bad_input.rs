//! Invalid telemetry (SPEC "Topics with meaning"): refused whole — MQTT 5
//! PUBACK 0x99 with a reason string, HTTP 400 with a detail — counted in
//! `/metrics`, nothing of it stored, and the publisher's connection and
//! everyone else's traffic carry on.

use std::collections::BTreeMap;

use ferrule_mqtt::codec::{ProtocolVersion, QoS, ReasonCode};
use serde_json::json;

use crate::mqtt_util::{Raw, V3, V5, World, both_versions};
use crate::telemetry_util::{
    all_points, history, ingest, ingest_ok, now_ms, object_with_keys, publish1_ack, reason_string,
    refused_total,
};
use crate::util::ServerBuilder;

/// What is wrong, the payload, the `reason` label it is counted under, and
/// a piece of the explanation the publisher gets.
type Case = (&'static str, Vec<u8>, &'static str, String);

/// Every refusal the SPEC and the payload contract name. Several carry a
/// valid reading `fine` too: a refused payload keeps none of it.
fn invalid_payloads() -> Vec<Case> {
    let case =
        |what, payload: &[u8], reason, why: &str| (what, payload.to_vec(), reason, why.to_owned());
    let nine_deep = r#"{"1":{"2":{"3":{"4":{"5":{"6":{"7":{"8":{"9":{"x":1}}}}}}}}}}"#;
    let thousand = object_with_keys(1_000);
    let readings_10_001 = format!("[{},{{\"last\":1}}]", vec![thousand; 10].join(","));
    let future = now_ms() + 10 * 60_000;
    vec![
        case(
            "not JSON",
            b"hello",
            "not_json",
            "payload is not valid JSON",
        ),
        case(
            "trailing garbage",
            br#"{"fine": 1} x"#,
            "not_json",
            "not valid JSON",
        ),
        case(
            "two objects",
            br#"{"fine": 1}{"fine": 2}"#,
            "not_json",
            "not valid JSON",
        ),
        case("empty", b"", "not_json", "not valid JSON"),
        case(
            "not UTF-8",
            b"{\"fine\": \"\xff\"}",
            "not_json",
            "not valid JSON",
        ),
        case("NaN", br#"{"fine": NaN}"#, "not_json", "not valid JSON"),
        case(
            "Infinity",
            br#"{"fine": Infinity}"#,
            "not_json",
            "not valid JSON",
        ),
        case(
            "-Infinity",
            br#"{"fine": -Infinity}"#,
            "not_json",
            "not valid JSON",
        ),
        case(
            "a number at the top",
            b"42",
            "not_an_object",
            "must be a JSON object or an array of objects, not a number",
        ),
        case(
            "a string at the top",
            br#""hi""#,
            "not_an_object",
            "not a string",
        ),
        case("null at the top", b"null", "not_an_object", "not null"),
        case(
            "an array in the array",
            br#"[[{"fine": 1}]]"#,
            "element_not_an_object",
            "array element 0 must be an object, not an array",
        ),
        case(
            "a number in the array",
            br#"[{"fine": 1}, 3]"#,
            "element_not_an_object",
            "array element 1 must be an object, not a number",
        ),
        case(
            "a null value",
            br#"{"fine": 1, "bad": null}"#,
            "wrong_type",
            "value of `bad` is null",
        ),
        case(
            "an array value",
            br#"{"fine": 1, "bad": [1, 2]}"#,
            "wrong_type",
            "value of `bad` is an array",
        ),
        case(
            "an invalid element after a valid one",
            br#"[{"fine": 1}, {"ts": 1, "values": {"x": null}}]"#,
            "wrong_type",
            "value of `x` in array element 1 is null",
        ),
        case(
            "1e999",
            br#"{"fine": 1, "big": 1e999}"#,
            "non_finite",
            "value of `big` is not a finite number",
        ),
        case(
            "10 000 keys in one object",
            object_with_keys(10_000).as_bytes(),
            "too_many_keys",
            "has more than 1000 keys",
        ),
        case(
            "10 001 readings",
            readings_10_001.as_bytes(),
            "too_many_points",
            "more than 10000 readings",
        ),
        case(
            "nested 9 deep",
            nine_deep.as_bytes(),
            "too_deep",
            "`1.2.3.4.5.6.7.8.9` is nested more than 8 objects deep",
        ),
        case(
            "a key of 257 bytes",
            format!(r#"{{"fine": 1, "{}": 1}}"#, "k".repeat(257)).as_bytes(),
            "key_too_long",
            "is longer than 256 bytes",
        ),
        case(
            "an empty key",
            br#"{"fine": 1, "": 2}"#,
            "empty_key",
            "an empty key is not allowed",
        ),
        case(
            "an empty nested key",
            br#"{"a": {"": 2}}"#,
            "empty_key",
            "an empty key is not allowed (inside `a`)",
        ),
        case(
            "a control character in a key",
            br#"{"a\u0007b": 1}"#,
            "bad_key",
            "contains a control character",
        ),
        case(
            "a string of 8193 bytes",
            format!(r#"{{"fine": 1, "s": "{}"}}"#, "s".repeat(8_193)).as_bytes(),
            "string_too_long",
            "string value of `s` is longer than 8192 bytes",
        ),
        case(
            "a negative ts",
            br#"{"ts": -1, "values": {"fine": 1}}"#,
            "bad_timestamp",
            "must be a whole number of milliseconds since the Unix epoch, not a negative number",
        ),
        case(
            "a fractional ts",
            br#"{"ts": 1700000000000.5, "values": {"fine": 1}}"#,
            "bad_timestamp",
            "not a number with a fraction",
        ),
        case(
            "a string ts",
            br#"{"ts": "1700000000000", "values": {"fine": 1}}"#,
            "bad_timestamp",
            "not a string",
        ),
        case(
            "a ts 10 minutes ahead",
            format!(r#"{{"ts": {future}, "values": {{"fine": 1}}}}"#).as_bytes(),
            "timestamp_in_future",
            &format!("`ts` {future} is too far in the future"),
        ),
        case(
            "a ts in seconds",
            br#"{"ts": 1796194341, "values": {"fine": 1}}"#,
            "timestamp_not_millis",
            "`ts` 1796194341 cannot be milliseconds since the Unix epoch of this era (from 946684800000, 2000-01-01, to shortly after the receive time); it looks like seconds: send milliseconds",
        ),
        case(
            "a ts in microseconds",
            format!(r#"{{"ts": {}, "values": {{"fine": 1}}}}"#, now_ms() * 1_000).as_bytes(),
            "timestamp_not_millis",
            "it looks like microseconds",
        ),
        case(
            "a ts in nanoseconds",
            format!(
                r#"{{"ts": {}, "values": {{"fine": 1}}}}"#,
                now_ms() * 1_000_000
            )
            .as_bytes(),
            "timestamp_not_millis",
            "it looks like nanoseconds",
        ),
        case(
            "a ts in 1970",
            br#"{"ts": 5000, "values": {"fine": 1}}"#,
            "timestamp_not_millis",
            "`ts` 5000 cannot be milliseconds since the Unix epoch of this era",
        ),
        case(
            "ts twice",
            br#"{"ts": 1, "ts": 2, "values": {"fine": 1}}"#,
            "duplicate_key",
            "`ts` appears more than once",
        ),
    ]
}

/// How many refusals of each reason the cases make.
fn per_reason(cases: &[Case]) -> BTreeMap<&'static str, f64> {
    let mut n = BTreeMap::new();
    for (_, _, reason, _) in cases {
        *n.entry(*reason).or_default() += 1.0;
    }
    n
}

async fn refused_counts(w: &World, cases: &[Case]) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for reason in per_reason(cases).keys() {
        out.insert(*reason, refused_total(&w.s, reason).await);
    }
    out
}

/// A valid payload: reading `ok` = `i` at a ts of its own.
fn valid(t0: i64, i: usize) -> Vec<u8> {
    format!(r#"{{"ts": {}, "values": {{"ok": {i}}}}}"#, t0 + i as i64).into_bytes()
}

/// After the cases: only the valid payloads' readings are stored.
async fn assert_only_valid_stored(w: &World, t0: i64, n: usize) {
    assert_eq!(
        w.admin
            .get("/api/v1/devices/pump/telemetry/keys")
            .await
            .json,
        json!(["ok"]),
        "nothing of a refused payload is kept"
    );
    let want: Vec<(i64, serde_json::Value)> = (0..n).map(|i| (t0 + i as i64, json!(i))).collect();
    assert_eq!(all_points(&w.admin, "pump", "ok").await, want);
}

async fn mqtt_refusals(version: ProtocolVersion) {
    let w = World::start().await;
    let cases = invalid_payloads();
    let before = refused_counts(&w, &cases).await;
    // A bystander watching the device's telemetry (refusal notices go to
    // `devices/pump/rejected`, see `telemetry_notices`).
    let mut obs = w.observer().await;
    obs.subscribe(1, &[("devices/pump/telemetry", QoS::AtMostOnce)])
        .await;
    let mut dev = Raw::login(&w.s.mqtt, version, "pump", &w.pump, None).await;
    let t0 = now_ms() - 60_000;
    let mut packet_id = 0u16;
    for (i, (what, payload, _, why)) in cases.iter().enumerate() {
        packet_id += 1;
        let ack = publish1_ack(&mut dev, packet_id, "devices/pump/telemetry", payload).await;
        if version == V5 {
            assert_eq!(
                ack.reason_code,
                ReasonCode::PAYLOAD_FORMAT_INVALID,
                "{what}: {ack:?}"
            );
            let reason = reason_string(&ack);
            assert!(
                reason.contains(why.as_str()),
                "{what}: reason string {reason:?} lacks {why:?}"
            );
        } else {
            // MQTT 3.1.1 cannot say no: a plain PUBACK.
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{what}");
        }
        // The same connection goes on publishing.
        packet_id += 1;
        let ok = valid(t0, i);
        let ack = publish1_ack(&mut dev, packet_id, "devices/pump/telemetry", &ok).await;
        assert_eq!(
            ack.reason_code,
            ReasonCode::SUCCESS,
            "after {what}: {ack:?}"
        );
        // The bystander gets the valid message; the refused one went nowhere.
        let m = obs.recv_publish().await;
        assert_eq!(&m.payload[..], &ok[..], "after {what}");
    }
    // QoS 0: no acknowledgement to refuse with, but refused all the same.
    dev.publish0("devices/pump/telemetry", br#"{"fine": null}"#)
        .await;
    let n = cases.len();
    let ok = valid(t0, n);
    let ack = publish1_ack(&mut dev, packet_id + 1, "devices/pump/telemetry", &ok).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(&obs.recv_publish().await.payload[..], &ok[..]);
    obs.expect_silence(std::time::Duration::from_millis(200))
        .await;

    assert_only_valid_stored(&w, t0, n + 1).await;
    let after = refused_counts(&w, &cases).await;
    let mut expected = per_reason(&cases);
    *expected.get_mut("wrong_type").unwrap() += 1.0;
    for (reason, n) in expected {
        assert_eq!(
            after[reason] - before[reason],
            n,
            "refused_total{{reason={reason}}}"
        );
    }
    w.s.stop().await;
}

#[tokio::test]
async fn invalid_telemetry_gets_puback_0x99_over_mqtt5() {
    mqtt_refusals(V5).await;
}

#[tokio::test]
async fn invalid_telemetry_over_mqtt311_is_acknowledged_but_not_stored() {
    mqtt_refusals(V3).await;
}

#[tokio::test]
async fn invalid_telemetry_gets_400_over_http() {
    let w = World::start().await;
    let cases = invalid_payloads();
    let before = refused_counts(&w, &cases).await;
    let t0 = now_ms() - 60_000;
    for (i, (what, payload, reason, why)) in cases.iter().enumerate() {
        let r = ingest(&w.s, &w.pump, payload).await;
        r.assert_problem(400);
        if reason.starts_with("timestamp") || *reason == "bad_timestamp" {
            assert_eq!(r.json["field"], "ts", "{what}: {}", r.text);
        }
        let detail = r.json["detail"].as_str().unwrap();
        assert!(
            detail.contains(why.as_str()),
            "{what}: detail {detail:?} lacks {why:?}"
        );
        ingest_ok(&w.s, &w.pump, valid(t0, i)).await;
    }
    assert_only_valid_stored(&w, t0, cases.len()).await;
    let after = refused_counts(&w, &cases).await;
    for (reason, n) in per_reason(&cases) {
        assert_eq!(
            after[reason] - before[reason],
            n,
            "refused_total{{reason={reason}}}"
        );
    }
    let metrics = w.s.anon().get("/metrics").await.text;
    assert!(!metrics.contains("status=\"500\""), "no 500 ever");
    w.s.stop().await;
}

#[tokio::test]
async fn a_real_client_sees_the_refusal_and_stays_connected() {
    // paho-mqtt: 0x99 in MQTT 5, a plain PUBACK in 3.1.1; the connection
    // stays up, the valid message after it is delivered and stored.
    let w = World::start().await;
    both_versions(&w, "telemetry_refused").await;
    let values: Vec<serde_json::Value> = all_points(&w.admin, "pump", "temp")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, [json!(21.5), json!(21.5)], "one per version");
    assert_eq!(
        w.admin
            .get("/api/v1/devices/pump/telemetry/keys")
            .await
            .json,
        json!(["temp"])
    );
    w.s.stop().await;
}

#[tokio::test]
async fn payloads_at_the_limits_are_accepted() {
    let w = World::start().await;
    let now = now_ms();
    let t0 = now - 60_000;
    // 10 000 readings: ten objects of 1000 keys, each at its own ts.
    let ten: Vec<String> = (0..10)
        .map(|j| {
            format!(
                r#"{{"ts": {}, "values": {}}}"#,
                t0 + j,
                object_with_keys(1_000)
            )
        })
        .collect();
    ingest_ok(&w.s, &w.pump, format!("[{}]", ten.join(","))).await;
    let eight_deep = r#"{"1":{"2":{"3":{"4":{"5":{"6":{"7":{"8":{"x":1}}}}}}}}}"#;
    ingest_ok(&w.s, &w.pump, eight_deep).await;
    let long_key = "k".repeat(256);
    let long_string = "s".repeat(8_192);
    let mut dev = Raw::login(&w.s.mqtt, V5, "pump", &w.pump, None).await;
    let ahead = now + 4 * 60_000;
    for (i, payload) in [
        format!(r#"{{"{long_key}": 1}}"#),
        format!(r#"{{"long": "{long_string}"}}"#),
        // Four minutes ahead is within the default five.
        format!(r#"{{"ts": {ahead}, "values": {{"ahead": 1}}}}"#),
        // The first millisecond of 2000, the earliest accepted.
        r#"{"ts": 946684800000, "values": {"y2k": 1}}"#.to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let ack = publish1_ack(
            &mut dev,
            i as u16 + 1,
            "devices/pump/telemetry",
            payload.as_bytes(),
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{ack:?}");
    }
    let keys = w
        .admin
        .get("/api/v1/devices/pump/telemetry/keys")
        .await
        .json;
    let keys = keys.as_array().unwrap();
    assert_eq!(
        keys.len(),
        1_000 + 5,
        "k0..k999, 1.2…8.x, the long key, long, ahead, y2k"
    );
    assert!(keys.contains(&json!("1.2.3.4.5.6.7.8.x")));
    let k7 = all_points(&w.admin, "pump", "k7").await;
    assert_eq!(
        k7.iter().map(|p| p.0).collect::<Vec<_>>(),
        (t0..t0 + 10).collect::<Vec<_>>()
    );
    assert_eq!(all_points(&w.admin, "pump", &long_key).await.len(), 1);
    assert_eq!(
        all_points(&w.admin, "pump", "long").await[0].1,
        json!(long_string)
    );
    assert_eq!(
        all_points(&w.admin, "pump", "ahead").await,
        [(ahead, json!(1))]
    );
    assert_eq!(
        all_points(&w.admin, "pump", "y2k").await,
        [(946_684_800_000, json!(1))]
    );
    w.s.stop().await;
}

#[tokio::test]
async fn the_future_skew_is_configurable() {
    let w = World::with(ServerBuilder::new().env("FERRULE_TELEMETRY_MAX_FUTURE_SKEW", "1m")).await;
    let now = now_ms();
    let near = now + 30_000;
    let far = now + 2 * 60_000;
    ingest_ok(
        &w.s,
        &w.pump,
        format!(r#"{{"ts": {near}, "values": {{"a": 1}}}}"#),
    )
    .await;
    let r = ingest(
        &w.s,
        &w.pump,
        format!(r#"{{"ts": {far}, "values": {{"a": 2}}}}"#),
    )
    .await;
    r.assert_problem(400);
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("too far in the future"),
        "{}",
        r.text
    );
    let mut dev = Raw::login(&w.s.mqtt, V5, "pump", &w.pump, None).await;
    let ack = publish1_ack(
        &mut dev,
        1,
        "devices/pump/telemetry",
        format!(r#"{{"ts": {far}, "values": {{"a": 3}}}}"#).as_bytes(),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::PAYLOAD_FORMAT_INVALID);
    // The default range ends a day ahead, so a point 30 s ahead is found.
    assert_eq!(
        history(&w.admin, "pump", "").await,
        json!({"a": [{"ts": near, "value": 1}]})
    );
    w.s.stop().await;
}
