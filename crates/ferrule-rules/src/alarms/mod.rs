//! Alarms: raised and cleared by rules (or the API), acknowledged and
//! cleared by users; deduplicated by (device, type) while open; every
//! transition is a message on the router.
//!
//! PLACEHOLDER (foundation): the `alarms` work package replaces this module.

use std::sync::Arc;

use ferrule_bus::Router;
use ferrule_core::{DeviceId, TenantId};
use ferrule_store::alarms::{AlarmRecord, AlarmStore, Severity};
use serde::Serialize;

/// A request to raise an alarm (or raise it again).
#[derive(Debug, Clone)]
pub struct Raise {
    pub tenant: TenantId,
    pub device: Option<DeviceId>,
    pub alarm_type: String,
    pub severity: Severity,
    pub details: serde_json::Value,
    /// `rule:ID`, `user:EMAIL`, `key:ID`.
    pub originator: String,
}

/// What raising or clearing does (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "transition", rename_all = "snake_case")]
pub enum Transition {
    /// A new alarm.
    Raised,
    /// The open alarm `id` is raised again (count, last seen, severity,
    /// details updated).
    Updated { id: u64 },
    /// The open alarm `id` is cleared.
    Cleared { id: u64 },
    /// Clearing when no alarm of that device and type is open.
    NothingToClear,
}

#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("no such alarm")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] ferrule_store::StoreError),
}

/// The alarms service.
#[derive(Clone)]
pub struct Alarms {
    store: Arc<dyn AlarmStore>,
    router: Arc<Router>,
}

impl Alarms {
    pub fn new(store: Arc<dyn AlarmStore>, router: Arc<Router>) -> Self {
        Self { store, router }
    }

    pub fn store(&self) -> &Arc<dyn AlarmStore> {
        &self.store
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Raises, or raises again the open alarm of the device and type.
    pub async fn raise(&self, raise: Raise) -> Result<(Transition, AlarmRecord), AlarmError> {
        Err(AlarmError::Invalid(format!(
            "not built: {}",
            raise.alarm_type
        )))
    }

    /// Clears the open alarm of the device and type, if there is one.
    pub async fn clear_open(
        &self,
        _tenant: &TenantId,
        _device: Option<&DeviceId>,
        _alarm_type: &str,
        _by: &str,
    ) -> Result<(Transition, Option<AlarmRecord>), AlarmError> {
        Ok((Transition::NothingToClear, None))
    }

    /// What [`raise`](Self::raise) would do, without doing it.
    pub async fn preview_raise(&self, _raise: &Raise) -> Result<Transition, AlarmError> {
        Ok(Transition::Raised)
    }

    /// What [`clear_open`](Self::clear_open) would do, without doing it.
    pub async fn preview_clear(
        &self,
        _tenant: &TenantId,
        _device: Option<&DeviceId>,
        _alarm_type: &str,
    ) -> Result<Transition, AlarmError> {
        Ok(Transition::NothingToClear)
    }
}
