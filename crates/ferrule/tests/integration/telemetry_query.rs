//! Reading telemetry back (SPEC "HTTP"): raw points with limits, order and
//! time cuts; every aggregate against values computed here; latest values
//! and keys; one key across devices; the event log's pages; the export; and
//! another tenant seeing none of it. Where it matters the data is read both
//! from memory and from sealed chunks, and across the two.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::mqtt_util::{World, create_device};
use crate::telemetry_util::{
    chunks_sealed, history, ingest_event, ingest_ok, points, sealing_quickly, wait_sealed,
};
use crate::util::{Api, tenant_with_owner};

/// 2023-11-14T22:13:20Z: a fixed past instant, so RFC 3339 forms are known.
const T0: i64 = 1_700_000_000_000;

/// A payload of timestamped objects, one reading of `key` each.
fn timestamped(key: &str, pts: &[(i64, Value)]) -> String {
    let objs: Vec<String> = pts
        .iter()
        .map(|(ts, v)| json!({"ts": ts, "values": {key: v}}).to_string())
        .collect();
    format!("[{}]", objs.join(","))
}

fn ts_of(pts: &[(i64, Value)]) -> Vec<i64> {
    pts.iter().map(|p| p.0).collect()
}

#[tokio::test]
async fn raw_points_are_paged_ordered_and_cut_by_time() {
    let w = World::start().await;
    // n = i and f = i + 0.5, one second apart.
    let n: Vec<(i64, Value)> = (0..50).map(|i| (T0 + i * 1000, json!(i))).collect();
    let f: Vec<(i64, Value)> = (0..50)
        .map(|i| (T0 + i * 1000, json!(i as f64 + 0.5)))
        .collect();
    ingest_ok(&w.s, &w.pump, timestamped("n", &n)).await;
    ingest_ok(&w.s, &w.pump, timestamped("f", &f)).await;
    let a = &w.admin;

    // Everything, every key, ascending.
    let all = history(a, "pump", "").await;
    assert_eq!(all.as_object().unwrap().len(), 2);
    assert_eq!(points(&all, "n"), n);
    assert_eq!(points(&all, "f"), f);
    assert_eq!(
        history(a, "pump", "keys=n").await,
        json!({"n": json!(n.iter().map(|(ts, v)| json!({"ts": ts, "value": v})).collect::<Vec<_>>())})
    );
    // A key without data is there, empty.
    let some = history(a, "pump", "keys=n,nothing").await;
    assert_eq!(some["nothing"], json!([]));
    assert_eq!(points(&some, "n").len(), 50);

    // limit: the oldest; with order=desc the newest, still ascending.
    assert_eq!(
        points(&history(a, "pump", "keys=n&limit=10").await, "n"),
        n[..10]
    );
    assert_eq!(
        points(&history(a, "pump", "keys=n&limit=10&order=asc").await, "n"),
        n[..10]
    );
    assert_eq!(
        points(&history(a, "pump", "keys=n&limit=10&order=desc").await, "n"),
        n[40..]
    );
    // Per key: both keys get their own limit.
    let both = history(a, "pump", "keys=n,f&limit=3&order=desc").await;
    assert_eq!(points(&both, "n"), n[47..]);
    assert_eq!(points(&both, "f"), f[47..]);

    // from is inclusive, to exclusive; ms or RFC 3339 (any offset).
    let (from, to) = (T0 + 5_000, T0 + 15_000);
    assert_eq!(
        points(
            &history(a, "pump", &format!("keys=n&from={from}&to={to}")).await,
            "n"
        ),
        n[5..15]
    );
    for (start, end) in [
        ("2023-11-14T22:13:25Z", "2023-11-14T22:13:35Z"),
        ("2023-11-14T22:13:25.000Z", "2023-11-14T23:13:35%2B01:00"),
    ] {
        assert_eq!(
            points(
                &history(a, "pump", &format!("keys=n&from={start}&to={end}")).await,
                "n"
            ),
            n[5..15],
            "{start} {end}"
        );
    }
    assert_eq!(
        points(
            &history(
                a,
                "pump",
                &format!("keys=n&from={from}&to={to}&order=desc&limit=3")
            )
            .await,
            "n"
        ),
        n[12..15]
    );
    assert_eq!(
        points(
            &history(a, "pump", &format!("keys=n&from={from}&to={to}&limit=2")).await,
            "n"
        ),
        n[5..7]
    );
    // Only from, only to.
    assert_eq!(
        points(
            &history(a, "pump", &format!("keys=n&from={}", T0 + 45_000)).await,
            "n"
        ),
        n[45..]
    );
    assert_eq!(
        points(
            &history(a, "pump", &format!("keys=n&to={}", T0 + 1)).await,
            "n"
        ),
        n[..1]
    );
    assert_eq!(
        history(a, "pump", &format!("keys=n&to={T0}")).await,
        json!({"n": []})
    );

    // Refusals name the parameter.
    for (query, field) in [
        ("limit=0", Some("limit")),
        ("limit=100001", Some("limit")),
        ("limit=-1", Some("limit")),
        ("limit=ten", Some("limit")),
        ("order=sideways", Some("order")),
        ("agg=avg&interval=0s", Some("interval")),
        ("agg=avg&interval=1y", Some("interval")),
        ("agg=median", Some("agg")),
        ("from=yesterday", Some("from")),
        ("to=soon", Some("to")),
    ] {
        let r = w
            .admin
            .get(&format!("/api/v1/devices/pump/telemetry?{query}"))
            .await;
        r.assert_problem(400);
        if let Some(field) = field {
            assert_eq!(r.json["field"], field, "{query}: {}", r.text);
        }
    }
    // Accepted, not refused, since each parameter is valid alone: a range
    // that ends before it starts holds nothing, `interval` without `agg` is
    // ignored, and `keys=,` names no key, so all are read.
    for reversed in [
        format!("from={to}&to={from}"),
        format!("from={from}&to={from}"),
    ] {
        let r = history(a, "pump", &format!("keys=n&{reversed}")).await;
        assert!(
            r["n"].as_array().is_none_or(|p| p.is_empty()),
            "{reversed}: {r}"
        );
    }
    assert_eq!(
        history(a, "pump", "keys=n&interval=1m").await,
        history(a, "pump", "keys=n").await
    );
    assert_eq!(
        history(a, "pump", "keys=,").await,
        history(a, "pump", "").await
    );
    assert_eq!(
        points(&history(a, "pump", "keys=n&limit=100000").await, "n"),
        n
    );
    // Devices that do not exist.
    for path in [
        "/api/v1/devices/nobody/telemetry",
        "/api/v1/devices/nobody/telemetry/latest",
        "/api/v1/devices/nobody/telemetry/keys",
        "/api/v1/devices/nobody/events",
    ] {
        w.admin.get(path).await.assert_problem(404);
    }
    w.s.stop().await;
}

