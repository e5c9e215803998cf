//! The router: the one place every [`Message`](ferrule_core::Message) passes.
//!
//! A [`Router`] keeps, per tenant, a [`tree::SubscriptionTree`] of who wants
//! which topic filters and the tenant's retained messages. Publishing walks
//! the tree under a per-tenant read lock (no global lock on the publish path)
//! and hands the shared `Arc<Message>` to each matching [`Subscriber`] once,
//! with the highest granted QoS of its matching subscriptions and all their
//! subscription identifiers. MQTT sessions, the telemetry writer, rules and
//! live streams are all subscribers; none of them knows about the others.
//! Before fan-out, the router's [`Intake`] (the telemetry writer) may store
//! the message or refuse it; [`Durability`] tells publishers when what they
//! sent is committed, whichever stores it reached.

mod intake;
mod router;
mod tree;

/// The durability ledger lives in the core (stores report to it without
/// knowing the router); re-exported for the router's users.
pub use ferrule_core::durability::{Durability, Ledger, Ticket};
pub use intake::{Accepted, Intake, IntakeChain, Refused};
pub use router::{LoadCount, RetainedSink, Router, SubscribeWatch, TenantBus, TenantLoad};
pub use tree::{Entry, Matched, SubscriberId, SubscriptionOptions, SubscriptionTree};

use std::sync::Arc;

use ferrule_core::Message;

/// Anything that receives messages from the router.
///
/// `deliver` runs on the publisher's task while the tenant's tree is read
/// locked: it must not block or await — queue the message and wake a task.
/// A subscriber whose queue is filling up returns a [`Notify`] that it
/// signals once it has drained: publishers that can wait (MQTT connections)
/// then pause reading, so TCP slows the sender instead of the broker
/// dropping what it cannot deliver.
pub trait Subscriber: Send + Sync {
    fn deliver(&self, message: &Arc<Message>, matched: &Matched) -> Delivered;

    /// The identity this subscriber receives for (an MQTT session's owner,
    /// e.g. `device:pump-1`), when it is a client's; Ferrule's own services
    /// and API streams answer `None`.
    fn owner(&self) -> Option<&str> {
        None
    }
}

/// What a subscriber reports about one delivery.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Set when its queue is long: a publisher that can wait should wait on
    /// this before publishing more.
    pub backpressure: Option<Arc<Notify>>,
    /// Set when the message was kept in storage (an offline persistent
    /// session): it is durable once this ticket is committed.
    pub durable_after: Ticket,
}

/// The outcome of a publish.
#[derive(Debug, Default)]
pub struct Published {
    /// How many subscribers took the message.
    pub delivered: usize,
    /// Set when a subscriber is congested: wait for it before publishing more.
    pub backpressure: Option<Arc<Notify>>,
    /// The store writes the message depends on: acknowledge it to the
    /// publisher only once this ticket is committed.
    pub durable_after: Ticket,
    /// Set when the intake refused the message: it was not routed.
    pub refused: Option<Refused>,
}

pub use tokio::sync::Notify;
