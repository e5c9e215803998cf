//! TEMPORARY: replaced by the alarms work package.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};

use super::EmbeddedStore;
use crate::alarms::{AlarmFilter, AlarmRecord, AlarmStore};
use crate::{Page, PageRequest, Result, StoreError};

#[async_trait]
impl AlarmStore for EmbeddedStore {
    async fn save_alarm(&self, _alarm: &AlarmRecord) -> Result<Option<u64>> {
        Ok(None)
    }
    async fn get_alarm(&self, _tenant: &TenantId, _id: u64) -> Result<AlarmRecord> {
        Err(StoreError::NotFound { kind: "alarm" })
    }
    async fn open_alarm(
        &self,
        _tenant: &TenantId,
        _device: Option<&DeviceId>,
        _alarm_type: &str,
    ) -> Result<Option<AlarmRecord>> {
        Ok(None)
    }
    async fn list_alarms(
        &self,
        _tenant: &TenantId,
        _filter: &AlarmFilter,
        _page: &PageRequest,
    ) -> Result<Page<AlarmRecord>> {
        Ok(Page {
            items: vec![],
            next: None,
        })
    }
}
