//! Every payload shape, every refusal, and a round-trip property.

use super::*;
use crate::telemetry::parse::CLIP;
use proptest::prelude::*;

const RECV: i64 = 1_700_000_000_000;

fn num(ts: i64, key: &str, v: f64) -> Reading {
    Reading {
        ts,
        key: key.into(),
        value: TelemetryValue::Number(v),
        server_stamped: false,
    }
}

fn parse_with(payload: &[u8], limits: &PayloadLimits) -> Result<Vec<Reading>, PayloadError> {
    // `out` already holds a reading: it must survive success and refusal.
    let before = vec![num(1, "earlier", 0.0)];
    let mut out = before.clone();
    match parse_telemetry(payload, RECV, limits, &mut out) {
        Ok(()) => {
            assert_eq!(out[..1], before[..]);
            Ok(out.split_off(1))
        }
        Err(e) => {
            assert_eq!(out, before, "out changed by a refused payload");
            Err(e)
        }
    }
}

/// Small `ts` values keep the shape tests short: the era check is
/// switched off here and tested in `timestamps_of_another_unit`.
fn parse(payload: &str) -> Result<Vec<Reading>, PayloadError> {
    let limits = PayloadLimits {
        min_ts_ms: 0,
        ..PayloadLimits::default()
    };
    parse_with(payload.as_bytes(), &limits)
}

fn keys(payload: &str) -> Vec<(i64, String)> {
    parse(payload)
        .unwrap()
        .into_iter()
        .map(|r| (r.ts, r.key.into()))
        .collect()
}

fn kind(payload: &str) -> &'static str {
    parse(payload).unwrap_err().kind()
}

fn k(ts: i64, key: &str) -> (i64, String) {
    (ts, key.into())
}

