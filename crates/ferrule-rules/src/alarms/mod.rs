//! Alarms: raised and cleared by rules (or the API), acknowledged and
//! cleared by users; deduplicated by (device, type) while open; every
//! transition is a message on the router.
//!
//! Life of an alarm: `active` → `acknowledged` → `cleared`, or `active` →
//! `cleared`. While it is open (not cleared), raising the same (device,
//! type) again updates it: count + 1, last seen now, severity and details
//! replaced; an acknowledged alarm stays acknowledged (someone is on it; the
//! count says it keeps happening). Once cleared, it is history: the next
//! raise creates a new alarm with a new id. Acknowledging or clearing a
//! cleared alarm, or acknowledging an acknowledged one, is a conflict.
//!
//! Writes of a tenant's alarms take turns ([`turns`]), so concurrent raises
//! of one (device, type) find one open alarm; the store's unique index backs
//! that up. Each transition is published after the store write, with
//! `Origin::System` and QoS 0, on `$ferrule/devices/{id}/alarms` or
//! `$ferrule/alarms` (see [`view`]).

mod limits;
mod observe;
mod turns;
pub mod view;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use ferrule_bus::Router;
use ferrule_core::message::now_ms;
use ferrule_core::{DeviceId, Message, Origin, QoS, TenantId};
use ferrule_store::alarms::{AlarmFilter, AlarmRecord, AlarmState, AlarmStore, Severity};
use ferrule_store::{Page, PageRequest, StoreError};
use serde::Serialize;

pub use limits::{MAX_DETAILS_BYTES, MAX_OPEN_PER_TENANT, MAX_TYPE_CHARS};
pub use observe::{ALARMS as ALARMS_METRIC, REFUSED as REFUSED_METRIC};
pub use view::{AlarmEvent, AlarmMessage, AlarmView};

use observe::{AlarmRefused, AlarmTransitioned};
use turns::Turns;

/// The longest a write waits for its tenant's turn.
const TURN_WAIT: Duration = Duration::from_secs(10);

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
    /// Raising on a device the tenant does not have.
    #[error("no such device")]
    DeviceNotFound,
    /// The transition does not apply to the alarm's state (e.g.
    /// acknowledging a cleared alarm).
    #[error("{0}")]
    Conflict(String),
    /// A new alarm would exceed the tenant's bound on open alarms.
    #[error(
        "the tenant has {limit} open alarms, the most allowed: clear some before raising new ones"
    )]
    TooManyOpen { limit: u64 },
    /// The tenant's alarm writes are backed up; retry shortly.
    #[error("alarms of this tenant are busy; retry shortly")]
    Busy,
}

/// The alarms service.
#[derive(Clone)]
pub struct Alarms {
    store: Arc<dyn AlarmStore>,
    router: Arc<Router>,
    turns: Arc<Turns>,
    max_open: u64,
}

impl Alarms {
    pub fn new(store: Arc<dyn AlarmStore>, router: Arc<Router>) -> Self {
        Self {
            store,
            router,
            turns: Arc::new(Turns::new(TURN_WAIT)),
            max_open: MAX_OPEN_PER_TENANT,
        }
    }

    /// Bounds each tenant's open alarms at `max_open` instead of
    /// [`MAX_OPEN_PER_TENANT`].
    pub fn with_max_open(mut self, max_open: u64) -> Self {
        self.max_open = max_open;
        self
    }

