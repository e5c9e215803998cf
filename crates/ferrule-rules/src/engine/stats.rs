//! A rule's counters and last error: in its API view and in /metrics.
//!
//! The counters are atomics the worker bumps once per message; the
//! Prometheus handles are made once per rule (a label lookup per message
//! would cost more than the evaluation).

use std::sync::atomic::{AtomicU64, Ordering};

use ferrule_core::message::now_ms;
use metrics::{Counter, counter};
use parking_lot::Mutex;
use serde::Serialize;

/// Longest payload sample kept with a rule's last error.
const SAMPLE_BYTES: usize = 1024;

/// A rule's last failure: when, what, and the message that caused it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastError {
    /// ms since the epoch.
    pub at: i64,
    pub message: String,
    /// The message's topic.
    pub topic: String,
    /// The start of its payload (at most 1 KiB, lossy UTF-8).
    pub sample: String,
}

/// A snapshot of a rule's counters since the server started (or since the
/// rule was last changed).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleStats {
    /// Messages on its FROM topics that it evaluated.
    pub matched: u64,
    /// Messages for which WHERE held.
    pub passed: u64,
    /// Times the rule failed on a message: its evaluation failed (a limit)
    /// or one of its actions did.
    pub errors: u64,
    pub actions_ok: u64,
    pub actions_failed: u64,
    pub last_error: Option<LastError>,
}

pub(crate) struct RuleCounters {
    matched: AtomicU64,
    passed: AtomicU64,
    errors: AtomicU64,
    actions_ok: AtomicU64,
    actions_failed: AtomicU64,
    last_error: Mutex<Option<LastError>>,
    metrics: Metrics,
}

struct Metrics {
    matched: Counter,
    passed: Counter,
    errors: Counter,
    actions_ok: Counter,
    actions_failed: Counter,
}

impl RuleCounters {
    pub(crate) fn new(tenant: &str, rule: &str) -> Self {
        let labels = [("tenant", tenant.to_owned()), ("rule", rule.to_owned())];
        let outcome = |o: &'static str| counter!("ferrule_rule_actions_total", "tenant" => tenant.to_owned(), "rule" => rule.to_owned(), "outcome" => o);
        Self {
            matched: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            actions_ok: AtomicU64::new(0),
            actions_failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            metrics: Metrics {
                matched: counter!("ferrule_rule_matched_total", &labels),
                passed: counter!("ferrule_rule_passed_total", &labels),
                errors: counter!("ferrule_rule_errors_total", &labels),
                actions_ok: outcome("ok"),
                actions_failed: outcome("failed"),
            },
        }
    }

    /// Adds a batch's messages matched and passed.
    pub(crate) fn matched(&self, matched: u64, passed: u64) {
        if matched > 0 {
            self.matched.fetch_add(matched, Ordering::Relaxed);
            self.metrics.matched.increment(matched);
        }
        if passed > 0 {
            self.passed.fetch_add(passed, Ordering::Relaxed);
            self.metrics.passed.increment(passed);
        }
    }

    pub(crate) fn action_ok(&self) {
        self.actions_ok.fetch_add(1, Ordering::Relaxed);
        self.metrics.actions_ok.increment(1);
    }

    /// A failed action: counted (as an action and as a failure of the
    /// rule), and kept as the rule's last error.
    pub(crate) fn action_failed(&self, message: String, topic: &str, payload: &[u8]) {
        self.actions_failed.fetch_add(1, Ordering::Relaxed);
        self.metrics.actions_failed.increment(1);
        self.error(message, topic, payload);
    }

    /// A failed evaluation.
    pub(crate) fn error(&self, message: String, topic: &str, payload: &[u8]) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.errors.increment(1);
        self.remember(message, topic, payload);
    }

    fn remember(&self, message: String, topic: &str, payload: &[u8]) {
        let sample =
            String::from_utf8_lossy(&payload[..payload.len().min(SAMPLE_BYTES)]).into_owned();
        *self.last_error.lock() = Some(LastError {
            at: now_ms(),
            message,
            topic: topic.to_owned(),
            sample,
        });
    }

    pub(crate) fn snapshot(&self) -> RuleStats {
        RuleStats {
            matched: self.matched.load(Ordering::Relaxed),
            passed: self.passed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            actions_ok: self.actions_ok.load(Ordering::Relaxed),
            actions_failed: self.actions_failed.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }
}

/// The engine's counters of one tenant.
pub(crate) struct TenantCounters {
    /// Messages taken from the tenant's queue and evaluated.
    pub(crate) messages: Counter,
    /// Messages dropped because the tenant's queue was full.
    pub(crate) overflow: Counter,
    /// Messages not evaluated because they had passed through too many rules.
    pub(crate) loops_stopped: Counter,
    pub(crate) overflow_count: AtomicU64,
}

impl TenantCounters {
    pub(crate) fn new(tenant: &str) -> Self {
        Self {
            messages: counter!("ferrule_rules_messages_total", "tenant" => tenant.to_owned()),
            overflow: counter!("ferrule_rules_overflow_total", "tenant" => tenant.to_owned()),
            loops_stopped: counter!("ferrule_rules_loops_stopped_total", "tenant" => tenant.to_owned()),
            overflow_count: AtomicU64::new(0),
        }
    }
}
