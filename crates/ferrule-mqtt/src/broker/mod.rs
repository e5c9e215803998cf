//! The MQTT broker: connections, sessions, and their meeting with the router.
//!
//! [`Broker`] holds what every connection shares: settings, the router, the
//! [`Gatekeeper`] (authentication and authorisation, implemented by the
//! binary over the identity store and ACL rules) and the session registry.
//! [`serve_connection`] runs one client on any byte stream; [`listener`]
//! accepts TCP connections and hands them over.

mod connection;
mod decisions;
pub mod listener;
pub mod observe;
pub mod persist;
pub mod rate;
mod refusal;
mod session;
pub mod tls;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use ferrule_bus::{Router, Ticket};
use ferrule_core::{DeviceId, Principal, PrincipalKind, TenantId};
use parking_lot::Mutex;
use refusal::ConnectionLimit;
use std::collections::{HashMap, HashSet};

pub use connection::serve_connection;
pub use decisions::{Check, Decisions};
/// Publish, subscribe, or receive a message, for authorisation: the ACL's
/// own vocabulary, so the gatekeeper passes it through.
pub use ferrule_core::acl::Access;
pub use observe::METRIC_NAMES;
pub use refusal::Refusal;
pub use session::{QueueLimits, Session, SessionRegistry};

/// Now, for message expiry (`Message::expires_at`), on tokio's clock: the
/// broker's timers (keep alive, will delay, session expiry) run on it too,
/// so a test that pauses and advances tokio's time sees messages expire in
/// step with them. Outside such tests it is the system's monotonic clock.
pub(crate) fn monotonic_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Broker settings, from configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Largest packet accepted from a client, in bytes.
    pub max_packet_size: usize,
    /// QoS 1/2 messages a client may have unacknowledged towards us.
    pub receive_maximum: u16,
    /// QoS 1/2 messages we send before waiting for acknowledgements, capped
    /// further by the client's own Receive Maximum.
    pub max_inflight: u16,
    /// Messages queued per session while it is slow or offline; beyond this,
    /// new messages are dropped and counted.
    pub max_queued: usize,
    /// Bytes of messages a session holds at most, queued or in flight, so
    /// a subscriber that stops reading cannot hold memory without bound.
    pub max_queued_bytes: usize,
    /// Topic aliases a client may use towards us.
    pub topic_alias_maximum: u16,
    /// 0 accepts the client's keep alive; otherwise the most a client gets.
    pub max_keepalive: u16,
    /// Longest a session outlives its connection, whatever the client asks.
    pub max_session_expiry: Duration,
    /// Admit clients without credentials into tenant `default`.
    pub allow_anonymous: bool,
    /// Open connections at most, across tenants.
    pub max_connections: usize,
    /// Open connections at most per tenant.
    pub max_connections_per_tenant: usize,
    /// New connections per second accepted from one source IP.
    pub max_connect_rate_per_ip: u32,
    /// How long a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Messages and bytes per second, per client and per tenant.
    pub rate_limits: rate::RateLimits,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_inflight: 256,
            max_queued: 10_000,
            max_queued_bytes: 8 * 1024 * 1024,
            topic_alias_maximum: 64,
            max_keepalive: 0,
            max_session_expiry: Duration::from_secs(7 * 24 * 3600),
            allow_anonymous: false,
            max_connections: 100_000,
            max_connections_per_tenant: 100_000,
            max_connect_rate_per_ip: 100_000,
            connect_timeout: Duration::from_secs(10),
            rate_limits: rate::RateLimits::default(),
        }
    }
}

impl BrokerConfig {
    /// What each session may hold.
    pub fn queue_limits(&self) -> session::QueueLimits {
        session::QueueLimits {
            messages: self.max_queued,
            bytes: self.max_queued_bytes,
        }
    }
}

/// What a client presents in CONNECT (and its TLS handshake).
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// `sha256:HEX` of the client certificate, when one was presented.
    pub cert_fingerprint: Option<&'a str>,
    /// The host name the client asked for in the TLS handshake (SNI), which
    /// may name its tenant.
    pub server_name: Option<&'a str>,
    /// The client's address, for backoff after failed logins.
    pub peer: std::net::IpAddr,
}

