//! Aggregates against a naive computation; header summaries against decoding.

use ferrule_tsdb::{Aggregator, Bucket, Chunk, ChunkBuilder, ChunkError, Kind, crc32c};
use proptest::prelude::*;

/// Splits sorted, distinct points into chunks at the given cut indices.
fn chunks_of(points: &[(i64, f64)], cuts: &[usize], kind: Kind) -> Vec<Chunk> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (points.len() + 1)).collect();
    cuts.push(0);
    cuts.push(points.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| {
            let mut b = ChunkBuilder::new(kind);
            // Push in reverse to exercise the builder's sort.
            for &(t, v) in points[w[0]..w[1]].iter().rev() {
                match kind {
                    Kind::Bool => b.push_bool(t, v != 0.0).unwrap(),
                    _ => b.push_f64(t, v).unwrap(),
                }
            }
            b.finish().unwrap()
        })
        .collect()
}

/// Sorted points with distinct timestamps.
fn sorted_distinct(mut pts: Vec<(i64, f64)>) -> Vec<(i64, f64)> {
    pts.sort_by_key(|p| p.0);
    pts.dedup_by_key(|p| p.0);
    pts
}

fn naive(points: &[(i64, f64)], from: i64, to: i64, bucket: i64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for &(t, v) in points.iter().filter(|p| p.0 >= from && p.0 < to) {
        let start = from + (t - from) / bucket * bucket;
        match out.last_mut() {
            Some(b) if b.start == start => {
                b.count += 1;
                b.sum += v;
                b.min = b.min.min(v);
                b.max = b.max.max(v);
                b.last_ts = t;
                b.last = v;
            }
            _ => out.push(Bucket {
                start,
                count: 1,
                sum: v,
                min: v,
                max: v,
                first_ts: t,
                first: v,
                last_ts: t,
                last: v,
            }),
        }
    }
    out
}

fn run(
    chunks: &[Chunk],
    order: &[usize],
    from: i64,
    to: i64,
    bucket: i64,
    summaries: bool,
) -> Vec<Bucket> {
    let mut agg = Aggregator::new(from, to, bucket).unwrap();
    agg.use_summaries(summaries);
    for &i in order {
        agg.add_chunk(&chunks[i % chunks.len()]).unwrap();
    }
    agg.finish()
}

fn bits(b: &[Bucket]) -> Vec<(i64, u64, [u64; 5], i64, i64)> {
    b.iter()
        .map(|b| {
            (
                b.start,
                b.count,
                [b.sum, b.min, b.max, b.first, b.last].map(f64::to_bits),
                b.first_ts,
                b.last_ts,
            )
        })
        .collect()
}

