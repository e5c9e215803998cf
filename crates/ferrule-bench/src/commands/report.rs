//! The figures of `bench commands` and the Markdown table they print as.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::CommandsArgs;
use crate::thousands;

/// Latency samples, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Latencies(samples)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The nearest-rank quantile `q` (0 to 1): the smallest sample that at
    /// least `q` of the samples do not exceed. `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.0.len();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, n) - 1])
    }

    pub fn max(&self) -> Option<Duration> {
        self.0.last().copied()
    }
}

/// Failures of one kind or another, counted by what went wrong
/// (`HTTP 504`, `state failed`, `no response`, …), with the first one
/// quoted.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    pub by_kind: BTreeMap<String, u64>,
    pub first: Option<String>,
}

impl Errors {
    pub fn add(&mut self, kind: impl Into<String>, detail: impl FnOnce() -> String) {
        *self.by_kind.entry(kind.into()).or_default() += 1;
        if self.first.is_none() {
            self.first = Some(detail());
        }
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// `3 (HTTP 504: 2, no response: 1)`, or `0`.
    fn summary(&self) -> String {
        let total = self.total();
        if total == 0 {
            return "0".to_owned();
        }
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(kind, n)| format!("{kind}: {}", thousands(*n as f64)))
            .collect();
        format!("{} ({})", thousands(total as f64), kinds.join(", "))
    }
}

/// The command round trip under load.
#[derive(Debug, Clone, Default)]
pub struct RoundTrip {
    /// Commands of the measurement window that were sent.
    pub sent: u64,
    /// Of those, answered 200 with state `succeeded`.
    pub succeeded: u64,
    /// Request sent (its scheduled time) → 200 `succeeded` read, for each
    /// command of the window that succeeded.
    pub latencies: Latencies,
    /// Commands of the window that failed, went unanswered or were not
    /// sent.
    pub errors: Errors,
    /// Commands of the window the bench could not send at their time
    /// because all its requests in flight were taken and the hand-over
    /// queue was full (in `errors` too, not in `sent`).
    pub not_sent: u64,
    /// The measurement window.
    pub window: Duration,
    /// CPU the server and the bench used during the window, in cores.
    pub server_cores: Option<f64>,
    pub bench_cores: Option<f64>,
}

/// Desired-state changes and their deltas.
#[derive(Debug, Clone, Default)]
pub struct Twin {
    /// PATCH sent → the device read the delta with the new value.
    pub to_device: Latencies,
    /// PATCH sent → 200 read.
    pub patch: Latencies,
    pub errors: Errors,
}

/// A section's figures, or why it has none.
pub type Outcome<T> = Result<T, String>;

/// Everything `bench commands` measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub round_trip: Outcome<RoundTrip>,
    pub twin: Outcome<Twin>,
    /// Devices whose connection failed during the run, with the first
    /// failure.
    pub devices_lost: Errors,
    /// Commands the devices answered, in all (warm-up included).
    pub answered: u64,
    /// Commands whose payload had no id to answer with.
    pub unanswerable: u64,
    /// Deltas the devices could not pass on (the bench's queue was full).
    pub deltas_dropped: u64,
    pub server_rss_mib: Option<f64>,
}

