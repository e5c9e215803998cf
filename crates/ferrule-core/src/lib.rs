//! Ferrule's domain vocabulary, shared by every other crate and free of I/O.
//!
//! - [`id`]: validated identifiers ([`TenantId`], [`DeviceId`]) that are safe to
//!   embed in topics and in `DEVICE@TENANT` logins.
//! - [`message`]: [`Message`], the one thing the router moves.
//! - [`durability`]: the ledgers of committed writes that acknowledgements
//!   wait on ([`Durability`], [`Ticket`]), shared by stores and publishers.
//! - [`connectivity`]: devices' connect and disconnect events, as the
//!   broker publishes them.
//! - [`role`]: the four roles and what each may do.
//! - [`principal`]: who is calling — a user, an API key or a device — once
//!   authenticated, whatever the transport.
//! - [`secret`]: generation and hashing of tokens, API keys and passwords.
//! - [`stored`]: broker state as kept across restarts.
//! - [`topic`]: MQTT topic names and filters, matching, coverage and
//!   intersection.
//! - [`acl`]: tenant ACL rules and the [`acl::Policy`] that decides who may
//!   publish or subscribe where.
//! - [`telemetry`]: device telemetry payloads parsed into readings, and the
//!   rules they must follow.

pub mod acl;
pub mod connectivity;
pub mod durability;
pub mod id;
pub mod message;
pub mod principal;
pub mod role;
pub mod secret;
pub mod stored;
pub mod telemetry;
pub mod topic;

pub use durability::{Durability, Ledger, Ticket};
pub use id::{DeviceId, ID_PATTERN, IdError, MAX_ID_LEN, TenantId};
pub use message::{Message, MessageProperties, Origin, QoS};
pub use principal::{Principal, PrincipalKind};
pub use role::Role;