#[tokio::test]
async fn the_default_limit_is_1000_points_per_key() {
    let w = World::start().await;
    let many: Vec<(i64, Value)> = (0..1500).map(|i| (T0 + i, json!(i))).collect();
    ingest_ok(&w.s, &w.pump, timestamped("many", &many)).await;
    let got = points(&history(&w.admin, "pump", "").await, "many");
    assert_eq!(got, many[..1000]);
    let got = points(&history(&w.admin, "pump", "order=desc").await, "many");
    assert_eq!(got, many[500..]);
    let got = points(&history(&w.admin, "pump", "limit=100000").await, "many");
    assert_eq!(got, many);
    w.s.stop().await;
}

/// The value of reading `i` of key `v`: quarters, so sums are exact.
fn v_value(i: i64) -> f64 {
    ((i * 37) % 101) as f64 / 4.0 - 5.0
}

/// Reading `i`'s time: uneven, increasing, five seconds a slot.
fn v_ts(i: i64) -> i64 {
    T0 + i * 5_000 + (i * 7_919) % 3_000
}

/// Slots 60..72 (a minute) are left empty.
fn v_indices() -> impl Iterator<Item = i64> {
    (0..120).filter(|i| !(60..72).contains(i))
}

/// Every aggregate over `[from + k·interval, …)` buckets, computed here.
fn expected_buckets(
    pts: &BTreeMap<i64, f64>,
    from: i64,
    to: i64,
    interval: i64,
) -> BTreeMap<i64, Vec<f64>> {
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (ts, v) in pts.range(from..to) {
        let start = from + (ts - from) / interval * interval;
        buckets.entry(start).or_default().push(*v);
    }
    buckets
}

