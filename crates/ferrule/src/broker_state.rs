//! The broker's session store over Ferrule's storage backend.

use std::sync::Arc;

use async_trait::async_trait;
use ferrule_core::TenantId;
use ferrule_core::stored::{SessionRef, StoredMessage, StoredSession};
use ferrule_mqtt::broker::persist::{PersistError, SessionStore};
use ferrule_store::BrokerStateStore;

/// Adapts a [`BrokerStateStore`] to the broker's [`SessionStore`].
pub struct StoredBrokerState(pub Arc<dyn BrokerStateStore>);

fn err(e: ferrule_store::StoreError) -> PersistError {
    PersistError(e.to_string())
}

#[async_trait]
impl SessionStore for StoredBrokerState {
    async fn save(
        &self,
        sessions: Vec<StoredSession>,
        ended: Vec<SessionRef>,
        retained: Vec<(TenantId, StoredMessage)>,
        cleared: Vec<(TenantId, String)>,
    ) -> Result<(), PersistError> {
        self.0
            .save_broker_state(sessions, ended, retained, cleared)
            .await
            .map_err(err)
    }

    async fn load_sessions(&self) -> Result<Vec<StoredSession>, PersistError> {
        self.0.load_sessions().await.map_err(err)
    }

    async fn load_retained(&self) -> Result<Vec<(TenantId, StoredMessage)>, PersistError> {
        self.0.load_retained().await.map_err(err)
    }

    async fn load_tenant_sessions(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<StoredSession>, PersistError> {
        self.0.load_tenant_sessions(tenant).await.map_err(err)
    }

    async fn load_tenant_retained(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<StoredMessage>, PersistError> {
        self.0.load_tenant_retained(tenant).await.map_err(err)
    }
}