    pub fn store(&self) -> &Arc<dyn AlarmStore> {
        &self.store
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Raises, or raises again the open alarm of the device and type.
    pub async fn raise(&self, raise: Raise) -> Result<(Transition, AlarmRecord), AlarmError> {
        let _turn = self.turn(&raise.tenant).await?;
        let now = now_ms();
        let (event, record) = match self.plan_raise(&raise).await? {
            Some(mut open) => {
                open.count = open.count.saturating_add(1);
                // A clock stepping back must not make the alarm older.
                open.last_seen = open.last_seen.max(now);
                open.severity = raise.severity;
                open.details = raise.details;
                self.save(&open).await?.ok_or(AlarmError::DeviceNotFound)?;
                (AlarmEvent::Updated, open)
            }
            None => {
                let mut new = AlarmRecord {
                    tenant: raise.tenant,
                    id: 0,
                    device: raise.device,
                    alarm_type: raise.alarm_type,
                    severity: raise.severity,
                    state: AlarmState::Active,
                    details: raise.details,
                    count: 1,
                    first_seen: now,
                    last_seen: now,
                    originator: raise.originator,
                    acknowledged_by: None,
                    acknowledged_at: None,
                    cleared_by: None,
                    cleared_at: None,
                };
                new.id = self.save(&new).await?.ok_or(AlarmError::DeviceNotFound)?;
                (AlarmEvent::Raised, new)
            }
        };
        self.announce(event, &record);
        let transition = match event {
            AlarmEvent::Raised => Transition::Raised,
            _ => Transition::Updated { id: record.id },
        };
        Ok((transition, record))
    }

    /// Clears the open alarm of the device and type, if there is one.
    pub async fn clear_open(
        &self,
        tenant: &TenantId,
        device: Option<&DeviceId>,
        alarm_type: &str,
        by: &str,
    ) -> Result<(Transition, Option<AlarmRecord>), AlarmError> {
        limits::check_type(alarm_type)?;
        limits::check_who(by)?;
        let _turn = self.turn(tenant).await?;
        let Some(open) = self.store.open_alarm(tenant, device, alarm_type).await? else {
            return Ok((Transition::NothingToClear, None));
        };
        match self.finish(open, by).await? {
            Some(cleared) => Ok((Transition::Cleared { id: cleared.id }, Some(cleared))),
            // Its device was deleted meanwhile: nothing left to clear.
            None => Ok((Transition::NothingToClear, None)),
        }
    }

    /// What [`raise`](Self::raise) would do, without doing it: the same
    /// checks and the same decision, errors included.
    pub async fn preview_raise(&self, raise: &Raise) -> Result<Transition, AlarmError> {
        Ok(match self.plan_raise(raise).await? {
            None => Transition::Raised,
            Some(open) => Transition::Updated { id: open.id },
        })
    }

    /// What [`clear_open`](Self::clear_open) would do, without doing it.
    pub async fn preview_clear(
        &self,
        tenant: &TenantId,
        device: Option<&DeviceId>,
        alarm_type: &str,
    ) -> Result<Transition, AlarmError> {
        limits::check_type(alarm_type)?;
        Ok(
            match self.store.open_alarm(tenant, device, alarm_type).await? {
                Some(open) => Transition::Cleared { id: open.id },
                None => Transition::NothingToClear,
            },
        )
    }

    /// Acknowledges an active alarm: someone is on it.
    pub async fn acknowledge(
        &self,
        tenant: &TenantId,
        id: u64,
        by: &str,
    ) -> Result<AlarmRecord, AlarmError> {
        limits::check_who(by)?;
        let _turn = self.turn(tenant).await?;
        let mut alarm = self.get(tenant, id).await?;
        match alarm.state {
            AlarmState::Active => {}
            AlarmState::Acknowledged => {
                return Err(AlarmError::Conflict(format!(
                    "alarm {id} is already acknowledged (by {})",
                    alarm.acknowledged_by.as_deref().unwrap_or("someone")
                )));
            }
            AlarmState::Cleared => {
                return Err(AlarmError::Conflict(format!(
                    "alarm {id} is cleared: only open alarms can be acknowledged"
                )));
            }
        }
        alarm.state = AlarmState::Acknowledged;
        alarm.acknowledged_by = Some(by.to_owned());
        alarm.acknowledged_at = Some(now_ms());
        self.save(&alarm).await?.ok_or(AlarmError::NotFound)?;
        self.announce(AlarmEvent::Acknowledged, &alarm);
        Ok(alarm)
    }

    /// Clears an open (active or acknowledged) alarm; it stays as history.
    pub async fn clear(
        &self,
        tenant: &TenantId,
        id: u64,
        by: &str,
    ) -> Result<AlarmRecord, AlarmError> {
        limits::check_who(by)?;
        let _turn = self.turn(tenant).await?;
        let alarm = self.get(tenant, id).await?;
        if alarm.state == AlarmState::Cleared {
            return Err(AlarmError::Conflict(format!(
                "alarm {id} is already cleared (by {})",
                alarm.cleared_by.as_deref().unwrap_or("someone")
            )));
        }
        self.finish(alarm, by).await?.ok_or(AlarmError::NotFound)
    }

    /// One alarm of the tenant; another tenant's is [`AlarmError::NotFound`].
    pub async fn get(&self, tenant: &TenantId, id: u64) -> Result<AlarmRecord, AlarmError> {
        self.store.get_alarm(tenant, id).await.map_err(|e| match e {
            StoreError::NotFound { .. } => AlarmError::NotFound,
            e => AlarmError::Store(e),
        })
    }

    /// The tenant's alarms, most recently seen first.
    pub async fn list(
        &self,
        tenant: &TenantId,
        filter: &AlarmFilter,
        page: &PageRequest,
    ) -> Result<Page<AlarmRecord>, AlarmError> {
        Ok(self.store.list_alarms(tenant, filter, page).await?)
    }

    async fn turn(&self, tenant: &TenantId) -> Result<tokio::sync::MutexGuard<'_, ()>, AlarmError> {
        self.turns.take(tenant).await.ok_or(AlarmError::Busy)
    }

