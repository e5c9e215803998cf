//! Builder → bytes → chunk → points equals the sorted, deduplicated input.

use std::collections::BTreeMap;

use ferrule_tsdb::chunk::ValueEncoding;
use ferrule_tsdb::{Chunk, ChunkBuilder, ChunkError, Kind, Value};
use proptest::prelude::*;

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        // Dense: many duplicates.
        -40i64..40,
        // Realistic epoch milliseconds.
        1_700_000_000_000i64..1_700_000_200_000,
        // Anything, including the extremes (wrapping deltas).
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-300i64..300).prop_map(|m| 21.0 + m as f64 / 10.0),
        (-1_000_000i64..1_000_000).prop_map(|m| m as f64 / 1000.0),
        any::<i64>().prop_map(|m| m as f64),
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            9_007_199_254_740_993.0,
            0.1,
            0.30000000000000004,
            1e15,
            123_456.789_012_345,
        ]),
    ]
}

/// Sorted, deduplicated (last write wins) reference.
fn reference<V: Clone>(points: &[(i64, V)]) -> BTreeMap<i64, V> {
    let mut m = BTreeMap::new();
    for (t, v) in points {
        m.insert(*t, v.clone());
    }
    m
}

fn reload(chunk: &Chunk) -> Chunk {
    let again = Chunk::from_bytes(chunk.as_bytes()).expect("own output loads");
    assert_eq!(again.header(), chunk.header());
    again.validate().expect("own output validates");
    again
}

/// Converts decoded points to comparable owned form (floats by bits).
fn decoded(chunk: &Chunk, range: Option<(i64, i64)>) -> Vec<(i64, String)> {
    let points = match range {
        Some((from, to)) => chunk.range(from, to),
        None => chunk.iter(),
    };
    points
        .map(|p| {
            let (t, v) = p.expect("valid data");
            (t, show(v))
        })
        .collect()
}

fn show(v: Value<'_>) -> String {
    match v {
        Value::F64(x) => format!("f{:016x}", x.to_bits()),
        Value::Bool(b) => format!("b{b}"),
        Value::Str(s) => format!("s{s}"),
    }
}

fn check_all_ranges(chunk: &Chunk, expect: &[(i64, String)], cuts: (i64, i64)) {
    assert_eq!(decoded(chunk, None), expect);
    let all: Vec<_> = chunk.iter().collect::<Result<Vec<_>, _>>().expect("valid");
    assert_eq!(all.len(), chunk.len());
    let (a, b) = (cuts.0.min(cuts.1), cuts.0.max(cuts.1));
    let want: Vec<_> = expect
        .iter()
        .filter(|(t, _)| *t >= a && *t < b)
        .cloned()
        .collect();
    assert_eq!(decoded(chunk, Some((a, b))), want);
    let (first, last) = (&expect[0], &expect[expect.len() - 1]);
    assert_eq!(chunk.min_ts(), first.0);
    assert_eq!(chunk.max_ts(), last.0);
    assert_eq!(show(chunk.first_value()), first.1);
    assert_eq!(show(chunk.last_value()), last.1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn f64_round_trip(
        points in prop::collection::vec((timestamp(), float()), 1..300),
        cuts in (timestamp(), timestamp()),
    ) {
        let mut b = ChunkBuilder::new(Kind::F64);
        for &(t, v) in &points {
            b.push_f64(t, v).unwrap();
        }
        let chunk = reload(&b.finish().unwrap());
        let expect: Vec<(i64, String)> = reference(&points)
            .into_iter()
            .map(|(t, v)| (t, show(Value::F64(v))))
            .collect();
        prop_assert_eq!(chunk.len(), expect.len());
        check_all_ranges(&chunk, &expect, cuts);
    }

    /// Series whose values come from a narrow decimal set, so that the
    /// decimal and constant encodings get exercised with all timestamp kinds.
    #[test]
    fn f64_decimal_round_trip(
        points in prop::collection::vec(
            (timestamp(), prop::sample::select(vec![21.5, 21.6, 21.4, -3.25, 0.0, 1e-3])),
            1..300,
        ),
        cuts in (timestamp(), timestamp()),
    ) {
        let mut b = ChunkBuilder::new(Kind::F64);
        for &(t, v) in &points {
            b.push(t, Value::F64(v)).unwrap();
        }
        let chunk = reload(&b.finish().unwrap());
        let expect: Vec<(i64, String)> = reference(&points)
            .into_iter()
            .map(|(t, v)| (t, show(Value::F64(v))))
            .collect();
        let constant = expect.iter().all(|(_, v)| *v == expect[0].1);
        prop_assert_eq!(chunk.value_encoding() == ValueEncoding::Constant, constant);
        check_all_ranges(&chunk, &expect, cuts);
    }

    #[test]
    fn bool_round_trip(
        points in prop::collection::vec((timestamp(), any::<bool>()), 1..400),
        runs in prop::collection::vec((1usize..200, any::<bool>()), 1..20),
        cuts in (timestamp(), timestamp()),
    ) {
        // Random points, and long runs (run-length mode).
        let runs: Vec<(i64, bool)> = runs
            .iter()
            .flat_map(|&(n, b)| std::iter::repeat_n(b, n))
            .enumerate()
            .map(|(i, b)| (i as i64 * 1000, b))
            .collect();
        for pts in [&points, &runs] {
            let mut b = ChunkBuilder::new(Kind::Bool);
            for &(t, v) in pts.iter() {
                b.push_bool(t, v).unwrap();
            }
            let chunk = reload(&b.finish().unwrap());
            let expect: Vec<(i64, String)> = reference(pts)
                .into_iter()
                .map(|(t, v)| (t, show(Value::Bool(v))))
                .collect();
            check_all_ranges(&chunk, &expect, cuts);
        }
    }

    #[test]
    fn str_round_trip(
        points in prop::collection::vec(
            (timestamp(), prop_oneof![
                prop::sample::select(vec!["on", "off", "idle", "", "ünïcødé ✓"]).prop_map(String::from),
                ".{0,12}",
            ]),
            1..300,
        ),
        cuts in (timestamp(), timestamp()),
    ) {
        let mut b = ChunkBuilder::new(Kind::Str);
        for (t, v) in &points {
            b.push_str(*t, v).unwrap();
        }
        let chunk = reload(&b.finish().unwrap());
        let expect: Vec<(i64, String)> = reference(&points)
            .into_iter()
            .map(|(t, v)| (t, show(Value::Str(&v))))
            .collect();
        check_all_ranges(&chunk, &expect, cuts);
    }
}

#[test]
fn non_finite_floats_are_rejected() {
    let mut b = ChunkBuilder::new(Kind::F64);
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -f64::NAN] {
        assert_eq!(b.push_f64(7, v), Err(ChunkError::NonFinite { ts: 7 }));
    }
    assert!(b.is_empty());
    assert_eq!(b.finish().unwrap_err(), ChunkError::Empty);
}

