//! What the simulated devices have done, counted as they go ([`Tally`],
//! shared by every device task and read by the progress line), and the
//! final account of a run ([`Summary`]) printed as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde_json::{Value, json};

/// Error kinds keep the first message of their kind, and at most this many
/// kinds are kept apart (the rest are counted under "other").
const MAX_ERROR_KINDS: usize = 32;

/// What a device publishes, counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Telemetry,
    Event,
    State,
    Reply,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Telemetry, Kind::Event, Kind::State, Kind::Reply];

    fn name(self) -> &'static str {
        match self {
            Kind::Telemetry => "telemetry",
            Kind::Event => "events",
            Kind::State => "reported_state",
            Kind::Reply => "command_replies",
        }
    }
}

#[derive(Debug, Default)]
struct Published {
    sent: AtomicU64,
    acked: AtomicU64,
}

/// Counters shared by all devices. Relaxed atomics: each counter is read
/// on its own, and the final read comes after every device task ended.
#[derive(Debug, Default)]
pub struct Tally {
    published: [Published; 4],
    /// PUBACKs with a failure reason code, by code.
    refused: Mutex<BTreeMap<u8, u64>>,
    /// Devices connected right now.
    connected: AtomicI64,
    /// Successful connects, the first ones and reconnects.
    connects: AtomicU64,
    /// Connections the simulation dropped on purpose (a device going
    /// offline for a while).
    drops: AtomicU64,
    /// Messages sent again after their connection ended before the PUBACK
    /// (each counted once in `published`).
    retransmitted: AtomicU64,
    /// Readings a device dropped because its offline buffer was full.
    discarded: AtomicU64,
    /// Readings still buffered, never published, when the run was stopped.
    unsent: AtomicU64,
    commands_received: AtomicU64,
    commands_succeeded: AtomicU64,
    commands_failed: AtomicU64,
    desired_changes: AtomicU64,
    errors: AtomicU64,
    error_kinds: Mutex<BTreeMap<String, (u64, String)>>,
}

impl Tally {
    fn slot(&self, kind: Kind) -> &Published {
        &self.published[kind as usize]
    }

