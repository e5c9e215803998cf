//! The paragraph printed before the table: the machine, the commit, and how
//! each section that ran measured its figures.

use std::fmt::Write as _;

use super::report::{Report, thousands};
use super::signal::JITTER_MS;
use super::{
    BENCH_CPU, FERRULE_CPU, HTTP_READINGS, KEYS, Section, TelemetryArgs, WARMUP, sqlite, store,
};

/// How everything was measured, for the paragraph before the table.
pub(super) fn method(args: &TelemetryArgs, report: &Report) -> String {
    let ran = |s: Section| report.sections.iter().any(|(r, _)| *r == s);
    let mut t = format!("Machine: {}. ", crate::machine());
    let _ = write!(
        t,
        "Ferrule {} at commit {}. ",
        env!("CARGO_PKG_VERSION"),
        commit()
    );
    if ran(Section::Mqtt) || ran(Section::Http) {
        let pinning = if args.cpu_pin {
            format!(
                "Ferrule was pinned to CPU {FERRULE_CPU} from its first instruction and this \
                 process (load generator, SQLite) to CPU {BENCH_CPU}"
            )
        } else {
            "nothing was pinned: Ferrule (its telemetry writer has a thread of its own) and the \
             load generator share every CPU; the notes say how much each used"
                .to_owned()
        };
        let _ = write!(
            t,
            "Ferrule ran as `ferrule serve` with default settings in a fresh temp data \
             directory; {pinning}. {} devices were created through the API, each with its own \
             token. Every device reads {KEYS} values once a second of its own clock (1000 ms \
             ± {JITTER_MS} ms, timestamps in the past and strictly increasing; values slow \
             random walks with 1–2 decimals), and each figure counts only readings Ferrule \
             confirmed durable, over a {} s window after a {} s warm-up. ",
            thousands(f64::from(args.devices)),
            args.measure().as_secs(),
            WARMUP.as_secs()
        );
    }
    if ran(Section::Mqtt) {
        let _ = write!(
            t,
            "MQTT: one MQTT {} connection per device (its token as user name, the load \
             generator one current-thread tokio task per connection), QoS 1 PUBLISHes of \
             one JSON reading (`{{\"ts\":…,\"values\":{{\"k0\":…}}}}`) to \
             `devices/ID/telemetry`, {} unacknowledged per connection; Ferrule sends a PUBACK \
             only once the message is durable; points/s = PUBACKs × {KEYS}. ",
            args.mqtt_version.name(),
            args.window
        );
    }
    if ran(Section::Http) {
        let _ = write!(
            t,
            "HTTP: `POST /api/v1/ingest/telemetry` with the device's token, a JSON array of \
             {HTTP_READINGS} readings ({} points) per request, {} requests in flight over \
             keep-alive HTTP/1.1 connections (reqwest), each device's requests one after \
             another; Ferrule answers 2xx only once durable; points/s = 2xx × {}. ",
            HTTP_READINGS * KEYS,
            args.concurrency,
            HTTP_READINGS * KEYS
        );
    }
    if ran(Section::Store) {
        let runs = usize::try_from(args.query_runs).unwrap_or(usize::MAX);
        let _ = write!(t, "{}", store::method(runs));
    }
    if ran(Section::Sqlite) {
        let _ = write!(
            t,
            "{}",
            sqlite::method(
                usize::try_from(args.devices).unwrap_or(usize::MAX),
                usize::try_from(args.batch_rows).unwrap_or(usize::MAX),
                args.measure(),
                WARMUP,
                usize::try_from(args.query_runs).unwrap_or(usize::MAX),
            )
        );
    }
    t.push_str("Ratio = ferrule ÷ sqlite.\n");
    t
}

/// `git rev-parse --short HEAD` of the working directory, marked when the
/// tree has uncommitted changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("`{hash}` + uncommitted changes"),
            _ => format!("`{hash}`"),
        },
        None => "unknown (not a git checkout)".into(),
    }
}