#[test]
fn kind_mismatch_and_empty() {
    let mut b = ChunkBuilder::new(Kind::Bool);
    assert!(matches!(
        b.push(1, Value::F64(1.0)),
        Err(ChunkError::KindMismatch {
            expected: Kind::Bool,
            found: Kind::F64
        })
    ));
    assert!(b.push_str(1, "x").is_err());
    assert_eq!(
        ChunkBuilder::new(Kind::Str).finish_bytes(),
        Err(ChunkError::Empty)
    );
}

#[test]
fn last_write_wins_and_encodings_are_picked() {
    let mut b = ChunkBuilder::new(Kind::F64);
    b.push_f64(2000, 1.0).unwrap();
    b.push_f64(1000, 5.0).unwrap();
    b.push_f64(2000, 2.5).unwrap();
    b.push_f64(0, 4.0).unwrap();
    let c = b.finish().unwrap();
    let pts: Vec<_> = c.iter().map(Result::unwrap).collect();
    assert_eq!(
        pts,
        vec![
            (0, Value::F64(4.0)),
            (1000, Value::F64(5.0)),
            (2000, Value::F64(2.5))
        ]
    );

    let mut b = ChunkBuilder::new(Kind::F64);
    for i in 0..200 {
        b.push_f64(i * 1000, 21.0 + (i % 7) as f64 / 10.0).unwrap();
    }
    assert_eq!(
        b.finish().unwrap().value_encoding(),
        ValueEncoding::Decimal {
            scale: 1,
            delta_of_delta: false
        }
    );

    let mut b = ChunkBuilder::new(Kind::F64);
    for i in 0..100 {
        b.push_f64(i * 1000, 7.25).unwrap();
    }
    assert_eq!(
        b.finish().unwrap().value_encoding(),
        ValueEncoding::Constant
    );

    let mut b = ChunkBuilder::new(Kind::F64);
    for i in 0..100 {
        b.push_f64(i * 1000, (i as f64).sqrt()).unwrap();
    }
    assert_eq!(b.finish().unwrap().value_encoding(), ValueEncoding::Xor);

    // -0.0 is not representable as a scaled integer; it must survive.
    let mut b = ChunkBuilder::new(Kind::F64);
    b.push_f64(1, -0.0).unwrap();
    b.push_f64(2, 0.5).unwrap();
    let c = b.finish().unwrap();
    let v: Vec<u64> = c
        .iter()
        .map(|p| match p.unwrap().1 {
            Value::F64(x) => x.to_bits(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(v, vec![(-0.0f64).to_bits(), 0.5f64.to_bits()]);

    let mut b = ChunkBuilder::new(Kind::Bool);
    for i in 0..1000 {
        b.push_bool(i, i >= 500).unwrap();
    }
    assert_eq!(
        b.finish().unwrap().value_encoding(),
        ValueEncoding::RunLength
    );
}

#[test]
fn single_point_chunks() {
    for (kind, v) in [
        (Kind::F64, Value::F64(-1.5)),
        (Kind::Bool, Value::Bool(true)),
        (Kind::Str, Value::Str("only")),
    ] {
        for ts in [i64::MIN, -1, 0, i64::MAX] {
            let mut b = ChunkBuilder::new(kind);
            b.push(ts, v).unwrap();
            let c = reload(&b.finish().unwrap());
            let pts: Vec<_> = c.iter().map(Result::unwrap).collect();
            assert_eq!(pts, vec![(ts, v)]);
            assert_eq!((c.min_ts(), c.max_ts()), (ts, ts));
        }
    }
}