fn aggregate(agg: &str, vals: &[f64]) -> f64 {
    match agg {
        "avg" => vals.iter().sum::<f64>() / vals.len() as f64,
        "min" => vals.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "sum" => vals.iter().sum(),
        "count" => vals.len() as f64,
        "first" => vals[0],
        "last" => vals[vals.len() - 1],
        other => panic!("{other}"),
    }
}

/// Compares an aggregate answer with what this test computed.
fn assert_agg(what: &str, got: &[(i64, Value)], want: &BTreeMap<i64, Vec<f64>>, agg: &str) {
    let got_ts: Vec<i64> = got.iter().map(|p| p.0).collect();
    let want_ts: Vec<i64> = want.keys().copied().collect();
    assert_eq!(got_ts, want_ts, "{what} {agg}: bucket starts");
    for ((ts, value), vals) in got.iter().zip(want.values()) {
        let expected = aggregate(agg, vals);
        let v = value
            .as_f64()
            .unwrap_or_else(|| panic!("{what} {agg} @{ts}: {value}"));
        assert!(
            (v - expected).abs() <= 1e-9 * expected.abs().max(1.0),
            "{what} {agg} @{ts}: got {v}, computed {expected}"
        );
        // Whole numbers come back as integers.
        assert_eq!(
            value.is_i64() || value.is_u64(),
            expected.fract() == 0.0,
            "{what} {agg} @{ts}: {value}"
        );
    }
}

async fn check_aggregates(api: &Api, what: &str, v: &BTreeMap<i64, f64>, b: &BTreeMap<i64, f64>) {
    // Buckets start at `from`, not at a round minute; `to` cuts the last.
    let from = T0 + 7_000;
    let to = T0 + 9 * 60_000 + 30_000;
    let want = expected_buckets(v, from, to, 60_000);
    assert!(want.len() >= 8, "the gap leaves a bucket empty: {want:?}");
    for agg in ["avg", "min", "max", "sum", "count", "first", "last"] {
        let answer = history(
            api,
            "pump",
            &format!("keys=v&from={from}&to={to}&agg={agg}&interval=1m"),
        )
        .await;
        assert_agg(what, &points(&answer, "v"), &want, agg);
        // Without an interval: one bucket over the whole range, at `from`.
        let answer = history(
            api,
            "pump",
            &format!("keys=v&from={from}&to={to}&agg={agg}"),
        )
        .await;
        let whole: BTreeMap<i64, Vec<f64>> =
            [(from, v.range(from..to).map(|(_, x)| *x).collect())].into();
        assert_agg(what, &points(&answer, "v"), &whole, agg);
    }
    // The same width written three ways; a width over the range is one bucket.
    let avg = |interval: &str| format!("keys=v&from={from}&to={to}&agg=avg&interval={interval}");
    let one_minute = history(api, "pump", &avg("1m")).await;
    assert_eq!(history(api, "pump", &avg("60s")).await, one_minute);
    assert_eq!(history(api, "pump", &avg("60000")).await, one_minute);
    let wide = expected_buckets(v, from, to, 3_600_000);
    assert_agg(
        what,
        &points(&history(api, "pump", &avg("1h")).await, "v"),
        &wide,
        "avg",
    );
    // 30-second buckets.
    let answer = history(
        api,
        "pump",
        &format!("keys=v&from={from}&to={to}&agg=max&interval=30s"),
    )
    .await;
    assert_agg(
        what,
        &points(&answer, "v"),
        &expected_buckets(v, from, to, 30_000),
        "max",
    );
    // Booleans count as 0 and 1; strings have no aggregate.
    let answer = history(
        api,
        "pump",
        &format!("keys=b,s&from={from}&to={to}&agg=sum"),
    )
    .await;
    let trues = b.range(from..to).filter(|(_, x)| **x == 1.0).count();
    assert_eq!(points(&answer, "b"), [(from, json!(trues))], "{what}");
    assert_eq!(answer["s"], json!([]), "{what}");
    let answer = history(
        api,
        "pump",
        &format!("keys=b&from={from}&to={to}&agg=avg&interval=1m"),
    )
    .await;
    assert_agg(
        what,
        &points(&answer, "b"),
        &expected_buckets(b, from, to, 60_000),
        "avg",
    );
}

