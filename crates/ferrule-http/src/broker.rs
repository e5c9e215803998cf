//! What the HTTP API asks of the MQTT broker. The API depends on this
//! trait, not on the broker's crate; the binary wires in the real broker.
//! Messages the API sends (telemetry ingest, later commands) go through the
//! router like any publisher's, not through the broker.

use std::net::SocketAddr;
use std::time::Duration;

use ferrule_core::{DeviceId, TenantId};
use futures::future::BoxFuture;
use tokio::io::DuplexStream;
use tokio_util::sync::CancellationToken;

/// The MQTT broker, as the HTTP API uses it.
pub trait MqttBroker: Send + Sync + 'static {
    /// Closes the connections of an identity whose access just changed
    /// (`owner`: a device id, `user:ID`, `key:ID`); `None` closes every
    /// connection of the tenant.
    fn disconnect_identity(&self, tenant: &TenantId, owner: Option<&str>);

    /// Forgets the sessions and retained messages of a deleted tenant (or
    /// of one device) and closes its connections.
    fn purge<'a>(
        &'a self,
        tenant: &'a TenantId,
        device: Option<&'a DeviceId>,
    ) -> BoxFuture<'a, BrokerPurge>;

    /// Loads the stored sessions and retained messages of a tenant
    /// imported while the server runs, as start-up does for every tenant;
    /// returns how many of each, or what failed.
    fn load_tenant<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<(usize, usize), String>>;

    /// Takes `bytes` of the tenant's rate (`[limits]`) for a message that
    /// arrived over HTTP; `Err(wait)` when the tenant is over its limit.
    fn take_rate(&self, tenant: &TenantId, bytes: usize) -> Result<(), Duration>;

    /// Open connections now, by transport and by tenant.
    fn connections(&self) -> MqttConnections;

    /// Largest MQTT packet; a WebSocket message may not be larger.
    fn max_packet_size(&self) -> usize;

    /// Runs one MQTT connection over `stream` (a WebSocket's bytes) until
    /// it ends or `shutdown` fires.
    fn serve(
        &self,
        stream: DuplexStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// Open MQTT connections ([`MqttBroker::connections`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttConnections {
    pub tcp: usize,
    pub tls: usize,
    pub websocket: usize,
    /// Per tenant, connections still in their handshake included.
    pub per_tenant: std::collections::HashMap<TenantId, usize>,
}

/// What [`MqttBroker::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerPurge {
    /// Connections closed.
    pub connections: usize,
    pub sessions: usize,
    pub retained: usize,
}
