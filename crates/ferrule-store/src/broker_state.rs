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
    /// runs). The default filters the full load.
    async fn load_tenant_sessions(&self, tenant: &TenantId) -> Result<Vec<StoredSession>> {
        let mut sessions = self.load_sessions().await?;
        sessions.retain(|s| &s.tenant == tenant);
        Ok(sessions)
    }
    /// One tenant's retained messages. The default filters the full load.
    async fn load_tenant_retained(&self, tenant: &TenantId) -> Result<Vec<StoredMessage>> {
        Ok(self
            .load_retained()
            .await?
            .into_iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, m)| m)
            .collect())
    }
}
