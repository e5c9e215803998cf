//! The router: the one place every [`Message`](ferrule_core::Message) passes.
//!
//! A [`Router`] keeps, per tenant, a [`tree::SubscriptionTree`] of who wants
//! which topic filters and the tenant's retained messages. Publishing walks
//! the tree under a per-tenant read lock (no global lock on the publish path)
//! and hands the shared `Arc<Message>` to each matching [`Subscriber`] once,
//! with the highest granted QoS of its matching subscriptions and all their
//! subscription identifiers. MQTT sessions, the telemetry writer, rules and
//! live streams are all subscribers; none of them knows about the others.

mod router;
mod tree;

pub use router::{RetainedSink, Router, TenantBus};
pub use tree::{Entry, Matched, SubscriberId, SubscriptionOptions, SubscriptionTree};

use std::sync::Arc;

use ferrule_core::Message;

/// Anything that receives messages from the router.
///
/// `deliver` runs on the publisher's task while the tenant's tree is read
/// locked: it must not block or await — queue the message and wake a task.
pub trait Subscriber: Send + Sync {
    fn deliver(&self, message: &Arc<Message>, matched: &Matched);
}