/// What the TLS handshake told about a client.
#[derive(Debug, Clone, Default)]
pub struct TlsPeer {
    /// `sha256:HEX` of the client certificate, when one was presented.
    pub cert_fingerprint: Option<String>,
    /// The server name (SNI) the client asked for, when it sent one.
    pub server_name: Option<String>,
}

/// How a client reached the broker.
#[derive(Debug, Clone)]
pub enum Transport {
    Tcp,
    Tls(TlsPeer),
    /// MQTT over a WebSocket of the HTTP listener (`/mqtt`).
    WebSocket,
}

impl Transport {
    /// The `transport` label of `ferrule_mqtt_connections`.
    pub fn label(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls(_) => "tls",
            Transport::WebSocket => "websocket",
        }
    }

    fn tls(&self) -> Option<&TlsPeer> {
        match self {
            Transport::Tls(peer) => Some(peer),
            Transport::Tcp | Transport::WebSocket => None,
        }
    }
}

/// Open connections by transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenConnections {
    pub tcp: usize,
    pub tls: usize,
    pub websocket: usize,
}

impl OpenConnections {
    pub fn total(&self) -> usize {
        self.tcp + self.tls + self.websocket
    }
}

/// Open connections per transport, kept beside the admission count (which
/// also holds connections still in their handshake).
#[derive(Debug, Default)]
struct TransportCounts([AtomicUsize; 3]);

impl TransportCounts {
    fn slot(&self, transport: &Transport) -> &AtomicUsize {
        &self.0[match transport {
            Transport::Tcp => 0,
            Transport::Tls(_) => 1,
            Transport::WebSocket => 2,
        }]
    }

    fn read(&self) -> OpenConnections {
        let [tcp, tls, websocket] = &self.0;
        OpenConnections {
            tcp: tcp.load(Ordering::Relaxed),
            tls: tls.load(Ordering::Relaxed),
            websocket: websocket.load(Ordering::Relaxed),
        }
    }
}

/// Authentication and authorisation, implemented outside the MQTT crate.
#[async_trait]
pub trait Gatekeeper: Send + Sync + 'static {
    /// Turns presented credentials into a principal.
    async fn authenticate(&self, login: Login<'_>) -> Result<Principal, Refusal>;
    /// Loads whatever `allows` needs for this tenant (ACL rules), so that the
    /// synchronous checks on the hot path hit memory.
    async fn prepare(&self, tenant: &TenantId);
    /// Whether `who` may publish to / receive from the topic, or subscribe
    /// to the filter. Must be fast and must not block.
    fn allows(&self, who: &Principal, access: Access, topic: &str) -> bool;
    /// A number that moves whenever what `allows` and `check` answer for
    /// the tenant may change (rules edited, an identity deleted):
    /// connections keep their decisions while it stays.
    fn policy_version(&self, tenant: &TenantId) -> Arc<AtomicU64>;
    /// How `who`'s publishing or receiving (per topic) is decided until
    /// the tenant's policy version moves. Must not block.
    fn check(&self, who: &Principal, access: Access) -> Check;
}

/// Everything connections share.
pub struct Broker {
    pub config: BrokerConfig,
    pub router: Arc<Router>,
    pub gate: Arc<dyn Gatekeeper>,
    pub sessions: SessionRegistry,
    /// Each tenant's rate limits, shared with HTTP ingest.
    pub rates: rate::TenantRates,
    connections: AtomicUsize,
    per_tenant: Mutex<HashMap<TenantId, usize>>,
    open: TransportCounts,
    /// Where changes are reported, once persistence is on.
    persister: OnceLock<persist::Persister>,
    me: std::sync::Weak<Broker>,
}

/// What [`Broker::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Connections closed.
    pub connections: usize,
    pub sessions: usize,
    pub retained: usize,
}

