//! Deterministic test signals shared by the benches and the chunk-format
//! example (`examples/tsdb.rs`), so that a figure measured in one is the
//! figure of the same series in the other.

/// Seconds in a day, the period of the temperature's daily swing.
pub const DAY_SECONDS: usize = 86_400;

/// splitmix64: deterministic, and the same sequence for a seed in every
/// version (unlike `rand`'s small generators), so that figures in
/// docs/BENCHMARKS.md can be reproduced exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Integer in [-r, r].
    pub fn jitter(&mut self, r: i64) -> i64 {
        (self.next_u64() % (2 * r as u64 + 1)) as i64 - r
    }
}

/// Room temperature around 21 °C: a daily swing, a slow random drift and a
/// little sensor noise, quantised to the sensor's 0.1 °C resolution.
#[derive(Debug, Clone, Default)]
pub struct Temperature {
    drift: f64,
}

impl Temperature {
    /// The reading at `second` (of the series).
    pub fn sample(&mut self, rng: &mut Rng, second: usize) -> f64 {
        self.drift = (self.drift + rng.normal() * 0.002) * 0.99999;
        let day = (second % DAY_SECONDS) as f64 / DAY_SECONDS as f64;
        let x = 21.0 + 1.5 * (std::f64::consts::TAU * day).sin() + self.drift + rng.normal() * 0.03;
        (x * 10.0).round() / 10.0
    }
}
