//! The bench's data: [`realistic_series`], the one realistic series (a room
//! temperature every second for 30 days) that both storage sections store
//! and query, with its origin [`T0`] and the two query ranges; and
//! [`DeviceSignal`], the readings the simulated devices send, written as
//! their JSON payload. Deterministic ([`Rng`](crate::signal::Rng), splitmix64), so every run and
//! both engines see the same values.

use std::io::Write as _;

use anyhow::bail;

use super::{DAY_MS, KEYS};
use crate::signal::{DAY_SECONDS, Rng, Temperature};

/// 2026-01-01T00:00:00Z: where the realistic series starts (the same
/// origin as `crates/ferrule-tsdb/examples/examples/tsdb.rs`).
pub(crate) const T0: i64 = 1_767_225_600_000;
/// The realistic series both storage sections use: 30 days at 1 s, seed 42
/// (as `examples/tsdb.rs`).
pub(super) const SERIES_SEED: u64 = 42;
pub(super) const SERIES_POINTS: usize = 30 * DAY_SECONDS;
/// The end of the series' last second, where both queries end.
const SERIES_END: i64 = T0 + 1000 * SERIES_POINTS as i64;
/// The 1-minute-average queries, `[from, to)`, that both storage sections
/// time, in whole minutes from `T0` (a midnight): the last 24 h of the
/// series and all 30 days of it.
pub(super) const QUERY_24H: (i64, i64) = (SERIES_END - DAY_MS, SERIES_END);
pub(super) const QUERY_30D: (i64, i64) = (T0, SERIES_END);
/// A raw point: an i64 timestamp and an f64 value.
pub(super) const RAW_POINT_BYTES: f64 = 16.0;
/// The bucket width of those queries.
pub(super) const MINUTE_MS: i64 = 60_000;

/// The buckets a 1-minute-average query over `[from, to)` returns when the
/// series has a point in every minute, as the realistic series does:
/// 1,440 for [`QUERY_24H`], 43,200 for [`QUERY_30D`].
pub(super) fn minute_buckets((from, to): (i64, i64)) -> usize {
    usize::try_from((to - from) / MINUTE_MS).unwrap_or(0)
}

/// A sensor's reporting jitter, in ms, around its 1 s interval.
pub(crate) const JITTER_MS: i64 = 5;

/// `n` readings of one realistic series: the room temperature of
/// `examples/tsdb.rs` (0.1 °C resolution), every 1000 ms ± 5 ms from `start_ms`.
/// Generated a day at a time (that day's timestamps, then its values), as
/// `examples/tsdb.rs` does, so `realistic_series(42, T0, 86_400)` is exactly its
/// signal (a). The baseline and Ferrule's store are fed the same series.
pub(super) fn realistic_series(seed: u64, start_ms: i64, n: usize) -> Vec<(i64, f64)> {
    let mut rng = Rng::new(seed);
    let mut temperature = Temperature::default();
    let mut series = Vec::with_capacity(n);
    let mut day_start = 0;
    while day_start < n {
        let seconds = day_start..(day_start + DAY_SECONDS).min(n);
        let timestamps: Vec<i64> = seconds
            .clone()
            .map(|i| start_ms + 1000 * i as i64 + rng.jitter(JITTER_MS))
            .collect();
        for (ts, second) in timestamps.into_iter().zip(seconds) {
            series.push((ts, temperature.sample(&mut rng, second)));
        }
        day_start += DAY_SECONDS;
    }
    series
}

/// One device's readings: every 1000 ms ± 5 ms from the start of its
/// region, [`KEYS`] values, each a slow mean-reverting random walk around
/// its own level with the 1 or 2 decimals a sensor reports. Deterministic
/// per seed. Timestamps stay inside the region, so they are strictly
/// increasing, never in the future, and never in another section's day.
pub(super) struct DeviceSignal {
    rng: Rng,
    start_ms: i64,
    end_ms: i64,
    readings: i64,
    drift: [f64; KEYS],
}

impl DeviceSignal {
    pub(super) fn new(seed: u64, start_ms: i64, end_ms: i64) -> Self {
        DeviceSignal {
            rng: Rng::new(seed),
            start_ms,
            end_ms,
            readings: 0,
            drift: [0.0; KEYS],
        }
    }

    /// The next reading's timestamp and values.
    pub(super) fn next_reading(&mut self) -> anyhow::Result<(i64, [f64; KEYS])> {
        // The jitter stays below half the interval: timestamps increase.
        let ts = self.start_ms + 1000 * self.readings + 1000 / 2 + self.rng.jitter(JITTER_MS);
        if ts >= self.end_ms {
            bail!(
                "a device ran out of timestamps after {} readings (one a second in one day): \
                 use a shorter --seconds",
                self.readings
            );
        }
        self.readings += 1;
        let mut values = [0.0; KEYS];
        for (k, value) in values.iter_mut().enumerate() {
            self.drift[k] = (self.drift[k] + self.rng.normal() * 0.02) * 0.999;
            let level = 20.0 + 10.0 * k as f64;
            let x = level + self.drift[k] + self.rng.normal() * 0.03;
            let scale = if Self::decimals(k) == 1 { 10.0 } else { 100.0 };
            *value = (x * scale).round() / scale;
        }
        Ok((ts, values))
    }

    /// Even keys report one decimal (a temperature), odd keys two.
    fn decimals(key: usize) -> usize {
        1 + key % 2
    }

    /// Writes the next reading as `{"ts":T,"values":{"k0":V,…}}`.
    pub(super) fn write_json(&mut self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        let (ts, values) = self.next_reading()?;
        write!(out, "{{\"ts\":{ts},\"values\":{{")?;
        for (k, v) in values.iter().enumerate() {
            let comma = if k == 0 { "" } else { "," };
            write!(out, "{comma}\"k{k}\":{v:.*}", Self::decimals(k))?;
        }
        out.extend_from_slice(b"}}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_json_with_increasing_timestamps() {
        let mut signal = DeviceSignal::new(7, T0, T0 + DAY_MS);
        let mut last = i64::MIN;
        for _ in 0..1000 {
            let mut out = Vec::new();
            signal.write_json(&mut out).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let ts = v["ts"].as_i64().unwrap();
            assert!(ts > last && ts < T0 + DAY_MS);
            last = ts;
            assert_eq!(v["values"].as_object().unwrap().len(), KEYS);
        }
    }

    #[test]
    fn a_device_stops_at_the_end_of_its_region() {
        let mut signal = DeviceSignal::new(1, T0, T0 + 3_000);
        for _ in 0..3 {
            signal.next_reading().unwrap();
        }
        assert!(signal.next_reading().is_err());
    }

    #[test]
    fn realistic_series_is_a_temperature_at_0_1_resolution() {
        let series = realistic_series(42, T0, 2 * DAY_SECONDS + 10);
        assert_eq!(series.len(), 2 * DAY_SECONDS + 10);
        assert!(series.windows(2).all(|w| w[0].0 < w[1].0));
        // 0.1 °C resolution around 21 °C.
        for &(_, v) in &series {
            assert!((15.0..27.0).contains(&v));
            assert!(((v * 10.0).round() - v * 10.0).abs() < 1e-9);
        }
    }

    #[test]
    fn the_queries_cover_whole_minutes_of_the_series() {
        assert_eq!(minute_buckets(QUERY_24H), 1_440);
        assert_eq!(minute_buckets(QUERY_30D), 43_200);
        assert_eq!(QUERY_30D.0 % MINUTE_MS, 0);
        assert_eq!(QUERY_24H.0 % MINUTE_MS, 0);
    }
}
