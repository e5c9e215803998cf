//! Prints bytes/point for three signals and decode+aggregate timings.
//!
//! Run: `cargo run --release -p ferrule-bench --example tsdb`

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferrule_bench::signal::{DAY_SECONDS as DAY, Rng, Temperature};
use ferrule_tsdb::{Aggregator, Chunk, ChunkBuilder, Kind};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Reports every 1000 ms ± `jitter` ms, starting at second `start`.
fn timestamps(rng: &mut Rng, start: usize, n: usize, jitter: i64) -> Vec<i64> {
    (start..start + n)
        .map(|i| T0 + 1000 * i as i64 + rng.jitter(jitter))
        .collect()
}

fn build(ts: &[i64], vals: &[f64]) -> Chunk {
    let mut b = ChunkBuilder::new(Kind::F64);
    for (&t, &v) in ts.iter().zip(vals) {
        b.push_f64(t, v).expect("finite");
    }
    b.finish().expect("encodes")
}

fn report(name: &str, c: &Chunk) {
    let s = c.section_sizes();
    let n = c.len() as f64;
    println!(
        "{name:<44} {:>8} B  {:>6.3} B/pt  (timestamps {:>6.3} B/pt {:?}; values {:>6.3} B/pt {:?})",
        s.total(),
        s.total() as f64 / n,
        s.timestamps as f64 / n,
        c.timestamp_encoding(),
        s.values as f64 / n,
        c.value_encoding(),
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<F: FnMut()>(runs: usize, mut f: F) -> (Duration, Duration) {
    f(); // warm up
    let v: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let min = *v.iter().min().expect("runs > 0");
    (median(v), min)
}

fn main() {
    let mut rng = Rng::new(42);
    println!("== bytes per point, {DAY} points at 1000 ms ± 5 ms ==");
    let ts = timestamps(&mut rng, 0, DAY, 5);
    let mut temp = Temperature::default();
    let a: Vec<f64> = (0..DAY).map(|i| temp.sample(&mut rng, i)).collect();
    let chunk_a = build(&ts, &a);
    report("(a) temperature, 0.1 resolution", &chunk_a);

    let mut v = 21.0;
    let b: Vec<f64> = (0..DAY)
        .map(|_| {
            v += rng.normal() * 0.1;
            v
        })
        .collect();
    let chunk_b = build(&ts, &b);
    report("(b) random walk, full precision", &chunk_b);

    let c = vec![21.5; DAY];
    report("(c) constant 21.5", &build(&ts, &c));

    println!("-- variations --");
    let regular: Vec<i64> = (0..DAY as i64).map(|i| T0 + 1000 * i).collect();
    report("(a) with exact 1000 ms timestamps", &build(&regular, &a));
    report("(c) with exact 1000 ms timestamps", &build(&regular, &c));
    let ts50 = timestamps(&mut rng, 0, DAY, 50);
    report("(a) with ±50 ms jitter", &build(&ts50, &a));
    let mut drift_ts = Vec::with_capacity(DAY);
    let mut t = T0;
    for _ in 0..DAY {
        t += 1000 + rng.jitter(5);
        drift_ts.push(t);
    }
    report(
        "(a) interval 1000±5 ms, accumulating",
        &build(&drift_ts, &a),
    );
    let mut temp2 = Temperature::default();
    let a2: Vec<f64> = (0..DAY)
        .map(|i| {
            let x = temp2.sample(&mut rng, i) + rng.normal() * 0.1;
            (x * 10.0).round() / 10.0
        })
        .collect();
    report("(a) noisier sensor (σ ≈ 0.1 °C)", &build(&ts, &a2));

    println!("\n== timings (median / min) ==");
    let bytes_a = chunk_a.as_bytes().to_vec();
    let (enc_med, enc_min) = time(10, || {
        black_box(build(&ts, &a));
    });
    println!("seal (sort+encode+verify) {DAY} points (a): {enc_med:?} / {enc_min:?}");

    let day_from = T0;
    let day_to = T0 + DAY as i64 * 1000;
    let (med, min) = time(50, || {
        let c = Chunk::from_bytes(black_box(&bytes_a)).expect("valid");
        black_box(c.aggregate(day_from, day_to, 60_000).expect("aggregates"));
    });
    println!("(a) load (CRC) + 1-min averages over 24 h, {DAY} points: {med:?} / {min:?}");

    let bytes_b = chunk_b.as_bytes().to_vec();
    let (med, min) = time(50, || {
        let c = Chunk::from_bytes(black_box(&bytes_b)).expect("valid");
        black_box(c.aggregate(day_from, day_to, 60_000).expect("aggregates"));
    });
    println!("(b) XOR chunk, same query: {med:?} / {min:?}");

    let (med, min) = time(50, || {
        let mut s = 0.0;
        for p in chunk_a.iter() {
            if let (_, ferrule_tsdb::Value::F64(v)) = p.expect("valid") {
                s += v;
            }
        }
        black_box(s);
    });
    println!("(a) Chunk::iter over {DAY} points: {med:?} / {min:?}");

    // 30 days as 30 daily chunks of the same kind of signal.
    let days = 30;
    let mut temp = Temperature::default();
    let month: Vec<Vec<u8>> = (0..days)
        .map(|d| {
            let ts = timestamps(&mut rng, d * DAY, DAY, 5);
            let vals: Vec<f64> = (0..DAY)
                .map(|i| temp.sample(&mut rng, d * DAY + i))
                .collect();
            build(&ts, &vals).into_bytes()
        })
        .collect();
    let total: usize = month.iter().map(Vec::len).sum();
    println!(
        "30 days: {} points in {} chunks, {} bytes ({:.3} B/pt)",
        days * DAY,
        days,
        total,
        total as f64 / (days * DAY) as f64
    );
    let month_to = T0 + (days * DAY) as i64 * 1000;
    let query = |bucket: i64| {
        let mut agg = Aggregator::new(T0, month_to, bucket).expect("query");
        for bytes in &month {
            let c = Chunk::from_bytes(black_box(bytes)).expect("valid");
            agg.add_chunk(&c).expect("aggregates");
        }
        agg.finish()
    };
    // Daily buckets that each hold a whole chunk (the chunks' first points
    // carry up to 5 ms of negative jitter, so start the buckets half a second early).
    let query_day = || {
        let mut agg = Aggregator::new(T0 - 500, month_to, 86_400_000).expect("query");
        for bytes in &month {
            let c = Chunk::from_bytes(black_box(bytes)).expect("valid");
            agg.add_chunk(&c).expect("aggregates");
        }
        agg.finish()
    };
    let (med, min) = time(10, || {
        let mut x = 0u32;
        for bytes in &month {
            x ^= ferrule_tsdb::crc32c(black_box(bytes));
        }
        black_box(x);
    });
    println!("30 d CRC-32C alone over {total} bytes: {med:?} / {min:?}");
    let (med, min) = time(10, || {
        black_box(query(60_000));
    });
    println!("30 d load (CRC) + 1-min averages (43,200 buckets): {med:?} / {min:?}");
    let (med, min) = time(10, || {
        black_box(query(3_600_000));
    });
    println!("30 d load (CRC) + 1-h averages: {med:?} / {min:?}");
    let (med, min) = time(10, || {
        black_box(query_day());
    });
    println!("30 d load (CRC) + 1-day averages (header summaries, no decoding): {med:?} / {min:?}");
    let loaded: Vec<Chunk> = month
        .iter()
        .map(|b| Chunk::from_bytes(b).expect("valid"))
        .collect();
    let (med, min) = time(10, || {
        let mut agg = Aggregator::new(T0, month_to, 60_000).expect("query");
        for c in &loaded {
            agg.add_chunk(c).expect("aggregates");
        }
        black_box(agg.finish());
    });
    println!("30 d 1-min averages, chunks already loaded: {med:?} / {min:?}");
}
