//! What every handler can reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrule_store::{AclCache, Directory, Identity, MetaStore};
use metrics_exporter_prometheus::PrometheusHandle;

/// Settings of the HTTP API that come from configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// The MQTT listener's port, for the connection lines the console
    /// shows with a new device's token.
    pub mqtt_port: Option<u16>,
    /// The embedded store's data directory, whose size and free space
    /// `GET /api/v1/system` reports.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            mqtt_port: None,
            data_dir: None,
        }
    }
}

/// Set once every listener is bound; `/readyz` reports it.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the `/mqtt` WebSocket endpoint needs to run MQTT connections.
#[derive(Clone)]
pub struct MqttEndpoint {
    pub broker: Arc<dyn crate::broker::MqttBroker>,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub tasks: tokio_util::task::TaskTracker,
}

/// What the telemetry routes need: the store for queries, the router for
/// ingest (which goes through the router's intake like MQTT does).
#[derive(Clone)]
pub struct TelemetryApi {
    pub store: Arc<dyn ferrule_store::telemetry::TelemetryStore>,
    pub router: Arc<ferrule_bus::Router>,
    /// The server's retention default (`telemetry.retention_days`).
    pub retention_default: Option<u32>,
}

/// Shared state of the HTTP API.
#[derive(Clone)]
pub struct AppState {
    pub identity: Identity,
    /// Rule changes go through it, so the broker's cached policies follow.
    pub acl: AclCache,
    /// Which tenants and devices exist; changed only by [`crate::lifecycle`].
    pub directory: Directory,
    pub settings: HttpSettings,
    pub readiness: Readiness,
    pub metrics: PrometheusHandle,
    /// `None` when the broker is not running (HTTP-only tests).
    pub mqtt: Option<MqttEndpoint>,
    /// `None` when telemetry storage is not running.
    pub telemetry: Option<TelemetryApi>,
    /// Twins, commands, connectivity and profiles; `None` when not running.
    pub devices: Option<ferrule_twin::DeviceServices>,
    /// Rules, alarms and webhooks; `None` when not running.
    pub rules: Option<ferrule_rules::RuleServices>,
    /// Dashboards and their share links; `None` when not available.
    pub dashboards: Option<Arc<dyn ferrule_store::dashboards::DashboardStore>>,
    /// Custom apps and their files; `None` when not available.
    pub apps: Option<Arc<dyn ferrule_store::apps::AppStore>>,
    /// The open live streams (`/api/v1/stream`).
    pub streams: crate::routes::stream::LiveStreams,
    /// Recent load per tenant, read in the background
    /// ([`LoadHistory::run`](crate::load::LoadHistory::run)).
    pub load: crate::load::LoadHistory,
    /// The HTTP listeners' open connections; `None` in tests without them.
    pub http_connections: Option<Arc<crate::server::ConnectionCaps>>,
    /// Tenant imports into this server; `None` when not available.
    pub tenant_moves: Option<crate::routes::system_import::TenantMoves>,
    /// `POST /api/v1/system/backup`; `None` when the store cannot be backed
    /// up that way.
    pub backups: Option<crate::routes::system_backup::SystemBackup>,
}

impl AppState {
    /// Closes the MQTT connections of an identity whose access just changed
    /// (see `Broker::disconnect_identity`); `None` closes the whole tenant's.
    pub fn disconnect_mqtt(&self, tenant: &ferrule_core::TenantId, owner: Option<String>) {
        if let Some(mqtt) = &self.mqtt {
            mqtt.broker.disconnect_identity(tenant, owner.as_deref());
        }
        // Its live streams too: they would otherwise last until their next
        // periodic check of the credentials.
        self.streams.close_identity(tenant, owner.as_deref());
    }

    /// The telemetry routes' dependencies, or 503.
    pub fn telemetry(&self) -> Result<&TelemetryApi, crate::error::ApiError> {
        self.telemetry.as_ref().ok_or_else(|| {
            crate::error::ApiError::Unavailable("telemetry storage is not running".into())
        })
    }

    /// The device services (twin, commands, connectivity, profiles), or 503.
    pub fn devices(&self) -> Result<&ferrule_twin::DeviceServices, crate::error::ApiError> {
        self.devices.as_ref().ok_or_else(|| {
            crate::error::ApiError::Unavailable("device services are not running".into())
        })
    }

    /// Rules, alarms and webhooks, or 503.
    pub fn rules(&self) -> Result<&ferrule_rules::RuleServices, crate::error::ApiError> {
        self.rules.as_ref().ok_or_else(|| {
            crate::error::ApiError::Unavailable("the rules engine is not running".into())
        })
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        self.identity.store()
    }
}