    pub fn sent(&self, kind: Kind) {
        self.slot(kind).sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn acked(&self, kind: Kind) {
        self.slot(kind).acked.fetch_add(1, Ordering::Relaxed);
    }

    /// A PUBACK that refused the message: an error too.
    pub fn refused(&self, code: u8, reason: Option<&str>, topic: &str) {
        *self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(code)
            .or_default() += 1;
        let why = reason.map_or(String::new(), |r| format!(": {r}"));
        self.error(
            &format!("publish refused 0x{code:02x}"),
            format!("the server refused a message on {topic} with 0x{code:02x}{why}"),
        );
    }

    pub fn connected(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn disconnected(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn retransmitted(&self) {
        self.retransmitted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dropped(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    pub fn discarded(&self, n: u64) {
        self.discarded.fetch_add(n, Ordering::Relaxed);
    }

    pub fn unsent(&self, n: u64) {
        self.unsent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn command(&self, succeeded: bool) {
        self.commands_received.fetch_add(1, Ordering::Relaxed);
        let slot = if succeeded {
            &self.commands_succeeded
        } else {
            &self.commands_failed
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    pub fn desired_change(&self) {
        self.desired_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error of `kind` (a short, fixed label) and keeps the first
    /// `message` of each kind for the summary.
    pub fn error(&self, kind: &str, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut kinds = self
            .error_kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = if kinds.len() < MAX_ERROR_KINDS || kinds.contains_key(kind) {
            kind
        } else {
            "other"
        };
        kinds.entry(key.to_owned()).or_insert((0, message)).0 += 1;
    }

    /// What the progress line shows.
    pub fn snapshot(&self) -> Snapshot {
        let total = |f: fn(&Published) -> &AtomicU64| {
            self.published
                .iter()
                .map(|p| f(p).load(Ordering::Relaxed))
                .sum()
        };
        Snapshot {
            connected: self.connected.load(Ordering::Relaxed).max(0) as u64,
            sent: total(|p| &p.sent),
            acked: total(|p| &p.acked),
            errors: self.errors.load(Ordering::Relaxed),
            commands: self.commands_received.load(Ordering::Relaxed),
        }
    }

    /// The final account, once every device task has ended.
    pub fn summary(&self, devices: usize, elapsed_s: f64, interrupted: bool) -> Summary {
        let per_kind = Kind::ALL.map(|k| {
            let p = self.slot(k);
            (
                k,
                p.sent.load(Ordering::Relaxed),
                p.acked.load(Ordering::Relaxed),
            )
        });
        Summary {
            devices,
            elapsed_s,
            interrupted,
            per_kind,
            refused: self
                .refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            connects: self.connects.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
            retransmitted: self.retransmitted.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            unsent: self.unsent.load(Ordering::Relaxed),
            commands: [
                self.commands_received.load(Ordering::Relaxed),
                self.commands_succeeded.load(Ordering::Relaxed),
                self.commands_failed.load(Ordering::Relaxed),
            ],
            desired_changes: self.desired_changes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            error_kinds: self
                .error_kinds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// The figures of one progress line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub connected: u64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub commands: u64,
}

/// The account of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub devices: usize,
    pub elapsed_s: f64,
    pub interrupted: bool,
    per_kind: [(Kind, u64, u64); 4],
    pub refused: BTreeMap<u8, u64>,
    pub connects: u64,
    pub drops: u64,
    pub retransmitted: u64,
    pub discarded: u64,
    pub unsent: u64,
    /// Received, succeeded, failed.
    commands: [u64; 3],
    pub desired_changes: u64,
    pub errors: u64,
    error_kinds: BTreeMap<String, (u64, String)>,
}

impl Summary {
    pub fn sent(&self) -> u64 {
        self.per_kind.iter().map(|(_, s, _)| s).sum()
    }

    pub fn acked(&self) -> u64 {
        self.per_kind.iter().map(|(_, _, a)| a).sum()
    }

    /// Messages published and never acknowledged (refusals included).
    pub fn unacknowledged(&self) -> u64 {
        self.sent().saturating_sub(self.acked())
    }

    /// Every message published was acknowledged and nothing went wrong.
    pub fn ok(&self) -> bool {
        self.unacknowledged() == 0 && self.errors == 0
    }

    pub fn json(&self) -> Value {
        let published: serde_json::Map<String, Value> = self
            .per_kind
            .iter()
            .map(|(k, sent, acked)| (k.name().to_owned(), json!({"sent": sent, "acked": acked})))
            .collect();
        let refused: serde_json::Map<String, Value> = self
            .refused
            .iter()
            .map(|(code, n)| (format!("0x{code:02x}"), json!(n)))
            .collect();
        let kinds: Vec<Value> = self
            .error_kinds
            .iter()
            .map(|(kind, (n, first))| json!({"kind": kind, "count": n, "first": first}))
            .collect();
        let [received, succeeded, failed] = self.commands;
        json!({
            "ok": self.ok(),
            "interrupted": self.interrupted,
            "devices": self.devices,
            "elapsed_s": round1(self.elapsed_s),
            "sent": self.sent(),
            "acked": self.acked(),
            "unacknowledged": self.unacknowledged(),
            "msgs_per_s": round1(self.rate()),
            "published": published,
            "refused": refused,
            "connects": self.connects,
            "drops": self.drops,
            "retransmitted": self.retransmitted,
            "discarded": self.discarded,
            "unsent": self.unsent,
            "commands": {"received": received, "succeeded": succeeded, "failed": failed},
            "desired_changes": self.desired_changes,
            "errors": {"total": self.errors, "kinds": kinds},
        })
    }

    fn rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.sent() as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// For people: a few lines, the verdict last.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let [received, succeeded, failed] = self.commands;
        let _ = writeln!(
            t,
            "{} devices, {:.1} s{}: {} messages published, {} acknowledged ({:.0} msgs/s)",
            self.devices,
            self.elapsed_s,
            if self.interrupted { " (stopped)" } else { "" },
            self.sent(),
            self.acked(),
            self.rate()
        );
        let each: Vec<String> = self
            .per_kind
            .iter()
            .map(|(k, sent, acked)| format!("{} {acked}/{sent}", k.name().replace('_', " ")))
            .collect();
        let _ = writeln!(t, "  acknowledged/sent: {}", each.join(", "));
        let _ = writeln!(
            t,
            "  connects {}, drops {}, retransmitted {}, commands {received} ({succeeded} \
             succeeded, {failed} failed), desired-state changes {}",
            self.connects, self.drops, self.retransmitted, self.desired_changes
        );
        if self.discarded > 0 || self.unsent > 0 {
            let _ = writeln!(
                t,
                "  readings not published: {} discarded (offline buffer full), {} unsent at stop",
                self.discarded, self.unsent
            );
        }
        for (kind, (n, first)) in &self.error_kinds {
            let _ = writeln!(t, "  error ×{n} {kind}: {first}");
        }
        if self.ok() {
            let _ = writeln!(t, "ok: every message was acknowledged");
        } else {
            let _ = writeln!(
                t,
                "FAILED: {} messages unacknowledged, {} errors",
                self.unacknowledged(),
                self.errors
            );
        }
        t
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_ok_only_when_everything_sent_was_acknowledged() {
        let tally = Tally::default();
        tally.sent(Kind::Telemetry);
        tally.sent(Kind::Event);
        tally.acked(Kind::Telemetry);
        let s = tally.summary(1, 1.0, false);
        assert!(!s.ok());
        assert_eq!(s.unacknowledged(), 1);
        tally.acked(Kind::Event);
        let s = tally.summary(1, 1.0, false);
        assert!(s.ok(), "{}", s.text());
        let j = s.json();
        assert_eq!(j["sent"], 2);
        assert_eq!(j["published"]["telemetry"]["acked"], 1);
        assert_eq!(j["ok"], true);
    }

    #[test]
    fn refusals_are_errors_named_by_code() {
        let tally = Tally::default();
        tally.sent(Kind::Telemetry);
        tally.refused(0x99, Some("bad payload"), "devices/d/telemetry");
        let s = tally.summary(1, 1.0, false);
        assert!(!s.ok());
        let j = s.json();
        assert_eq!(j["refused"]["0x99"], 1);
        assert_eq!(j["errors"]["total"], 1);
        let first = j["errors"]["kinds"][0]["first"].as_str().unwrap();
        assert!(
            first.contains("0x99") && first.contains("bad payload"),
            "{first}"
        );
    }

    #[test]
    fn error_kinds_are_bounded() {
        let tally = Tally::default();
        for i in 0..100 {
            tally.error(&format!("kind {i}"), "x".into());
        }
        let s = tally.summary(1, 1.0, false);
        assert_eq!(s.errors, 100);
        assert_eq!(s.error_kinds.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(s.error_kinds["other"].0, 100 - MAX_ERROR_KINDS as u64);
    }
}