#[tokio::test]
async fn aggregates_match_values_computed_here() {
    // Half the readings are sealed into chunks before the other half
    // arrives, interleaved, with some sealed readings rewritten (same ts,
    // new value: the later write wins and counts once).
    let w = World::with(sealing_quickly()).await;
    let mut v: BTreeMap<i64, f64> = BTreeMap::new();
    let mut b: BTreeMap<i64, f64> = BTreeMap::new();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for i in v_indices() {
        let (ts, x) = (v_ts(i), v_value(i));
        if i % 2 == 0 {
            first.push((ts, json!(x)));
        } else {
            second.push((ts, json!(x)));
        }
        v.insert(ts, x);
    }
    for i in (0..120).step_by(10) {
        if v.contains_key(&v_ts(i)) {
            let x = v_value(i) + 100.0;
            second.push((v_ts(i), json!(x)));
            v.insert(v_ts(i), x);
        }
    }
    let bools: Vec<(i64, Value)> = (0..120)
        .map(|i| {
            b.insert(T0 + i * 5_000, f64::from(i % 3 == 0));
            (T0 + i * 5_000, json!(i % 3 == 0))
        })
        .collect();
    let strings: Vec<(i64, Value)> = (0..10)
        .map(|i| (T0 + i * 60_000, json!(format!("s{i}"))))
        .collect();

    let sealed = chunks_sealed(&w.s).await;
    ingest_ok(&w.s, &w.pump, timestamped("v", &first)).await;
    ingest_ok(&w.s, &w.pump, timestamped("b", &bools)).await;
    ingest_ok(&w.s, &w.pump, timestamped("s", &strings)).await;
    wait_sealed(&w.s, sealed + 3.0).await;
    let sealed = chunks_sealed(&w.s).await;
    ingest_ok(&w.s, &w.pump, timestamped("v", &second)).await;

    // Raw: every ts once, with its newest value.
    let raw: Vec<(i64, Value)> = v.iter().map(|(ts, x)| (*ts, json!(x))).collect();
    let got = points(&history(&w.admin, "pump", "keys=v&limit=100000").await, "v");
    assert_eq!(ts_of(&got), ts_of(&raw));
    for ((ts, g), (_, want)) in got.iter().zip(&raw) {
        assert_eq!(g.as_f64(), want.as_f64(), "@{ts}");
    }
    check_aggregates(&w.admin, "chunks + memory", &v, &b).await;
    // Once the second half is sealed too (merged into the chunks).
    wait_sealed(&w.s, sealed + 1.0).await;
    check_aggregates(&w.admin, "chunks only", &v, &b).await;
    let again = points(&history(&w.admin, "pump", "keys=v&limit=100000").await, "v");
    assert_eq!(again, got);
    w.s.stop().await;
}

