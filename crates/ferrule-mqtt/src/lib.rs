//! MQTT for Ferrule: the wire codec (3.1.1 and 5.0) and the broker.
//!
//! - [`codec`] turns bytes into [`codec::Packet`]s and back.
//! - [`broker`] runs MQTT connections on any byte stream (TCP, TLS,
//!   WebSocket): it authenticates CONNECT through a [`broker::Gatekeeper`],
//!   keeps [`broker::Session`]s (subscriptions, QoS 1/2 state, queues) that
//!   outlive connections, and publishes into and subscribes from the shared
//!   [`ferrule_bus::Router`].

pub mod broker;
pub mod codec;
