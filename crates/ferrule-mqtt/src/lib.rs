//! MQTT for Ferrule: the wire codec (3.1.1 and 5.0).
//!
//! `codec` turns bytes into [`codec::Packet`]s and back; sessions, the
//! subscription tree and listeners build on it.

pub mod codec;
