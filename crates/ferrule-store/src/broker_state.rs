//! The MQTT broker's state store trait.

use async_trait::async_trait;
use ferrule_core::TenantId;
use ferrule_core::stored::{SessionRef, StoredMessage, StoredSession};

use crate::Result;

/// Persistent sessions and retained messages. Writes replace: saving a
/// session stores exactly the given snapshot.
#[async_trait]
pub trait BrokerStateStore: Send + Sync + 'static {
    /// Saves sessions and retained changes in one transaction.
    async fn save_broker_state(
        &self,
        sessions: Vec<StoredSession>,
        ended: Vec<SessionRef>,
        retained: Vec<(TenantId, StoredMessage)>,
        cleared: Vec<(TenantId, String)>,
    ) -> Result<()>;
    /// Every stored session (expired ones included: the broker decides).
    async fn load_sessions(&self) -> Result<Vec<StoredSession>>;
    /// Every retained message.
    async fn load_retained(&self) -> Result<Vec<(TenantId, StoredMessage)>>;
    /// One tenant's stored sessions (a tenant imported while the server
    /// runs).
    async fn load_tenant_sessions(&self, tenant: &TenantId) -> Result<Vec<StoredSession>>;
    /// One tenant's retained messages.
    async fn load_tenant_retained(&self, tenant: &TenantId) -> Result<Vec<StoredMessage>>;
}
