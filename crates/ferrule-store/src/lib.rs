//! Ferrule's storage: the traits every backend implements, the embedded
//! backend, and the identity service built on top.
//!
//! - [`MetaStore`] holds tenants, users, sessions, API keys, devices and their
//!   credentials, and tenants' ACL rules. [`embedded::EmbeddedStore`]
//!   implements it on SQLite in the data directory. [`conformance`] is the
//!   test suite every backend must pass (the PostgreSQL backend for
//!   clusters, still to come, included).
//! - [`ProfileStore`] keeps device profiles (schemas, retention, defaults)
//!   and answers device listings filtered by labels and profile.
//! - [`BrokerStateStore`] keeps the MQTT broker's persistent sessions and
//!   retained messages across restarts.
//! - [`ConnectivityStore`] keeps each device's last known connectivity
//!   (online, last seen, last disconnect reason) across restarts.
//! - [`Identity`] turns presented secrets (passwords, bearer tokens, device
//!   tokens, certificate fingerprints) into a [`ferrule_core::Principal`], and
//!   mints and hashes secrets. Every transport authenticates through it.
//! - [`AclCache`] keeps each tenant's compiled ACL [`ferrule_core::acl::Policy`]
//!   in memory for the broker, and writes rule changes through to the store.
//! - [`twin::TwinStore`] keeps device twins and their history;
//!   [`commands::CommandStore`] the commands sent to devices (the outbox).
//! - [`rules::RuleStore`] keeps tenants' rules, [`dead_letters::DeadLetterStore`]
//!   the webhook calls that failed for good, [`alarms::AlarmStore`] alarms,
//!   [`dashboards::DashboardStore`] dashboards and their share links.
//! - [`tenant_move`] takes one tenant out of a data directory and puts it
//!   into another store, ids and credential hashes kept (tenant moves).
//! - [`Directory`] knows in memory which tenants and devices exist, for the
//!   hot paths that must not ask the store (telemetry intake, authorisation).
//! - [`telemetry::TelemetryStore`] keeps devices' time series and events;
//!   [`telemetry::embedded::EmbeddedTelemetry`] is its embedded backend and
//!   [`telemetry::conformance`] the suite every backend must pass. It reports
//!   its commits on the durability ledger of `ferrule-core`; the store knows
//!   nothing of the router (`ferrule-telemetry` joins the two).

mod acl;
pub mod alarms;
pub mod apps;
pub mod auth;
pub mod backup;
mod broker_state;
pub mod commands;
mod connectivity;
pub mod dashboards;
pub mod dead_letters;
mod directory;
pub mod embedded;
mod error;
mod identity;
mod meta;
mod model;
pub mod profiles;
pub mod rules;
pub mod scratch;
pub mod telemetry;
pub mod tenant_move;
pub mod twin;
pub mod unreadable;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use acl::AclCache;
pub use broker_state::BrokerStateStore;
pub use connectivity::{ConnectivityStore, DeviceConnectivity};
pub use directory::{Changing, Directory};
pub use error::{Result, StoreError};
pub use identity::{
    AuthError, Bootstrap, CertificateLogin, Clock, Identity, IssuedSession, UserChange,
};
pub use meta::MetaStore;
pub use model::*;
pub use profiles::{DEFAULT_PROFILE, DeviceFilter, DeviceProfile, ProfileStore};
