//! Ferrule's HTTP API.
//!
//! [`app`] builds the axum router from an [`AppState`]: the REST resources
//! under `/api/v1` (in [`routes`]), `/api/openapi.json` generated from the
//! same route declarations, and the operational endpoints `/healthz`,
//! `/readyz` and `/metrics`. Requests are authenticated by the [`Caller`]
//! extractor through the store's `Identity`; every error leaves as RFC 9457
//! problem+json through the single mapping in [`error`]. Tenants and devices
//! are created and deleted across every store by [`lifecycle`]. The MQTT
//! broker is reached through the [`MqttBroker`] trait. The web console
//! (server-rendered pages at `/`, see `console`) reads the same services.

mod broker;
mod console;
pub mod error;
mod extract;
pub mod lifecycle;
pub mod load;
pub mod observe;
mod pagination;
pub mod routes;
pub mod server;
mod state;

pub use broker::{BrokerPurge, MqttBroker, MqttConnections};
pub use extract::Caller;
pub use routes::stream::{LiveStreams, StreamLimits};
pub use routes::system_backup::SystemBackup;
pub use routes::{app, openapi};
pub use server::{ConnectionCaps, HttpLimits, Serving};
pub use state::{AppState, HttpSettings, MqttEndpoint, Readiness, TelemetryApi};