impl Report {
    /// Whether the run measured what it set out to: every section ran, and
    /// commands and deltas arrived.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        match &self.round_trip {
            Err(e) => failures.push(format!("command round trip: {e}")),
            Ok(r) if r.succeeded == 0 => {
                failures.push("command round trip: no command succeeded".to_owned())
            }
            Ok(_) => {}
        }
        match &self.twin {
            Err(e) => failures.push(format!("twin: {e}")),
            Ok(t) if t.to_device.is_empty() && t.errors.total() > 0 => {
                failures.push("twin: no delta reached its device".to_owned())
            }
            Ok(_) => {}
        }
        if self.devices_lost.total() > 0 {
            failures.push(format!(
                "{} device connection(s) failed during the run",
                self.devices_lost.total()
            ));
        }
        failures
    }

    /// The Markdown for docs/BENCHMARKS.md: the parameters, one table, and
    /// notes on errors.
    pub fn markdown(&self, args: &CommandsArgs) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n### Commands and twin ({} devices connected over MQTT 3.1.1)\n",
            thousands(f64::from(args.devices))
        );
        let _ = writeln!(
            out,
            "Command round trip: `POST /api/v1/devices/{{id}}/commands/bench` at {} commands/s \
             (open loop: each request leaves at its scheduled time and its latency counts from \
             that time), devices taken round-robin, at most {} requests in flight over \
             keep-alive connections, {} s measured after a {} s warm-up; latency is the \
             scheduled send → the 200 with state `succeeded` read (the device answers at once). \
             Twin: {} desired-state changes one after another (`PATCH /api/v1/devices/{{id}}/state`, \
             a fresh value each, devices round-robin); latency is PATCH sent → the device reads \
             the retained `state/delta` with that value.\n",
            thousands(f64::from(args.rate)),
            args.concurrency,
            args.seconds,
            args.warmup,
            thousands(f64::from(args.twin_patches)),
        );
        let _ = writeln!(
            out,
            "| measure | rate | p50 | p90 | p99 | max | samples | errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
        match &self.round_trip {
            Ok(r) => {
                let secs = r.window.as_secs_f64().max(f64::EPSILON);
                let rate = format!(
                    "{}/s sent, {}/s succeeded",
                    thousands(r.sent as f64 / secs),
                    thousands(r.succeeded as f64 / secs)
                );
                row(
                    &mut out,
                    "command round trip (POST → 200 succeeded)",
                    &rate,
                    &r.latencies,
                    &r.errors,
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| command round trip | failed: {e} | | | | | | |");
            }
        }
        match &self.twin {
            Ok(t) => {
                row(
                    &mut out,
                    "twin PATCH → device receives delta",
                    "one at a time",
                    &t.to_device,
                    &t.errors,
                );
                row(
                    &mut out,
                    "twin PATCH → 200",
                    "one at a time",
                    &t.patch,
                    &Errors::default(),
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| twin PATCH → delta | failed: {e} | | | | | | |");
            }
        }
        out.push('\n');
        if let Ok(r) = &self.round_trip {
            let cores = |c: Option<f64>| c.map_or_else(|| "?".to_owned(), |c| format!("{c:.2}"));
            let _ = writeln!(
                out,
                "- CPU during the window: Ferrule {} cores, the bench (load generator and \
                 devices) {} cores; {}.",
                cores(r.server_cores),
                cores(r.bench_cores),
                if args.cpu_pin {
                    "Ferrule pinned to CPU 0, the bench to CPU 1"
                } else {
                    "nothing pinned"
                },
            );
            if r.not_sent > 0 {
                let _ = writeln!(
                    out,
                    "- {} commands were not sent on time: all {} requests in flight were taken.",
                    thousands(r.not_sent as f64),
                    args.concurrency
                );
            }
            if let Some(first) = &r.errors.first {
                let _ = writeln!(out, "- First command error: {first}");
            }
        }
        if let Ok(t) = &self.twin
            && let Some(first) = &t.errors.first
        {
            let _ = writeln!(out, "- First twin error: {first}");
        }
        if let Some(mib) = self.server_rss_mib {
            let _ = writeln!(out, "- Ferrule RSS at the end: {mib:.1} MiB.");
        }
        let _ = writeln!(
            out,
            "- Commands the devices answered in all (warm-up included): {}.",
            thousands(self.answered as f64)
        );
        if self.unanswerable > 0 {
            let _ = writeln!(
                out,
                "- Commands the devices could not answer (no `id` in the payload): {}.",
                thousands(self.unanswerable as f64)
            );
        }
        if self.deltas_dropped > 0 {
            let _ = writeln!(
                out,
                "- Deltas the bench dropped (its queue was full): {}.",
                thousands(self.deltas_dropped as f64)
            );
        }
        if let Some(first) = &self.devices_lost.first {
            let _ = writeln!(
                out,
                "- Device connections lost: {}; first: {first}",
                self.devices_lost.summary()
            );
        }
        out
    }
}

fn row(out: &mut String, measure: &str, rate: &str, latencies: &Latencies, errors: &Errors) {
    let ms = |d: Option<Duration>| d.map_or_else(|| "–".to_owned(), format_ms);
    let _ = writeln!(
        out,
        "| {measure} | {rate} | {} | {} | {} | {} | {} | {} |",
        ms(latencies.quantile(0.50)),
        ms(latencies.quantile(0.90)),
        ms(latencies.quantile(0.99)),
        ms(latencies.max()),
        thousands(latencies.len() as f64),
        errors.summary(),
    );
}

/// `1.234 ms`, `12.3 ms`, `456 ms`: three significant digits or so.
fn format_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", thousands(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let l = Latencies::new((1..=100).rev().map(ms).collect());
        assert_eq!(l.quantile(0.5), Some(ms(50)));
        assert_eq!(l.quantile(0.9), Some(ms(90)));
        assert_eq!(l.quantile(0.99), Some(ms(99)));
        assert_eq!(l.quantile(0.0), Some(ms(1)));
        assert_eq!(l.max(), Some(ms(100)));
        let one = Latencies::new(vec![ms(7)]);
        assert_eq!(one.quantile(0.99), Some(ms(7)));
        assert_eq!(Latencies::default().quantile(0.5), None);
    }

    #[test]
    fn errors_are_counted_by_kind_and_the_first_is_kept() {
        let mut e = Errors::default();
        e.add("HTTP 504", || "first".to_owned());
        e.add("HTTP 504", || "second".to_owned());
        e.add("no response", || "third".to_owned());
        assert_eq!(e.total(), 3);
        assert_eq!(e.first.as_deref(), Some("first"));
        assert_eq!(e.summary(), "3 (HTTP 504: 2, no response: 1)");
        assert_eq!(Errors::default().summary(), "0");
    }

    #[test]
    fn milliseconds_keep_about_three_digits() {
        assert_eq!(format_ms(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(format_ms(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(format_ms(Duration::from_millis(4567)), "4,567 ms");
    }
}
