//! The intake: stores that keep a message before it is routed.
//!
//! Telemetry and events must be refused when their payload is invalid, and
//! acknowledged only once stored. So the router offers every message first
//! to its [`Intake`], which may store it (returning the [`Ticket`] that makes
//! it durable) or refuse it (the message then goes nowhere and the publisher
//! learns why: MQTT 5 reason code, HTTP status).

use std::fmt;
use std::sync::Arc;

use ferrule_core::Message;
use tokio::sync::Notify;

use crate::Ticket;

/// A stage that sees every message of every tenant before fan-out.
/// `accept` runs on the publisher's task: it must not block or await.
pub trait Intake: Send + Sync {
    fn accept(&self, message: &Arc<Message>) -> Result<Accepted, Refused>;
}

/// A message the intake took (or had no interest in).
#[derive(Debug, Default)]
pub struct Accepted {
    /// Acknowledge only once this is committed.
    pub durable_after: Ticket,
    /// Set when the store is behind: a publisher that can wait should.
    pub backpressure: Option<Arc<Notify>>,
}

/// Why the intake refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The payload is not valid for its topic (MQTT 5 0x99, HTTP 400).
    Invalid(String),
    /// The topic names a device that does not exist in the tenant, whose
    /// data nothing could own (MQTT 5 0x90, HTTP 404).
    UnknownDevice(String),
    /// The tenant's storage budget is used up (MQTT 5 0x97, HTTP 507).
    QuotaExceeded(String),
    /// The store cannot take it now (MQTT 5 0x80, HTTP 503).
    Unavailable(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Invalid(why)
            | Refused::UnknownDevice(why)
            | Refused::QuotaExceeded(why)
            | Refused::Unavailable(why) => f.write_str(why),
        }
    }
}
