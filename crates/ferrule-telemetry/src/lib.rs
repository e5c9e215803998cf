//! Telemetry on the router: what devices send on their telemetry and event
//! topics, checked and handed to the store before the message is routed.
//!
//! - [`topic`]: the topic grammar, [`TelemetryTopic`] (`devices/{id}/telemetry`,
//!   `devices/{id}/events/{type}`).
//! - [`TelemetryIntake`]: the router's [`Intake`](ferrule_bus::Intake) — the
//!   refusal policy (unknown device, invalid payload, busy store, used-up
//!   budget) and the append to a [`TelemetryStore`](ferrule_store::telemetry::TelemetryStore),
//!   whose ticket the publisher's acknowledgement waits on.
//! - [`notices`]: refusals explained to MQTT devices on `devices/{id}/rejected`.
//! - [`retention`]: the background pass applying tenants' retention.
//! - [`observe`]: the events this crate logs and counts.
//!
//! The store knows nothing of the router; this crate joins the two, and the
//! binary wires it.

mod intake;
pub mod notices;
pub mod observe;
pub mod retention;
pub mod topic;

pub use intake::TelemetryIntake;
pub use notices::Notices;
pub use topic::TelemetryTopic;