#[tokio::test]
async fn latest_and_keys() {
    let w = World::with(sealing_quickly()).await;
    create_device(&w.admin, "quiet").await;
    // Sent out of order: latest is by time, not by arrival.
    ingest_ok(
        &w.s,
        &w.pump,
        format!(r#"{{"ts": {}, "values": {{"a": 5}}}}"#, T0 + 5_000),
    )
    .await;
    ingest_ok(
        &w.s,
        &w.pump,
        format!(
            r#"{{"ts": {}, "values": {{"a": 1, "b": "x", "c": {{"d": true}}}}}}"#,
            T0 + 1_000
        ),
    )
    .await;
    let want = json!({
        "a": {"ts": T0 + 5_000, "value": 5},
        "b": {"ts": T0 + 1_000, "value": "x"},
        "c.d": {"ts": T0 + 1_000, "value": true},
    });
    assert_eq!(latest(&w.admin, "").await, want);
    assert_eq!(
        latest(&w.admin, "?keys=b,c.d").await,
        json!({"b": want["b"], "c.d": want["c.d"]})
    );
    assert_eq!(latest(&w.admin, "?keys=zzz").await, json!({}));
    assert_eq!(
        w.admin
            .get("/api/v1/devices/pump/telemetry/keys")
            .await
            .json,
        json!(["a", "b", "c.d"])
    );
    // Once sealed: an older point does not become the latest; the same ts
    // sent again replaces the value (the later write wins).
    wait_sealed(&w.s, 3.0).await;
    ingest_ok(
        &w.s,
        &w.pump,
        format!(r#"{{"ts": {}, "values": {{"a": 0}}}}"#, T0),
    )
    .await;
    assert_eq!(
        latest(&w.admin, "?keys=a").await,
        json!({"a": {"ts": T0 + 5_000, "value": 5}})
    );
    ingest_ok(
        &w.s,
        &w.pump,
        format!(r#"{{"ts": {}, "values": {{"a": 55}}}}"#, T0 + 5_000),
    )
    .await;
    assert_eq!(
        latest(&w.admin, "?keys=a").await,
        json!({"a": {"ts": T0 + 5_000, "value": 55}})
    );
    let want_a = vec![
        (T0, json!(0)),
        (T0 + 1_000, json!(1)),
        (T0 + 5_000, json!(55)),
    ];
    assert_eq!(
        points(&history(&w.admin, "pump", "keys=a").await, "a"),
        want_a
    );
    wait_sealed(&w.s, 4.0).await;
    assert_eq!(
        latest(&w.admin, "?keys=a").await,
        json!({"a": {"ts": T0 + 5_000, "value": 55}})
    );
    assert_eq!(
        points(&history(&w.admin, "pump", "keys=a").await, "a"),
        want_a
    );
    // A device without data.
    assert_eq!(history(&w.admin, "quiet", "").await, json!({}));
    assert_eq!(
        w.admin
            .get("/api/v1/devices/quiet/telemetry/latest")
            .await
            .json,
        json!({})
    );
    assert_eq!(
        w.admin
            .get("/api/v1/devices/quiet/telemetry/keys")
            .await
            .json,
        json!([])
    );
    w.s.stop().await;
}

#[tokio::test]
async fn one_key_across_devices() {
    let w = World::start().await;
    let mut tokens = BTreeMap::new();
    for d in ["d1", "d2", "d3", "d4"] {
        tokens.insert(d, create_device(&w.admin, d).await);
    }
    let temps = |base: i64| -> Vec<(i64, Value)> {
        (0..6).map(|i| (T0 + i * 30_000, json!(base + i))).collect()
    };
    ingest_ok(&w.s, &tokens["d1"], timestamped("temp", &temps(10))).await;
    ingest_ok(&w.s, &tokens["d2"], timestamped("temp", &temps(20))).await;
    // d3 has other keys only; d4 nothing at all.
    ingest_ok(&w.s, &tokens["d3"], timestamped("hum", &temps(30))).await;
    let across = |q: &str| {
        let q = q.to_owned();
        let api = w.admin.clone();
        async move { across(&api, &q).await }
    };
    let all = across("key=temp").await;
    assert_eq!(
        all.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["d1", "d2"],
        "devices without points are left out: {all}"
    );
    assert_eq!(points(&all, "d1"), temps(10));
    assert_eq!(points(&all, "d2"), temps(20));
    let some = across("key=temp&devices=d1,d3,d4,ghost,bad%2Fid").await;
    assert_eq!(some, json!({"d1": all["d1"]}));
    assert_eq!(across("key=hum").await, json!({"d3": all_of(&temps(30))}));
    // Limits and order per device.
    let newest = across("key=temp&limit=1&order=desc").await;
    assert_eq!(points(&newest, "d1"), temps(10)[5..]);
    assert_eq!(points(&newest, "d2"), temps(20)[5..]);
    // Aggregates per device: minutes of two points each.
    let per_minute = across(&format!(
        "key=temp&from={T0}&to={}&agg=sum&interval=1m",
        T0 + 3_600_000
    ))
    .await;
    assert_eq!(
        per_minute,
        json!({
            "d1": [{"ts": T0, "value": 21}, {"ts": T0 + 60_000, "value": 25}, {"ts": T0 + 120_000, "value": 29}],
            "d2": [{"ts": T0, "value": 41}, {"ts": T0 + 60_000, "value": 45}, {"ts": T0 + 120_000, "value": 49}],
        })
    );
    let cut = across(&format!("key=temp&from={}&to={}", T0 + 60_000, T0 + 90_000)).await;
    assert_eq!(
        cut,
        json!({"d1": [{"ts": T0 + 60_000, "value": 12}], "d2": [{"ts": T0 + 60_000, "value": 22}]})
    );
    assert_eq!(across("key=nothing").await, json!({}));
    w.admin.get("/api/v1/telemetry").await.assert_problem(400);
    // Minutes since 2023 up to a day from now: too many buckets to answer.
    w.admin
        .get(&format!(
            "/api/v1/telemetry?key=temp&from={T0}&agg=sum&interval=1m"
        ))
        .await
        .assert_problem(400);
    // `interval` without `agg` is ignored: raw points.
    assert_eq!(
        w.admin
            .get("/api/v1/telemetry?key=temp&interval=1m")
            .await
            .json,
        across("key=temp").await
    );
    w.s.stop().await;
}

/// `GET /api/v1/devices/pump/telemetry/latest{q}`, which must answer 200.
async fn latest(api: &Api, q: &str) -> Value {
    let r = api
        .get(&format!("/api/v1/devices/pump/telemetry/latest{q}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

/// `GET /api/v1/telemetry?{q}`, which must answer 200.
async fn across(api: &Api, q: &str) -> Value {
    let r = api.get(&format!("/api/v1/telemetry?{q}")).await;
    assert_eq!(r.status, 200, "{q}: {}", r.text);
    r.json
}

fn all_of(pts: &[(i64, Value)]) -> Value {
    json!(
        pts.iter()
            .map(|(ts, v)| json!({"ts": ts, "value": v}))
            .collect::<Vec<_>>()
    )
}

#[tokio::test]
async fn events_are_paged_with_a_cursor() {
    let w = World::start().await;
    for i in 0..25 {
        let event_type = if i % 3 == 0 { "b" } else { "a" };
        let r = ingest_event(
            &w.s,
            &w.pump,
            event_type,
            json!({"i": i}).to_string().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let ids = |items: &[Value]| -> Vec<i64> {
        items
            .iter()
            .map(|e| e["payload"]["i"].as_i64().unwrap())
            .collect()
    };
    let (all, sizes) = walk(&w.admin, "limit=1000").await;
    assert_eq!(sizes, [25]);
    assert_eq!(ids(&all), (0..25).collect::<Vec<_>>(), "oldest first");
    let (paged, sizes) = walk(&w.admin, "limit=10").await;
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(paged, all, "pages add up to the whole");
    let (bs, sizes) = walk(&w.admin, "type=b&limit=4").await;
    assert_eq!(sizes, [4, 4, 1]);
    assert_eq!(ids(&bs), [0, 3, 6, 9, 12, 15, 18, 21, 24]);
    assert!(bs.iter().all(|e| e["type"] == "b"));
    let (exact, sizes) = walk(&w.admin, "limit=25").await;
    assert_eq!(
        (sizes, exact.len()),
        (vec![25], 25),
        "no empty page after a full one"
    );
    // A time cut: from inclusive, to exclusive, by the events' own times.
    let (from, to) = (
        all[10]["ts"].as_i64().unwrap(),
        all[20]["ts"].as_i64().unwrap(),
    );
    let r = w
        .admin
        .get(&format!("/api/v1/devices/pump/events?from={from}&to={to}"))
        .await;
    let want: Vec<&Value> = all
        .iter()
        .filter(|e| (from..to).contains(&e["ts"].as_i64().unwrap()))
        .collect();
    let got: Vec<&Value> = r.json["items"].as_array().unwrap().iter().collect();
    assert_eq!(got, want);
    for (q, field) in [
        ("cursor=%%%", "cursor"),
        ("cursor=bm90LWEtbnVtYmVy", "cursor"),
        ("cursor=12x", "cursor"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("from=never", "from"),
    ] {
        let r = w
            .admin
            .get(&format!("/api/v1/devices/pump/events?{q}"))
            .await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], field, "{q}: {}", r.text);
    }
    w.s.stop().await;
}

/// Follows `next_cursor` through device pump's events to the end; returns
/// the items and the page sizes.
async fn walk(api: &Api, query: &str) -> (Vec<Value>, Vec<usize>) {
    let (mut items, mut sizes, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/devices/pump/events?{query}&cursor={c}"),
            None => format!("/api/v1/devices/pump/events?{query}"),
        };
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let page = r.json["items"].as_array().unwrap().clone();
        sizes.push(page.len());
        items.extend(page);
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, sizes),
        }
    }
}

/// Parses RFC 4180 CSV (quoted fields, CRLF rows) into rows of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "CSV ends with CRLF");
    rows
}

#[tokio::test]
async fn the_export_carries_exactly_what_was_sent() {
    let w = World::start().await;
    let other = create_device(&w.admin, "other").await;
    let sent_pump = format!(
        r#"[{{"ts": {T0}, "values": {{"temp": 21.5, "on": true, "note": "a, \"quoted\"\nline"}}}},
            {{"ts": {}, "values": {{"temp": 22, "on": false}}}}]"#,
        T0 + 1_000
    );
    ingest_ok(&w.s, &w.pump, &sent_pump).await;
    ingest_ok(
        &w.s,
        &other,
        format!(r#"{{"ts": {}, "values": {{"level": -3.25}}}}"#, T0 + 2_000),
    )
    .await;
    assert_eq!(
        ingest_event(&w.s, &w.pump, "boot", br#"{"fw": "1.0"}"#)
            .await
            .status,
        204
    );
    assert_eq!(
        ingest_event(&w.s, &other, "note", b"hello, world")
            .await
            .status,
        204
    );
    let first_event = |device: &str| format!("/api/v1/devices/{device}/events");
    let boot = w.admin.get(&first_event("pump")).await.json["items"][0].clone();
    let note = w.admin.get(&first_event("other")).await.json["items"][0].clone();

    // NDJSON: every point, then every event.
    let r = w.admin.get("/api/v1/export").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.content_type, "application/x-ndjson");
    let lines: Vec<Value> = r
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let tel = |device: &str, key: &str, ts: i64, value: Value| json!({"kind": "telemetry", "device": device, "key": key, "ts": ts, "value": value});
    let mut want_points = vec![
        tel("pump", "temp", T0, json!(21.5)),
        tel("pump", "temp", T0 + 1_000, json!(22)),
        tel("pump", "on", T0, json!(true)),
        tel("pump", "on", T0 + 1_000, json!(false)),
        tel("pump", "note", T0, json!("a, \"quoted\"\nline")),
        tel("other", "level", T0 + 2_000, json!(-3.25)),
    ];
    let event_line = |e: &Value| {
        let mut e = e.clone();
        e["kind"] = json!("event");
        e
    };
    let mut want_events = vec![event_line(&boot), event_line(&note)];
    let split = lines
        .iter()
        .position(|l| l["kind"] == "event")
        .unwrap_or(lines.len());
    assert!(
        lines[split..].iter().all(|l| l["kind"] == "event"),
        "telemetry first, then events: {}",
        r.text
    );
    let sort = |v: &mut Vec<Value>| v.sort_by_key(|x| x.to_string());
    let (mut got_points, mut got_events) = (lines[..split].to_vec(), lines[split..].to_vec());
    for v in [
        &mut want_points,
        &mut got_points,
        &mut want_events,
        &mut got_events,
    ] {
        sort(v);
    }
    assert_eq!(got_points, want_points);
    assert_eq!(got_events, want_events);
    // A time cut: events were stamped now, so they fall outside.
    let r = w
        .admin
        .get(&format!(
            "/api/v1/export?from={}&to={}",
            T0 + 1_000,
            T0 + 2_000
        ))
        .await;
    let mut cut: Vec<Value> = r
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    sort(&mut cut);
    let mut want_cut = vec![
        tel("pump", "temp", T0 + 1_000, json!(22)),
        tel("pump", "on", T0 + 1_000, json!(false)),
    ];
    sort(&mut want_cut);
    assert_eq!(cut, want_cut);

    // CSV: the same records, quoted where needed.
    let r = w.admin.get("/api/v1/export?format=csv").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type.starts_with("text/csv"), "{}", r.content_type);
    let rows = parse_csv(&r.text);
    assert_eq!(rows[0], ["kind", "device", "name", "ts", "value"]);
    let mut got: Vec<Vec<String>> = rows[1..].to_vec();
    let row = |kind: &str, device: &str, name: &str, ts: i64, value: &str| {
        vec![
            kind.into(),
            device.into(),
            name.into(),
            ts.to_string(),
            value.into(),
        ]
    };
    let mut want = vec![
        row("telemetry", "pump", "temp", T0, "21.5"),
        row("telemetry", "pump", "temp", T0 + 1_000, "22"),
        row("telemetry", "pump", "on", T0, "true"),
        row("telemetry", "pump", "on", T0 + 1_000, "false"),
        row("telemetry", "pump", "note", T0, "a, \"quoted\"\nline"),
        row("telemetry", "other", "level", T0 + 2_000, "-3.25"),
        row(
            "event",
            "pump",
            "boot",
            boot["ts"].as_i64().unwrap(),
            r#"{"fw": "1.0"}"#,
        ),
        row(
            "event",
            "other",
            "note",
            note["ts"].as_i64().unwrap(),
            "hello, world",
        ),
    ];
    let split = got.iter().position(|r| r[0] == "event").unwrap();
    assert!(
        got[split..].iter().all(|r| r[0] == "event"),
        "telemetry first"
    );
    got.sort();
    want.sort();
    assert_eq!(got, want);

    w.admin
        .get("/api/v1/export?format=xml")
        .await
        .assert_problem(400);
    w.s.stop().await;
}

#[tokio::test]
async fn another_tenant_sees_none_of_it() {
    let w = World::start().await;
    ingest_ok(
        &w.s,
        &w.pump,
        format!(r#"{{"ts": {T0}, "values": {{"temp": 1}}}}"#),
    )
    .await;
    assert_eq!(ingest_event(&w.s, &w.pump, "boot", b"x").await.status, 204);
    let beta = tenant_with_owner(&w.s, &w.admin, "beta").await;
    for path in [
        "/api/v1/devices/pump/telemetry",
        "/api/v1/devices/pump/telemetry?keys=temp",
        "/api/v1/devices/pump/telemetry/latest",
        "/api/v1/devices/pump/telemetry/keys",
        "/api/v1/devices/pump/events",
    ] {
        beta.get(path).await.assert_problem(404);
    }
    assert_eq!(beta.get("/api/v1/telemetry?key=temp").await.json, json!({}));
    assert_eq!(
        beta.get("/api/v1/telemetry?key=temp&devices=pump")
            .await
            .json,
        json!({})
    );
    let r = beta.get("/api/v1/export").await;
    assert_eq!((r.status, r.text.as_str()), (200, ""));
    let r = beta.get("/api/v1/export?format=csv").await;
    assert_eq!(r.text, "kind,device,name,ts,value\r\n");

    // Beta's own device of the same name is its own.
    let beta_pump = create_device(&beta, "pump").await;
    ingest_ok(
        &w.s,
        &beta_pump,
        format!(r#"{{"ts": {T0}, "values": {{"temp": 999}}}}"#),
    )
    .await;
    let mine = json!({"temp": [{"ts": T0, "value": 999}]});
    assert_eq!(history(&beta, "pump", "").await, mine);
    assert_eq!(
        history(&w.admin.clone().with_header("X-Tenant", "beta"), "pump", "").await,
        mine,
        "the admin, acting in beta"
    );
    assert_eq!(
        history(&w.admin, "pump", "").await,
        json!({"temp": [{"ts": T0, "value": 1}]})
    );
    assert_eq!(
        beta.get("/api/v1/devices/pump/events").await.json["items"],
        json!([])
    );
    let r = beta.get("/api/v1/export").await;
    assert_eq!(r.text.lines().count(), 1, "{}", r.text);
    w.s.stop().await;
}
