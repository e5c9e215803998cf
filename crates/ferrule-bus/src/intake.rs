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
    /// Telemetry points the message carried, now queued for storage: the
    /// router counts them per tenant ([`TenantLoad`](crate::TenantLoad)).
    pub points: u64,
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
    /// The topic is Ferrule's to write, not a client's (a device's
    /// `state/desired`): MQTT 5 0x87, HTTP 403.
    Forbidden(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Invalid(why)
            | Refused::UnknownDevice(why)
            | Refused::QuotaExceeded(why)
            | Refused::Unavailable(why)
            | Refused::Forbidden(why) => f.write_str(why),
        }
    }
}

/// Several intake stages in order, as one: the first refusal wins (later
/// stages do not see the message), and an accepted message is durable once
/// every stage's ticket is. Stages that care about disjoint topics (the
/// telemetry writer, the twin) or check before others store (profile
/// schemas) compose this way without knowing of each other.
pub struct IntakeChain(Vec<Arc<dyn Intake>>);

impl IntakeChain {
    pub fn new(stages: Vec<Arc<dyn Intake>>) -> Self {
        Self(stages)
    }
}

impl Intake for IntakeChain {
    fn accept(&self, message: &Arc<Message>) -> Result<Accepted, Refused> {
        let mut all = Accepted::default();
        for stage in &self.0 {
            let one = stage.accept(message)?;
            all.durable_after = all.durable_after.join(one.durable_after);
            if one.backpressure.is_some() {
                all.backpressure = one.backpressure;
            }
            all.points += one.points;
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ferrule_core::{Ledger, Origin, QoS, TenantId};

    use super::*;

    struct Stage(Result<u64, &'static str>);

    impl Intake for Stage {
        fn accept(&self, _: &Arc<Message>) -> Result<Accepted, Refused> {
            match self.0 {
                Ok(seq) => Ok(Accepted {
                    durable_after: Ticket::on(Ledger::Twin, seq),
                    backpressure: None,
                    points: seq,
                }),
                Err(why) => Err(Refused::Invalid(why.into())),
            }
        }
    }

    fn message() -> Arc<Message> {
        Arc::new(Message::new(
            TenantId::new("t").unwrap(),
            "devices/d/state/reported".into(),
            Bytes::from_static(b"{}"),
            QoS::AtLeastOnce,
            Origin::Api,
        ))
    }

    #[test]
    fn a_chain_joins_tickets_and_stops_at_the_first_refusal() {
        let ok = IntakeChain::new(vec![Arc::new(Stage(Ok(3))), Arc::new(Stage(Ok(5)))]);
        let got = ok.accept(&message()).unwrap();
        assert_eq!(got.durable_after, Ticket::on(Ledger::Twin, 5));
        assert_eq!(got.points, 8, "the stages' points add up");
        let refused = IntakeChain::new(vec![Arc::new(Stage(Err("bad"))), Arc::new(Stage(Ok(5)))]);
        assert_eq!(
            refused.accept(&message()).unwrap_err(),
            Refused::Invalid("bad".into())
        );
    }
}
