//! The MQTT broker as the HTTP API sees it: the binary's side of
//! [`ferrule_http::MqttBroker`], so that the API crate does not depend on
//! the broker's.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferrule_core::{DeviceId, TenantId};
use ferrule_http::{BrokerPurge, MqttBroker, MqttConnections};
use ferrule_mqtt::broker::{Broker, serve_connection};
use tokio::io::DuplexStream;
use tokio_util::sync::CancellationToken;

use crate::broker_state::StoredBrokerState;

/// The broker behind the API, and where it keeps its state.
pub struct ApiBroker(pub Arc<Broker>, pub Arc<StoredBrokerState>);

impl MqttBroker for ApiBroker {
    fn disconnect_identity(&self, tenant: &TenantId, owner: Option<&str>) {
        self.0.disconnect_identity(tenant, owner);
    }

    fn purge<'a>(
        &'a self,
        tenant: &'a TenantId,
        device: Option<&'a DeviceId>,
    ) -> Pin<Box<dyn Future<Output = BrokerPurge> + Send + 'a>> {
        Box::pin(async move {
            let purged = self.0.purge(tenant, device).await;
            BrokerPurge {
                connections: purged.connections,
                sessions: purged.sessions,
                retained: purged.retained,
            }
        })
    }

    fn load_tenant<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> Pin<Box<dyn Future<Output = Result<(usize, usize), String>> + Send + 'a>> {
        Box::pin(async move {
            self.0
                .load_tenant(&*self.1, tenant)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn take_rate(&self, tenant: &TenantId, bytes: usize) -> Result<(), Duration> {
        self.0.rates.try_take(tenant, bytes)
    }

    fn connections(&self) -> MqttConnections {
        let open = self.0.open_connections();
        MqttConnections {
            tcp: open.tcp,
            tls: open.tls,
            websocket: open.websocket,
            per_tenant: self.0.connections_per_tenant(),
        }
    }

    fn max_packet_size(&self) -> usize {
        self.0.config.max_packet_size
    }

    fn serve(
        &self,
        stream: DuplexStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(serve_connection(
            self.0.clone(),
            stream,
            peer,
            ferrule_mqtt::broker::Transport::WebSocket,
            shutdown,
        ))
    }
}