#[test]
fn plain_object_in_order() {
    let r = parse(
        r#"{"temp": 21.5, "on": true, "name": "pump", "n": -3, "big": 18446744073709551615}"#,
    )
    .unwrap();
    let v: Vec<_> = r.iter().map(|r| (&*r.key, r.value.clone())).collect();
    assert_eq!(
        v,
        [
            ("temp", TelemetryValue::Number(21.5)),
            ("on", TelemetryValue::Bool(true)),
            ("name", TelemetryValue::Text("pump".into())),
            ("n", TelemetryValue::Number(-3.0)),
            ("big", TelemetryValue::Number(u64::MAX as f64)),
        ]
    );
    assert!(r.iter().all(|r| r.ts == RECV));
    assert_eq!(
        parse(r#"{"off": false}"#).unwrap()[0].value,
        TelemetryValue::Bool(false)
    );
}

#[test]
fn timestamped_forms() {
    assert_eq!(
        keys(r#"{"ts": 5, "values": {"a": 1, "b": 2}}"#),
        [k(5, "a"), k(5, "b")]
    );
    assert_eq!(keys(r#"{"values": {"a": 1}, "ts": 6}"#), [k(6, "a")]);
    assert_eq!(keys(r#"{"values": {"a": 1}}"#), [k(RECV, "a")]);
    assert_eq!(
        keys(r#"{"ts": 1.7e12, "values": {"a": 1}}"#),
        [k(1_700_000_000_000, "a")]
    );
    assert_eq!(keys(r#"{"ts": 7, "values": {}}"#), []);
    // An escaped key is the same key.
    assert_eq!(
        keys(r#"{"t\u0073": 8, "valu\u0065s": {"a": 1}}"#),
        [k(8, "a")]
    );
}

#[test]
fn array_of_both_kinds() {
    let p = r#"[{"a": 1}, {"ts": 5, "values": {"b": 2}}, {"values": {"c": 3}}, {}, {"d": "x"}]"#;
    assert_eq!(
        keys(p),
        [k(RECV, "a"), k(5, "b"), k(RECV, "c"), k(RECV, "d")]
    );
    assert_eq!(keys("[]"), []);
    assert_eq!(keys("{}"), []);
    assert_eq!(keys(" [ { } ] "), []);
}

#[test]
fn ts_and_values_as_plain_keys() {
    assert_eq!(
        keys(r#"{"ts": 5, "temp": 1}"#),
        [k(RECV, "ts"), k(RECV, "temp")]
    );
    assert_eq!(keys(r#"{"ts": 5}"#), [k(RECV, "ts")]);
    assert_eq!(
        keys(r#"{"ts": "soon", "values": 3}"#),
        [k(RECV, "ts"), k(RECV, "values")]
    );
    assert_eq!(
        parse(r#"{"ts": "soon", "a": 1}"#).unwrap()[0].value,
        TelemetryValue::Text("soon".into())
    );
    // A values object among other keys: read again as plain, order kept.
    assert_eq!(
        keys(r#"{"ts": 5, "values": {"a": {"b": 1}}, "x": 2}"#),
        [k(RECV, "ts"), k(RECV, "values.a.b"), k(RECV, "x")]
    );
    assert_eq!(
        keys(r#"{"ts": {"s": 1}, "x": 2}"#),
        [k(RECV, "ts.s"), k(RECV, "x")]
    );
    let p = r#"[{"ts": 5, "values": {"a": 1}}, {"values": {"a": 1}, "x": 2}, {"values": {"b": 1}, "ts": 6}]"#;
    assert_eq!(
        keys(p),
        [k(5, "a"), k(RECV, "values.a"), k(RECV, "x"), k(6, "b")]
    );
}

#[test]
fn nested_objects_flatten() {
    assert_eq!(
        keys(r#"{"a": {"b": 1, "c": {"d": true}}, "e": 2, "f": {}}"#),
        [k(RECV, "a.b"), k(RECV, "a.c.d"), k(RECV, "e")]
    );
    assert_eq!(
        keys(r#"{"ts": 3, "values": {"a": {"b": 1}}}"#),
        [k(3, "a.b")]
    );
    let eight = r#"{"1":{"2":{"3":{"4":{"5":{"6":{"7":{"8":{"x":1}}}}}}}}}"#;
    assert_eq!(keys(eight), [k(RECV, "1.2.3.4.5.6.7.8.x")]);
    assert_eq!(keys(&format!(r#"{{"values": {eight}}}"#)).len(), 1);
}

#[test]
fn limits_at_the_edge_are_accepted() {
    let key = "k".repeat(256);
    assert_eq!(keys(&format!(r#"{{"{key}": 1}}"#)), [k(RECV, &key)]);
    let s = "s".repeat(8_192);
    assert_eq!(
        parse(&format!(r#"{{"a": "{s}"}}"#)).unwrap()[0].value,
        TelemetryValue::Text(s.into())
    );
    let at_limit = RECV + 300_000;
    assert_eq!(
        keys(&format!(r#"{{"ts": {at_limit}, "values": {{"a": 1}}}}"#)),
        [k(at_limit, "a")]
    );
    assert_eq!(parse(&object_of_keys(1_000)).unwrap().len(), 1_000);
    let ten_k = format!("[{}]", vec![object_of_keys(1_000); 10].join(","));
    assert_eq!(parse(&ten_k).unwrap().len(), 10_000);
}

#[test]
fn refused_syntax_and_shape() {
    for p in [
        "",
        "{",
        r#"{"a": 1} x"#,
        r#"{"a": 1}{}"#,
        "{'a': 1}",
        r#"{"a": NaN}"#,
        r#"{"a": Infinity}"#,
        r#"{"a": -Infinity}"#,
    ] {
        assert_eq!(kind(p), "not_json", "{p}");
    }
    let e = parse_with(b"{\"a\": \"\xff\"}", &PayloadLimits::default()).unwrap_err();
    assert_eq!(e.kind(), "not_json");
    assert!(
        e.to_string().starts_with("payload is not valid JSON: "),
        "{e}"
    );
    for (p, found) in [
        ("1", "a number"),
        (r#""s""#, "a string"),
        ("true", "a boolean"),
        ("null", "null"),
    ] {
        assert_eq!(parse(p), Err(PayloadError::NotAnObject { found }));
    }
    assert_eq!(
        parse(r#"[[{"a": 1}]]"#),
        Err(PayloadError::ElementNotAnObject {
            index: 0,
            found: "an array"
        })
    );
    assert_eq!(
        parse(r#"[{"a": 1}, 3]"#),
        Err(PayloadError::ElementNotAnObject {
            index: 1,
            found: "a number"
        })
    );
}

#[test]
fn refused_values() {
    let wrong = |key: &str, found, index| {
        Err(PayloadError::WrongType {
            key: key.into(),
            found,
            index,
        })
    };
    assert_eq!(parse(r#"{"a": 1, "b": null}"#), wrong("b", "null", None));
    assert_eq!(
        parse(r#"[{}, {"a": {"b": [1]}}]"#),
        wrong("a.b", "an array", Some(1))
    );
    assert_eq!(
        parse(r#"{"ts": 1, "values": {"a": null}}"#),
        wrong("a", "null", None)
    );
    assert_eq!(
        parse(r#"{"values": {"a": null}, "x": 1}"#),
        wrong("values.a", "null", None)
    );
    assert_eq!(
        parse(r#"{"ts": 1, "values": []}"#),
        wrong("values", "an array", None)
    );
    // serde_json refuses numbers beyond f64 rather than returning infinity.
    let e = parse(r#"{"a": {"b": 1e999}}"#).unwrap_err();
    assert_eq!(
        e,
        PayloadError::NonFinite {
            key: "a.b".into(),
            index: None
        }
    );
    assert_eq!(e.to_string(), "value of `a.b` is not a finite number");
    assert_eq!(kind(r#"[{"values": {"x": -1e999}}]"#), "non_finite");
    let e = parse(&format!(r#"{{"a": "{}"}}"#, "s".repeat(9 * 1024))).unwrap_err();
    assert_eq!(
        e,
        PayloadError::StringTooLong {
            key: "a".into(),
            limit: 8_192,
            index: None
        }
    );
    assert_eq!(
        kind(&format!(r#"{{"ts": "{}", "a": 1}}"#, "s".repeat(9_000))),
        "string_too_long"
    );
}

#[test]
fn refused_keys() {
    let e = parse(&format!(r#"{{"{}": 1}}"#, "k".repeat(300))).unwrap_err();
    assert_eq!(e.kind(), "key_too_long");
    assert_eq!(
        e.to_string(),
        format!("key `{}…` is longer than 256 bytes", "k".repeat(CLIP))
    );
    // A path too long even though it leads to nothing; clipped on a char.
    let p = format!(r#"{{"a": {{"{}": {{}}}}}}"#, "€".repeat(100));
    let e = parse(&p).unwrap_err();
    let clipped = format!("a.{}…", "€".repeat(20));
    assert_eq!(
        e,
        PayloadError::KeyTooLong {
            key: clipped.into(),
            limit: 256,
            index: None
        }
    );
    assert_eq!(
        kind(&format!(
            r#"{{"values": {{"{}": 1}}, "x": 1}}"#,
            "k".repeat(250)
        )),
        "key_too_long"
    );
    assert_eq!(
        parse(r#"{"": 1}"#),
        Err(PayloadError::EmptyKey {
            parent: "".into(),
            index: None
        })
    );
    let e = parse(r#"[{"a": {"": 1}}]"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "an empty key is not allowed (inside `a`) in array element 0"
    );
    let e = parse(r#"{"a\u0007b": 1}"#).unwrap_err();
    assert_eq!(
        e,
        PayloadError::BadKey {
            key: "a\u{7}b".into(),
            index: None
        }
    );
    assert_eq!(
        e.to_string(),
        r#"key "a\u{7}b" contains a control character"#
    );
    assert_eq!(kind(r#"{"ts": 1, "ts": 2}"#), "duplicate_key");
    assert_eq!(kind(r#"{"values": {}, "values": {}}"#), "duplicate_key");
}

#[test]
fn refused_counts_and_depth() {
    assert_eq!(
        parse(&object_of_keys(10_001)),
        Err(PayloadError::TooManyKeys {
            limit: 1_000,
            index: None
        })
    );
    let over = format!(
        "[{},{{\"last\":1}}]",
        vec![object_of_keys(1_000); 10].join(",")
    );
    assert_eq!(
        parse(&over),
        Err(PayloadError::TooManyPoints { limit: 10_000 })
    );
    let nine = r#"{"1":{"2":{"3":{"4":{"5":{"6":{"7":{"8":{"9":{"x":1}}}}}}}}}}"#;
    let e = parse(nine).unwrap_err();
    assert_eq!(
        e,
        PayloadError::TooDeep {
            key: "1.2.3.4.5.6.7.8.9".into(),
            limit: 8,
            index: None
        }
    );
    assert_eq!(kind(&format!(r#"{{"values": {nine}}}"#)), "too_deep");
    // Eight levels in a values object, but plain (extra key): nine deep.
    let eight = r#"{"1":{"2":{"3":{"4":{"5":{"6":{"7":{"8":{"x":1}}}}}}}}}"#;
    assert_eq!(
        kind(&format!(r#"{{"values": {eight}, "x": 1}}"#)),
        "too_deep"
    );
    // serde_json's own recursion limit still guards the parse.
    assert_eq!(
        kind(&format!("{}{}", "[".repeat(200), "]".repeat(200))),
        "element_not_an_object"
    );
    assert_eq!(
        kind(&format!(
            r#"{{"a":{}1{}}}"#,
            r#"{"a":"#.repeat(200),
            "}".repeat(200)
        )),
        "too_deep"
    );
}

#[test]
fn refused_timestamps() {
    let ts = |t: &str| parse(&format!(r#"{{"ts": {t}, "values": {{"a": 1}}}}"#));
    let bad = |found| Err(PayloadError::BadTimestamp { found, index: None });
    assert_eq!(ts("-1"), bad("a negative number"));
    assert_eq!(ts("1.5"), bad("a number with a fraction"));
    assert_eq!(ts(r#""1700000000000""#), bad("a string"));
    assert_eq!(ts("true"), bad("a boolean"));
    assert_eq!(ts("null"), bad("null"));
    assert_eq!(ts("{}"), bad("an object"));
    assert_eq!(ts("[1]"), bad("an array"));
    assert_eq!(ts("1e19"), bad("a number too large"));
    assert_eq!(ts("18446744073709551615"), bad("a number too large"));
    let limit = RECV + 300_000;
    let e = ts(&(limit + 1).to_string()).unwrap_err();
    assert_eq!(
        e,
        PayloadError::TimestampInFuture {
            ts: limit + 1,
            limit,
            index: None
        }
    );
    let p = format!(
        r#"[{{"a": 1}}, {{"values": {{"a": 1}}, "ts": {}}}]"#,
        limit + 1
    );
    assert_eq!(
        parse(&p).unwrap_err().to_string(),
        format!(
            "`ts` {} in array element 1 is too far in the future (the latest accepted is {limit})",
            limit + 1
        )
    );
}

#[test]
fn error_texts_and_kinds() {
    let all = [
        PayloadError::NotJson {
            message: "x".into(),
        },
        PayloadError::NotAnObject { found: "null" },
        PayloadError::ElementNotAnObject {
            index: 2,
            found: "an array",
        },
        PayloadError::WrongType {
            key: "a".into(),
            found: "null",
            index: Some(3),
        },
        PayloadError::NonFinite {
            key: "a".into(),
            index: None,
        },
        PayloadError::TooManyPoints { limit: 1 },
        PayloadError::TooManyKeys {
            limit: 1,
            index: None,
        },
        PayloadError::TooDeep {
            key: "a".into(),
            limit: 1,
            index: None,
        },
        PayloadError::KeyTooLong {
            key: "a".into(),
            limit: 1,
            index: None,
        },
        PayloadError::EmptyKey {
            parent: "".into(),
            index: None,
        },
        PayloadError::BadKey {
            key: "a".into(),
            index: None,
        },
        PayloadError::StringTooLong {
            key: "a".into(),
            limit: 1,
            index: None,
        },
        PayloadError::BadTimestamp {
            found: "null",
            index: None,
        },
        PayloadError::TimestampInFuture {
            ts: 2,
            limit: 1,
            index: None,
        },
        PayloadError::TimestampNotMillis {
            ts: 1,
            limit: 2,
            hint: Some("seconds"),
            index: None,
        },
        PayloadError::DuplicateKey {
            key: "ts",
            index: None,
        },
    ];
    let kinds: std::collections::HashSet<_> = all.iter().map(PayloadError::kind).collect();
    assert_eq!(kinds.len(), all.len());
    assert!(
        kinds
            .iter()
            .all(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
    assert_eq!(
        all[3].to_string(),
        "value of `a` in array element 3 is null; expected a number, boolean, string or object"
    );
}

fn flat_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        "[^\\p{Cc}]{0,40}".prop_map(serde_json::Value::from),
    ]
}

proptest! {
    #[test]
    fn flat_objects_round_trip(entries in prop::collection::vec(("[^\\p{Cc}]{1,30}", flat_value()), 0..40)) {
        let map: serde_json::Map<String, serde_json::Value> = entries.into_iter().collect();
        let text = serde_json::to_string(&map).unwrap();
        let got = parse(&text).unwrap();
        prop_assert_eq!(got.len(), map.len());
        for (r, (key, v)) in got.iter().zip(&map) {
            prop_assert_eq!(r.ts, RECV);
            prop_assert_eq!(&*r.key, key.as_str());
            let want = match v {
                serde_json::Value::Bool(b) => TelemetryValue::Bool(*b),
                serde_json::Value::String(s) => TelemetryValue::Text(s.as_str().into()),
                // Without serde_json's `float_roundtrip` feature its float
                // parsing may miss the original by an ulp or two; we keep
                // exactly what serde_json parses, so compare with that.
                n => TelemetryValue::Number(serde_json::from_str::<f64>(&n.to_string()).unwrap()),
            };
            prop_assert_eq!(&r.value, &want);
            if let (TelemetryValue::Number(got), Some(orig)) = (&r.value, v.as_f64()) {
                // Same sign, so the bit patterns' distance counts ulps; 2 at
                // most over 20 M random doubles, so 4 leaves headroom.
                let ulps = got.to_bits().abs_diff(orig.to_bits());
                prop_assert!(ulps <= 4, "{} vs {}", got, orig);
            }
        }
    }
}

#[test]
fn timestamps_of_another_unit() {
    let ts = |ts: i64| {
        parse_with(
            format!(r#"{{"ts": {ts}, "values": {{"a": 1}}}}"#).as_bytes(),
            &PayloadLimits::default(),
        )
    };
    let refused = |t: i64, hint: Option<&'static str>| PayloadError::TimestampNotMillis {
        ts: t,
        limit: MIN_TS_MS,
        hint,
        index: None,
    };
    // RECV in seconds, microseconds and nanoseconds.
    assert_eq!(
        ts(1_700_000_000).unwrap_err(),
        refused(1_700_000_000, Some("seconds"))
    );
    let micros = RECV * 1_000;
    assert_eq!(
        ts(micros).unwrap_err(),
        refused(micros, Some("microseconds"))
    );
    let nanos = RECV * 1_000_000;
    assert_eq!(ts(nanos).unwrap_err(), refused(nanos, Some("nanoseconds")));
    // 1970 without a unit that fits, and the first accepted millisecond.
    assert_eq!(ts(0).unwrap_err(), refused(0, None));
    assert_eq!(ts(5_000).unwrap_err(), refused(5_000, None));
    assert_eq!(ts(MIN_TS_MS - 1).unwrap_err(), refused(MIN_TS_MS - 1, None));
    assert_eq!(ts(MIN_TS_MS).unwrap()[0].ts, MIN_TS_MS);
    let text = ts(1_699_999_999).unwrap_err().to_string();
    assert!(text.contains("looks like seconds"), "{text}");
    assert_eq!(
        ts(1_796_194_341).unwrap_err().kind(),
        "timestamp_not_millis"
    );
}

#[test]
fn readings_without_ts_are_server_stamped() {
    let p = r#"[{"a": 1}, {"ts": 1700000000000, "values": {"b": 2}}, {"values": {"c": 3}}, {"values": {"d": 4}, "ts": 1700000000001}]"#;
    let stamped: Vec<(String, bool)> = parse(p)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.into(), r.server_stamped))
        .collect();
    assert_eq!(
        stamped,
        [
            ("a".into(), true),
            ("b".into(), false),
            ("c".into(), true),
            ("d".into(), false)
        ]
    );
}

/// `{"k0":1,"k1":1,…}` with `n` keys.
fn object_of_keys(n: usize) -> String {
    let members: Vec<String> = (0..n).map(|i| format!(r#""k{i}":1"#)).collect();
    format!("{{{}}}", members.join(","))
}
