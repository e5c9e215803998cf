//! A rule as users write it: its SQL and its actions (the API's JSON).
//!
//! Strings in actions are templates: `${name}` is replaced by the field
//! `name` of the rule's output (the SELECT's columns), `${a.b}` by a nested
//! field. See [`crate::template`].

use serde::{Deserialize, Serialize};

/// Most actions a rule may have.
pub const MAX_ACTIONS: usize = 16;
/// Longest rule SQL, in bytes.
pub const MAX_SQL_BYTES: usize = 16 * 1024;
/// How many times a webhook call is retried at most.
pub const MAX_WEBHOOK_RETRIES: u32 = 10;
/// The longest a webhook call may take.
pub const MAX_WEBHOOK_TIMEOUT_MS: u64 = 60_000;

/// One thing a rule does with each message that passes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Publish the output (or `payload`) on a topic of the tenant.
    Republish {
        /// Topic template, e.g. `alerts/${device_id}`.
        topic: String,
        #[serde(default)]
        qos: u8,
        #[serde(default)]
        retain: bool,
        /// JSON template of the payload; the rule's output when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<serde_json::Value>,
    },
    /// Call an HTTP endpoint; 4xx, 5xx and timeouts are failures, retried
    /// with exponential backoff and jitter, then kept as a dead letter.
    Webhook {
        url: String,
        #[serde(default = "default_method")]
        method: String,
        /// Header values are templates.
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
        /// Body template (text); the rule's output as JSON when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        #[serde(default = "default_retries")]
        retries: u32,
        /// The first retry's delay; each next one doubles it.
        #[serde(default = "default_backoff_ms")]
        backoff_ms: u64,
    },
    /// Store as telemetry of a device of the tenant (this message's device
    /// when `device` is absent).
    Store {
        /// Device id template.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        /// JSON template of the values; the rule's output when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<serde_json::Value>,
    },
    /// Raise or clear an alarm of a device (this message's device when
    /// `device` is absent).
    Alarm {
        #[serde(default)]
        op: AlarmOp,
        /// Alarm type template, e.g. `overheat`.
        alarm_type: String,
        #[serde(default = "default_severity")]
        severity: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        /// JSON template of the details; the rule's output when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
    },
    /// Send a command to a device through the command tracker (outbox and
    /// all); this message's device when `device` is absent.
    Command {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        /// JSON template of the parameters; `{}` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<serde_json::Value>,
        /// Seconds the command waits in the outbox before it expires.
        #[serde(default = "default_command_ttl")]
        ttl_s: u64,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmOp {
    #[default]
    Raise,
    Clear,
}

fn default_method() -> String {
    "POST".into()
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_retries() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_severity() -> String {
    "major".into()
}
fn default_command_ttl() -> u64 {
    3_600
}

impl Action {
    /// The action's kind as the API and metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Republish { .. } => "republish",
            Action::Webhook { .. } => "webhook",
            Action::Store { .. } => "store",
            Action::Alarm { .. } => "alarm",
            Action::Command { .. } => "command",
        }
    }
}