impl Broker {
    pub fn new(config: BrokerConfig, router: Arc<Router>, gate: Arc<dyn Gatekeeper>) -> Arc<Self> {
        let rates = rate::TenantRates::new(config.rate_limits);
        Arc::new_cyclic(|me| Self {
            config,
            router,
            gate,
            sessions: SessionRegistry::default(),
            rates,
            connections: AtomicUsize::new(0),
            per_tenant: Mutex::new(HashMap::new()),
            open: TransportCounts::default(),
            persister: OnceLock::new(),
            me: me.clone(),
        })
    }

    /// Restores stored sessions and retained messages, then reports every
    /// later change to `persister`. Call once, before accepting clients.
    pub async fn restore_and_persist(
        &self,
        store: &dyn persist::SessionStore,
        persister: persist::Persister,
    ) -> Result<(usize, usize), persist::PersistError> {
        // Restored sessions must report their changes like new ones.
        self.sessions.set_persister(persister.clone());
        let _ = self.persister.set(persister.clone());
        let sessions = store.load_sessions().await?;
        let restored = self.restore_sessions(store, sessions).await?;
        let retained = store.load_retained().await?;
        let kept = retained.len();
        for (tenant, m) in retained {
            self.router
                .restore_retained(Arc::new(persist::message(&tenant, m)));
        }
        self.router
            .set_retained_sink(Box::new(move |m| persister.retained(m)));
        Ok((restored, kept))
    }

    /// Loads one tenant's stored sessions and retained messages into the
    /// running broker, as start-up does for all: for a tenant imported
    /// while the server runs, so its retained messages reach new
    /// subscribers and its devices resume their sessions at once. Call
    /// before the tenant's clients get rights (the directory learns the
    /// tenant). Returns the sessions and retained messages loaded.
    pub async fn load_tenant(
        &self,
        store: &dyn persist::SessionStore,
        tenant: &TenantId,
    ) -> Result<(usize, usize), persist::PersistError> {
        let mut sessions = store.load_tenant_sessions(tenant).await?;
        // A client that connected meanwhile keeps the session it has.
        let live: HashSet<(String, String)> = self
            .sessions
            .all()
            .iter()
            .filter(|s| &s.tenant == tenant)
            .map(|s| (s.owner.to_string(), s.client_id.to_string()))
            .collect();
        sessions.retain(|s| !live.contains(&(s.owner.clone(), s.client_id.clone())));
        let restored = self.restore_sessions(store, sessions).await?;
        let retained = store.load_tenant_retained(tenant).await?;
        let kept = retained.len();
        for m in retained {
            // Already stored: restored without going to the sink again.
            self.router
                .restore_retained(Arc::new(persist::message(tenant, m)));
        }
        Ok((restored, kept))
    }

    /// Registers stored sessions that have not expired, each ending when
    /// its expiry passes without a client; deletes the expired ones from
    /// `store`. Returns how many were registered.
    async fn restore_sessions(
        &self,
        store: &dyn persist::SessionStore,
        sessions: Vec<ferrule_core::stored::StoredSession>,
    ) -> Result<usize, persist::PersistError> {
        let now = ferrule_core::message::now_ms();
        let mut expired = Vec::new();
        let mut restored = 0;
        for stored in sessions {
            if stored.expires_at_ms <= now {
                expired.push(ferrule_core::stored::SessionRef {
                    tenant: stored.tenant.clone(),
                    owner: stored.owner.clone(),
                    client_id: stored.client_id.clone(),
                });
                continue;
            }
            let left = Duration::from_millis((stored.expires_at_ms - now) as u64);
            let session = self
                .sessions
                .restore(&self.router, stored, self.config.queue_limits());
            self.schedule_expiry(session, left);
            restored += 1;
        }
        if !expired.is_empty() {
            store
                .save(Vec::new(), expired, Vec::new(), Vec::new())
                .await?;
        }
        Ok(restored)
    }