fn check_close(got: &[Bucket], want: &[Bucket], exact_sum: bool) {
    assert_eq!(got.len(), want.len(), "bucket count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (g.start, g.count, g.first_ts, g.last_ts),
            (w.start, w.count, w.first_ts, w.last_ts)
        );
        assert_eq!(
            [g.min, g.max, g.first, g.last].map(f64::to_bits),
            [w.min, w.max, w.first, w.last].map(f64::to_bits)
        );
        if exact_sum {
            assert_eq!(g.sum, w.sum);
        } else {
            let scale = w.count as f64 * w.min.abs().max(w.max.abs()).max(1.0);
            assert!(
                (g.sum - w.sum).abs() <= scale * 1e-12,
                "{} vs {}",
                g.sum,
                w.sum
            );
        }
        assert!((g.avg() - g.sum / g.count as f64).abs() == 0.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Integer values: sums are exact whatever the association order, so
    /// everything must match the naive computation exactly.
    #[test]
    fn matches_naive_exactly_on_integers(
        raw in prop::collection::vec((-5_000i64..5_000, -1000i64..1000), 1..400),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        from in -6_000i64..6_000,
        len in 1i64..12_000,
        bucket in 1i64..3_000,
        summaries in any::<bool>(),
    ) {
        let points = sorted_distinct(raw.into_iter().map(|(t, v)| (t, v as f64)).collect());
        let chunks = chunks_of(&points, &cuts, Kind::F64);
        let to = from + len;
        // Reverse chunk order: the aggregator must not care.
        let idx: Vec<usize> = (0..chunks.len()).rev().collect();
        let got = run(&chunks, &idx, from, to, bucket, summaries);
        let want = naive(&points, from, to, bucket);
        check_close(&got, &want, true);
        // Per chunk, too (Chunk::aggregate).
        if chunks.len() == 1 {
            let single = chunks[0].aggregate(from, to, bucket).unwrap();
            prop_assert_eq!(bits(&single), bits(&got));
        }
    }

    /// Chunks shared between two aggregators (two threads' shares) and
    /// merged give what the naive computation gives.
    #[test]
    fn merged_aggregators_match_naive(
        raw in prop::collection::vec((-5_000i64..5_000, -1000i64..1000), 1..400),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        split in any::<usize>(),
        from in -6_000i64..6_000,
        len in 1i64..12_000,
        bucket in 1i64..3_000,
    ) {
        let points = sorted_distinct(raw.into_iter().map(|(t, v)| (t, v as f64)).collect());
        let chunks = chunks_of(&points, &cuts, Kind::F64);
        let to = from + len;
        let k = split % (chunks.len() + 1);
        let mut first = Aggregator::new(from, to, bucket).unwrap();
        let mut second = Aggregator::new(from, to, bucket).unwrap();
        for c in &chunks[..k] {
            first.add_chunk(c).unwrap();
        }
        for c in &chunks[k..] {
            second.add_chunk(c).unwrap();
        }
        first.merge(&second).unwrap();
        check_close(&first.finish(), &naive(&points, from, to, bucket), true);
        prop_assert!(Aggregator::new(from, to + 1, bucket).unwrap().merge(&second).is_err());
    }

    /// Arbitrary decimals and full-precision floats: exact except sums, which
    /// may associate differently across chunk boundaries.
    #[test]
    fn matches_naive_on_floats(
        raw in prop::collection::vec(
            (0i64..100_000, prop_oneof![
                (-30_000i64..30_000).prop_map(|m| m as f64 / 100.0),
                -1e6f64..1e6,
            ]),
            1..400,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        from in -10_000i64..100_000,
        len in 1i64..120_000,
        bucket in 1i64..20_000,
    ) {
        let points = sorted_distinct(raw);
        let chunks = chunks_of(&points, &cuts, Kind::F64);
        let idx: Vec<usize> = (0..chunks.len()).collect();
        let got = run(&chunks, &idx, from, from + len, bucket, true);
        check_close(&got, &naive(&points, from, from + len, bucket), false);
    }

    #[test]
    fn bools_aggregate_as_zero_one(
        raw in prop::collection::vec((0i64..20_000, any::<bool>()), 1..400),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        from in -1000i64..20_000,
        len in 1i64..25_000,
        bucket in 1i64..5_000,
        summaries in any::<bool>(),
    ) {
        let points = sorted_distinct(
            raw.into_iter().map(|(t, b)| (t, if b { 1.0 } else { 0.0 })).collect(),
        );
        let chunks = chunks_of(&points, &cuts, Kind::Bool);
        let idx: Vec<usize> = (0..chunks.len()).collect();
        let got = run(&chunks, &idx, from, from + len, bucket, summaries);
        check_close(&got, &naive(&points, from, from + len, bucket), true);
    }

    /// Buckets wide enough to swallow whole chunks: the header-summary path
    /// and the decoding path give bit-identical results, floats included.
    #[test]
    fn summaries_equal_decoding(
        raw in prop::collection::vec(
            (0i64..1_000_000, prop_oneof![
                (-30_000i64..30_000).prop_map(|m| m as f64 / 10.0),
                any::<f64>().prop_filter("finite", |v| v.is_finite()),
                Just(-0.0),
                Just(0.0),
            ]),
            1..300,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        from in -100_000i64..500_000,
        len in 1i64..2_000_000,
        bucket in 1i64..2_000_000,
    ) {
        let points = sorted_distinct(raw);
        let chunks = chunks_of(&points, &cuts, Kind::F64);
        let idx: Vec<usize> = (0..chunks.len()).collect();
        let with = run(&chunks, &idx, from, from + len, bucket, true);
        let without = run(&chunks, &idx, from, from + len, bucket, false);
        prop_assert_eq!(bits(&with), bits(&without));
    }
}

#[test]
fn summary_path_really_skips_decoding() {
    // A chunk whose header is intact but whose timestamp bits are garbage
    // (checksum recomputed): decoding fails, the summary path does not decode.
    let mut b = ChunkBuilder::new(Kind::F64);
    for i in 0..100 {
        b.push_f64(1000 + i * 10, i as f64).unwrap();
    }
    let mut bytes = b.finish_bytes().unwrap();
    let hl = ferrule_tsdb::ChunkHeader::header_len(Kind::F64);
    // Past the timestamp section's 11-byte parameter header.
    for x in &mut bytes[hl + 12..hl + 20] {
        *x = 0xFF;
    }
    let n = bytes.len() - 4;
    let crc = crc32c(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    let c = Chunk::from_vec(bytes).unwrap();
    assert!(c.validate().is_err());

    let whole = c.aggregate(0, 10_000, 10_000).unwrap();
    assert_eq!(whole.len(), 1);
    assert_eq!((whole[0].count, whole[0].sum), (100, 4950.0));
    assert_eq!((whole[0].first_ts, whole[0].last_ts), (1000, 1990));

    // A bucket boundary through the chunk forces decoding: error, and the
    // aggregator is left unchanged.
    let mut agg = Aggregator::new(0, 10_000, 1_500).unwrap();
    assert!(matches!(agg.add_chunk(&c), Err(ChunkError::Corrupt(_))));
    assert!(agg.finish().is_empty());
}

#[test]
fn ranges_outside_the_chunk_and_bad_queries() {
    let mut b = ChunkBuilder::new(Kind::F64);
    for i in 0..10 {
        b.push_f64(1000 + i, 1.0).unwrap();
    }
    let c = b.finish().unwrap();
    assert!(c.aggregate(0, 1000, 10).unwrap().is_empty());
    assert!(c.aggregate(1010, 5000, 10).unwrap().is_empty());
    assert_eq!(c.aggregate(1009, 1010, 10).unwrap().len(), 1);
    assert_eq!(
        c.aggregate(i64::MIN, i64::MAX, i64::MAX).unwrap()[0].count,
        10
    );
    assert!(matches!(
        c.aggregate(5, 5, 1),
        Err(ChunkError::InvalidQuery(_))
    ));
    assert!(matches!(
        c.aggregate(0, 5, 0),
        Err(ChunkError::InvalidQuery(_))
    ));
    assert!(matches!(
        c.aggregate(0, 5, -1),
        Err(ChunkError::InvalidQuery(_))
    ));
    assert!(matches!(
        Aggregator::new(i64::MIN, i64::MAX, 1),
        Err(ChunkError::InvalidQuery(_))
    ));

    let mut s = ChunkBuilder::new(Kind::Str);
    s.push_str(1, "x").unwrap();
    let s = s.finish().unwrap();
    assert!(matches!(
        s.aggregate(0, 10, 1),
        Err(ChunkError::KindMismatch { .. })
    ));
}

#[test]
fn one_minute_buckets_over_a_day() {
    // 1 point per second for an hour; 60 one-minute buckets of 60 points.
    let mut b = ChunkBuilder::new(Kind::F64);
    for i in 0..3600i64 {
        b.push_f64(i * 1000, (i / 60) as f64).unwrap();
    }
    let c = b.finish().unwrap();
    let buckets = c.aggregate(0, 86_400_000, 60_000).unwrap();
    assert_eq!(buckets.len(), 60);
    for (m, bk) in buckets.iter().enumerate() {
        assert_eq!(bk.start, m as i64 * 60_000);
        assert_eq!(bk.count, 60);
        assert_eq!(bk.avg(), m as f64);
        assert_eq!(
            (bk.min, bk.max, bk.first, bk.last),
            (m as f64, m as f64, m as f64, m as f64)
        );
    }
}
