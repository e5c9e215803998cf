//! The targets as regression guards: size always, speed on demand.
//!
//! The full report (all signals, timings) is
//! `cargo run --release -p ferrule-tsdb --example measure`.

use std::time::Instant;

use ferrule_tsdb::{Aggregator, Chunk, ChunkBuilder, Kind};

const DAY: i64 = 86_400;
const T0: i64 = 1_767_225_600_000;

/// Deterministic: xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Roughly N(0, 1) (sum of 4 uniforms, rescaled).
    fn noise(&mut self) -> f64 {
        let s: f64 = (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        (s - 2.0) * 1.732
    }
}

/// Signal (a): ~21 °C, daily swing, slow drift, 0.1 °C resolution, reported
/// every 1000 ms ± 5 ms.
fn temperature_day(rng: &mut Rng, day: i64, drift: &mut f64) -> Chunk {
    let mut b = ChunkBuilder::new(Kind::F64);
    for i in 0..DAY {
        let s = day * DAY + i;
        *drift = (*drift + rng.noise() * 0.002) * 0.99999;
        let phase = (s % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
        let x = 21.0 + 1.5 * phase.sin() + *drift + rng.noise() * 0.03;
        let jitter = (rng.next() % 11) as i64 - 5;
        b.push_f64(T0 + s * 1000 + jitter, (x * 10.0).round() / 10.0)
            .unwrap();
    }
    b.finish().unwrap()
}

#[test]
fn realistic_signal_is_well_under_three_bytes_per_point() {
    let c = temperature_day(&mut Rng(7), 0, &mut 0.0);
    c.validate().unwrap();
    let per_point = c.as_bytes().len() as f64 / c.len() as f64;
    assert_eq!(c.len(), DAY as usize);
    assert!(per_point < 1.0, "{per_point} bytes/point");
}

#[test]
#[ignore = "timing; run with --release -- --ignored"]
fn query_speed_targets() {
    let mut rng = Rng(11);
    let mut drift = 0.0;
    let days: Vec<Vec<u8>> = (0..30)
        .map(|d| temperature_day(&mut rng, d, &mut drift).into_bytes())
        .collect();
    let query = |n: usize| {
        let to = T0 + n as i64 * DAY * 1000;
        let start = Instant::now();
        let mut agg = Aggregator::new(T0, to, 60_000).unwrap();
        for bytes in &days[..n] {
            agg.add_chunk(&Chunk::from_bytes(bytes).unwrap()).unwrap();
        }
        let buckets = agg.finish();
        assert_eq!(buckets.len(), n * 1440);
        start.elapsed()
    };
    let best = |n: usize| (0..5).map(|_| query(n)).min().unwrap();
    let (day, month) = (best(1), best(30));
    println!("1-min averages: 24 h {day:?}, 30 d {month:?}");
    if cfg!(debug_assertions) {
        return; // only meaningful in release
    }
    assert!(day.as_millis() <= 5, "24 h took {day:?}");
    assert!(month.as_millis() <= 50, "30 d took {month:?}");
}