    /// Ends a restored session when its expiry passes without a client.
    fn schedule_expiry(&self, session: Arc<Session>, after: Duration) {
        let generation = session.state().generation;
        let router = self.router.clone();
        let registry = self.sessions_handle();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(broker) = registry.upgrade() {
                broker.sessions.end_if_idle(&router, &session, generation);
            }
        });
    }

    fn sessions_handle(&self) -> std::sync::Weak<Broker> {
        self.me.clone()
    }

    /// Writes every persistent session as it is now (at shutdown).
    pub async fn save_all(
        &self,
        store: &dyn persist::SessionStore,
    ) -> Result<(), persist::PersistError> {
        let snapshots = self
            .sessions
            .all()
            .iter()
            .filter_map(|s| persist::snapshot(s))
            .collect();
        store
            .save(snapshots, Vec::new(), Vec::new(), Vec::new())
            .await
    }

    /// Disconnects an identity's MQTT clients (DISCONNECT 0x98 in MQTT 5)
    /// after its credentials were revoked or its rights changed, so a revoked
    /// secret stops working for connections already open, not only new ones.
    /// `owner: None` disconnects the whole tenant.
    pub fn disconnect_identity(&self, tenant: &TenantId, owner: Option<&str>) -> usize {
        let n = self.sessions.kick_owner(
            tenant,
            owner,
            crate::codec::ReasonCode::ADMINISTRATIVE_ACTION,
        );
        if n > 0 {
            tracing::info!(tenant = %tenant, owner = owner.unwrap_or("*"), connections = n, "disconnected MQTT clients of a changed identity");
        }
        n
    }

    /// Removes what the broker keeps for a deleted tenant (`device: None`)
    /// or device: its clients' connections close (DISCONNECT 0x98,
    /// administrative action), its sessions end without their wills (a
    /// deleted identity announces nothing), and its retained messages go —
    /// the whole tenant's, or the device's topic space `devices/{id}/#` —
    /// in memory and in storage. Returns once that is durable.
    ///
    /// Call it once the identities are gone from the store (no new login)
    /// and denied by the [`Gatekeeper`] (a closing connection's last
    /// publishes and its will are refused).
    pub async fn purge(&self, tenant: &TenantId, device: Option<&DeviceId>) -> Purged {
        let owner = device.map(PrincipalKind::device_owner);
        let connections = self.disconnect_identity(tenant, owner.as_deref());
        let doomed: Vec<Arc<Session>> = self
            .sessions
            .all()
            .into_iter()
            .filter(|s| &s.tenant == tenant && owner.as_deref().is_none_or(|o| *s.owner == *o))
            .collect();
        for s in &doomed {
            s.state().pending_will = None;
            self.sessions.end(&self.router, s);
        }
        // After the sessions: ending them unsubscribes from the tenant's bus.
        let (retained, cleared) = match device {
            Some(d) => self
                .router
                .clear_retained(tenant, &format!("devices/{d}/#")),
            None => {
                self.rates.remove(tenant);
                self.router.remove_tenant(tenant)
            }
        };
        // The sessions' ends were queued before: one ticket covers all.
        let ticket = self
            .persister
            .get()
            .map_or(Ticket::NONE, persist::Persister::barrier);
        self.router.durability().wait(cleared.join(ticket)).await;
        Purged {
            connections,
            sessions: doomed.len(),
            retained,
        }
    }

    /// Open connections now.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Open connections by transport (past their handshake).
    pub fn open_connections(&self) -> OpenConnections {
        self.open.read()
    }

    /// Connections per tenant, handshakes in progress included.
    pub fn connections_per_tenant(&self) -> HashMap<TenantId, usize> {
        self.per_tenant.lock().clone()
    }

    /// Claims a connection slot for the tenant, or says which limit is hit.
    fn admit(self: &Arc<Self>, tenant: &TenantId) -> Result<ConnectionSlot, ConnectionLimit> {
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.config.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectionLimit::Global);
        }
        let mut per = self.per_tenant.lock();
        let n = per.entry(tenant.clone()).or_default();
        if *n >= self.config.max_connections_per_tenant {
            drop(per);
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectionLimit::Tenant);
        }
        *n += 1;
        Ok(ConnectionSlot {
            broker: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

/// A claimed connection slot, released on drop.
struct ConnectionSlot {
    broker: Arc<Broker>,
    tenant: TenantId,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.broker.connections.fetch_sub(1, Ordering::AcqRel);
        let mut per = self.broker.per_tenant.lock();
        if let Some(n) = per.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.tenant);
            }
        }
    }
}