    /// What raising will do, decided alike for the real call and the dry
    /// run: the open alarm it raises again, or `None` for a new one.
    async fn plan_raise(&self, raise: &Raise) -> Result<Option<AlarmRecord>, AlarmError> {
        limits::check_type(&raise.alarm_type)?;
        limits::check_details(&raise.details)?;
        limits::check_who(&raise.originator)?;
        if let Some(device) = &raise.device
            && !self
                .store
                .alarm_device_exists(&raise.tenant, device)
                .await?
        {
            return Err(AlarmError::DeviceNotFound);
        }
        let open = self
            .store
            .open_alarm(&raise.tenant, raise.device.as_ref(), &raise.alarm_type)
            .await?;
        if open.is_some() {
            return Ok(open);
        }
        let count = self.store.count_open_alarms(&raise.tenant).await?;
        if count >= self.max_open {
            AlarmRefused {
                tenant: &raise.tenant,
                open: count,
                limit: self.max_open,
            }
            .emit();
            return Err(AlarmError::TooManyOpen {
                limit: self.max_open,
            });
        }
        Ok(None)
    }

    /// Clears `alarm` (open) and announces it; `None` when its device is gone.
    async fn finish(
        &self,
        mut alarm: AlarmRecord,
        by: &str,
    ) -> Result<Option<AlarmRecord>, AlarmError> {
        alarm.state = AlarmState::Cleared;
        alarm.cleared_by = Some(by.to_owned());
        alarm.cleared_at = Some(now_ms());
        if self.save(&alarm).await?.is_none() {
            return Ok(None);
        }
        self.announce(AlarmEvent::Cleared, &alarm);
        Ok(Some(alarm))
    }

    async fn save(&self, alarm: &AlarmRecord) -> Result<Option<u64>, AlarmError> {
        Ok(self.store.save_alarm(alarm).await?)
    }

    /// Publishes a transition, once stored, for rules and live streams.
    fn announce(&self, event: AlarmEvent, alarm: &AlarmRecord) {
        let payload = AlarmMessage {
            event,
            alarm: AlarmView::from(alarm),
        };
        let message = Message::new(
            alarm.tenant.clone(),
            view::topic_of(alarm).into(),
            payload.to_bytes(),
            QoS::AtMostOnce,
            Origin::System,
        );
        self.router.publish(Arc::new(message));
        AlarmTransitioned {
            tenant: &alarm.tenant,
            event,
        }
        .emit();
    }
}
