//! [`TelemetryIntake`]: the refusal policy in front of the telemetry store.
//!
//! For a device's telemetry or event topic it refuses, in this order: a
//! device the tenant does not have, an HTTP publish while the store is
//! behind (MQTT publishers are slowed instead), a payload that breaks the
//! parsing rules, and whatever the store refuses (a used-up budget, a
//! failure). What it accepts is appended, and the publisher's
//! acknowledgement waits for the append's ticket.

use std::sync::Arc;
use std::time::Duration;

use ferrule_bus::{Accepted, Intake, Ledger, Refused, Ticket};
use ferrule_core::telemetry::{PayloadLimits, parse_telemetry};
use ferrule_core::{DeviceId, Message, Origin, TenantId};
use ferrule_store::Directory;
use ferrule_store::telemetry::{NewEvent, TelemetryError, TelemetryStore};

use crate::notices::Notices;
use crate::observe::{RefusalLog, RefusalReason, TelemetryReceived, TelemetryRefused};
use crate::topic::TelemetryTopic;

/// Stores telemetry and events as they pass the router.
pub struct TelemetryIntake {
    store: Arc<dyn TelemetryStore>,
    /// Only devices that exist keep data: a deleted device's id must not
    /// gather any before it is created anew (which purges what was left).
    directory: Directory,
    limits: PayloadLimits,
    /// Explains refusals to the device on `devices/{id}/rejected`.
    notices: Option<Notices>,
    refusal_log: RefusalLog,
}

impl TelemetryIntake {
    pub fn new(
        store: Arc<dyn TelemetryStore>,
        directory: Directory,
        max_future_skew: Duration,
    ) -> Self {
        Self {
            store,
            directory,
            limits: PayloadLimits {
                max_future_skew_ms: max_future_skew.as_millis() as i64,
                ..PayloadLimits::default()
            },
            notices: None,
            refusal_log: RefusalLog::default(),
        }
    }

    /// Sends refusal notices to devices (see [`notices`](crate::notices)).
    pub fn with_notices(mut self, notices: Notices) -> Self {
        self.notices = Some(notices);
        self
    }

    /// Counts and logs a refusal of an existing device's data, and tells
    /// an MQTT device why.
    fn refused_device(
        &self,
        message: &Message,
        device: &DeviceId,
        reason: RefusalReason,
        why: &str,
    ) {
        self.refused(&message.tenant, device.as_str(), reason, why);
        // An HTTP caller has its answer in the response already.
        if let Some(notices) = &self.notices
            && matches!(message.origin, Origin::Mqtt { .. })
        {
            notices.refused(&message.tenant, device, &message.topic, reason, why);
        }
    }

    fn refused(&self, tenant: &TenantId, device: &str, reason: RefusalReason, why: &str) {
        TelemetryRefused {
            tenant,
            device,
            reason,
            why,
        }
        .emit(&self.refusal_log);
    }
}

impl Intake for TelemetryIntake {
    fn accept(&self, message: &Arc<Message>) -> Result<Accepted, Refused> {
        let Some(target) = TelemetryTopic::parse(&message.topic) else {
            return Ok(Accepted::default());
        };
        let device_str = target.device();
        // Not a device id (a wildcard-like or oversized level): nothing
        // could ever query it, so it is only routed.
        let Ok(device) = DeviceId::new(device_str) else {
            return Ok(Accepted::default());
        };
        let tenant = &message.tenant;
        let unknown = || {
            let why = format!(
                "no such device {device_str} in this tenant: create it before sending its data"
            );
            self.refused(tenant, device_str, RefusalReason::UnknownDevice, &why);
            Err(Refused::UnknownDevice(why))
        };
        if !self.directory.has_device(tenant, &device) {
            return unknown();
        }
        // Storage is behind. An MQTT publisher is slowed below (it stops
        // being read until the store catches up); an HTTP request cannot
        // be, so it is asked to retry (503 with Retry-After); a rule's store
        // action, which nothing would slow, fails and is counted.
        if matches!(message.origin, Origin::Api | Origin::Rule { .. }) && self.store.busy() {
            let why = "telemetry storage is behind; retry shortly";
            self.refused(tenant, device_str, RefusalReason::Busy, why);
            return Err(Refused::Unavailable(why.into()));
        }
        let (readings, events) = match target {
            TelemetryTopic::Telemetry { .. } => {
                let mut readings = Vec::new();
                if let Err(e) = parse_telemetry(
                    &message.payload,
                    message.received_at_ms,
                    &self.limits,
                    &mut readings,
                ) {
                    let why = e.to_string();
                    self.refused_device(message, &device, RefusalReason::Payload(e.kind()), &why);
                    return Err(Refused::Invalid(why));
                }
                TelemetryReceived {
                    points: readings.len() as u64,
                }
                .emit();
                (readings, Vec::new())
            }
            TelemetryTopic::Event { event_type, .. } => (
                Vec::new(),
                vec![NewEvent {
                    ts: message.received_at_ms,
                    event_type: event_type.to_owned(),
                    payload: message.payload.clone(),
                }],
            ),
        };
        // Queued while the device is known to exist: its deletion, which
        // queues the purge of its telemetry, waits for this and the other
        // way round (see `Directory`).
        let points = readings.len() as u64;
        let appended = self.directory.with_device(tenant, &device, || {
            self.store.append(tenant, &device, readings, events)
        });
        let Some(appended) = appended else {
            // Deleted while the payload was parsed.
            return unknown();
        };
        match appended {
            Ok(appended) => Ok(Accepted {
                durable_after: if appended.ticket == 0 {
                    Ticket::NONE
                } else {
                    Ticket::on(Ledger::Telemetry, appended.ticket)
                },
                backpressure: appended.backpressure,
                points,
            }),
            Err(e @ TelemetryError::QuotaExceeded { .. }) => {
                self.refused_device(
                    message,
                    &device,
                    RefusalReason::QuotaExceeded,
                    &e.to_string(),
                );
                Err(Refused::QuotaExceeded(e.to_string()))
            }
            Err(e) => {
                self.refused_device(message, &device, RefusalReason::Unavailable, &e.to_string());
                Err(Refused::Unavailable(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use async_trait::async_trait;
    use ferrule_core::QoS;
    use ferrule_store::telemetry::{
        Agg, Appended, Deleted, Event, EventQuery, ExportRecord, Order, Point, PurgeQueued,
        PurgeScope, Range, Reading, Result, RetentionSettings, SeriesQuery,
    };
    use parking_lot::Mutex;
    use tokio::sync::mpsc;

    use super::*;

    /// One append as the store received it.
    type Append = (TenantId, DeviceId, Vec<Reading>, Vec<NewEvent>);

    /// A store that answers appends as told and records them; the intake
    /// calls nothing else.
    struct FakeStore {
        busy: bool,
        answer: fn() -> Result<Appended>,
        appended: Mutex<Vec<Append>>,
    }

    fn stored(ticket: u64) -> Result<Appended> {
        Ok(Appended {
            ticket,
            backpressure: None,
        })
    }

    #[async_trait]
    impl TelemetryStore for FakeStore {
        fn append(
            &self,
            tenant: &TenantId,
            device: &DeviceId,
            readings: Vec<Reading>,
            events: Vec<NewEvent>,
        ) -> Result<Appended> {
            self.appended
                .lock()
                .push((tenant.clone(), device.clone(), readings, events));
            (self.answer)()
        }
        fn busy(&self) -> bool {
            self.busy
        }
        async fn raw(&self, _: SeriesQuery, _: Order, _: usize) -> Result<Vec<Point>> {
            unreachable!()
        }
        async fn aggregate(&self, _: SeriesQuery, _: i64, _: Agg) -> Result<Vec<(i64, f64)>> {
            unreachable!()
        }
        async fn latest(
            &self,
            _: &TenantId,
            _: &DeviceId,
            _: &[String],
        ) -> Result<BTreeMap<String, Point>> {
            unreachable!()
        }
        async fn keys(&self, _: &TenantId, _: &DeviceId) -> Result<Vec<String>> {
            unreachable!()
        }
        async fn devices(&self, _: &TenantId) -> Result<Vec<DeviceId>> {
            unreachable!()
        }
        async fn events(&self, _: EventQuery) -> Result<Vec<Event>> {
            unreachable!()
        }
        fn export(
            &self,
            _: &TenantId,
            _: Range,
            _: &mut dyn FnMut(ExportRecord) -> bool,
        ) -> Result<()> {
            unreachable!()
        }
        async fn retention(&self, _: &TenantId) -> Result<RetentionSettings> {
            unreachable!()
        }
        async fn set_retention(&self, _: &TenantId, _: RetentionSettings) -> Result<()> {
            unreachable!()
        }
        async fn delete_before(&self, _: &TenantId, _: &DeviceId, _: i64) -> Result<Deleted> {
            unreachable!()
        }
        fn purge(&self, _: PurgeScope) -> Result<PurgeQueued> {
            unreachable!()
        }
        fn disk_bytes(&self, _: &TenantId) -> u64 {
            unreachable!()
        }
        async fn seal_all(&self) -> Result<()> {
            unreachable!()
        }
        async fn close(&self) -> Result<()> {
            unreachable!()
        }
    }

    struct Setup {
        store: Arc<FakeStore>,
        intake: TelemetryIntake,
        notices: mpsc::Receiver<Arc<Message>>,
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).unwrap()
    }

    /// An intake over a store answering `answer`, in which tenant `acme`
    /// has device `d1`.
    async fn setup(busy: bool, answer: fn() -> Result<Appended>) -> Setup {
        let directory = Directory::default();
        {
            let changing = directory.changing().await;
            directory.add_tenant(&changing, &tenant("acme"));
            directory.add_tenant(&changing, &tenant("other"));
            directory.add_device(&changing, &tenant("acme"), &DeviceId::new("d1").unwrap());
        }
        let store = Arc::new(FakeStore {
            busy,
            answer,
            appended: Mutex::default(),
        });
        let (notices, rx) = Notices::new(100);
        let intake = TelemetryIntake::new(store.clone(), directory, Duration::from_secs(60))
            .with_notices(notices);
        Setup {
            store,
            intake,
            notices: rx,
        }
    }

    fn mqtt() -> Origin {
        Origin::Mqtt {
            client_id: "c".into(),
            session: 1,
        }
    }

    fn publish(
        s: &Setup,
        tenant_id: &str,
        topic: &str,
        payload: &'static str,
        origin: Origin,
    ) -> Result<Accepted, Refused> {
        let message = Message::new(
            tenant(tenant_id),
            topic.to_owned().into(),
            payload.into(),
            QoS::AtLeastOnce,
            origin,
        );
        s.intake.accept(&Arc::new(message))
    }

    fn notice_topics(s: &mut Setup) -> Vec<String> {
        let mut topics = Vec::new();
        while let Ok(m) = s.notices.try_recv() {
            topics.push(m.topic.to_string());
        }
        topics
    }

    #[tokio::test]
    async fn telemetry_of_a_known_device_is_stored_and_acknowledged_once_committed() {
        let s = setup(false, || stored(5)).await;
        let accepted =
            publish(&s, "acme", "devices/d1/telemetry", r#"{"t": 21.5}"#, mqtt()).unwrap();
        assert_eq!(accepted.durable_after, Ticket::on(Ledger::Telemetry, 5));
        let appended = s.store.appended.lock();
        let (t, d, readings, events) = &appended[0];
        assert_eq!((t.as_str(), d.as_str()), ("acme", "d1"));
        assert_eq!(readings.len(), 1);
        assert_eq!(&*readings[0].key, "t");
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn a_store_that_does_not_sync_needs_no_wait() {
        let s = setup(false, || stored(0)).await;
        let accepted = publish(&s, "acme", "devices/d1/telemetry", r#"{"t": 1}"#, mqtt()).unwrap();
        assert!(accepted.durable_after.is_none());
    }

    #[tokio::test]
    async fn an_event_is_stored_as_sent() {
        let s = setup(false, || stored(1)).await;
        publish(
            &s,
            "acme",
            "devices/d1/events/alarm/high",
            "not json at all",
            mqtt(),
        )
        .unwrap();
        let appended = s.store.appended.lock();
        let (_, _, readings, events) = &appended[0];
        assert!(readings.is_empty());
        assert_eq!(events[0].event_type, "alarm/high");
        assert_eq!(&events[0].payload[..], b"not json at all");
    }

    #[tokio::test]
    async fn other_topics_and_non_ids_are_only_routed() {
        let s = setup(false, || stored(1)).await;
        for topic in [
            "devices/d1/state/reported",
            "devices/d1/rejected",
            "sensors/d1/telemetry",
            "devices/+/telemetry",
            "devices//telemetry",
        ] {
            let accepted = publish(&s, "acme", topic, "x", mqtt()).unwrap();
            assert!(accepted.durable_after.is_none(), "{topic}");
        }
        assert!(s.store.appended.lock().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_device_is_refused() {
        let s = setup(false, || stored(1)).await;
        for topic in ["devices/ghost/telemetry", "devices/ghost/events/boot"] {
            let refused = publish(&s, "acme", topic, r#"{"t": 1}"#, mqtt()).unwrap_err();
            assert!(matches!(refused, Refused::UnknownDevice(_)), "{refused:?}");
        }
        assert!(s.store.appended.lock().is_empty());
    }

    #[tokio::test]
    async fn another_tenants_device_is_unknown() {
        let s = setup(false, || stored(1)).await;
        let refused =
            publish(&s, "other", "devices/d1/telemetry", r#"{"t": 1}"#, mqtt()).unwrap_err();
        assert!(matches!(refused, Refused::UnknownDevice(_)), "{refused:?}");
        assert!(s.store.appended.lock().is_empty());
    }

    #[tokio::test]
    async fn an_invalid_payload_is_refused_and_an_mqtt_device_told_why() {
        let mut s = setup(false, || stored(1)).await;
        let refused = publish(&s, "acme", "devices/d1/telemetry", "{", mqtt()).unwrap_err();
        assert!(matches!(refused, Refused::Invalid(_)), "{refused:?}");
        assert_eq!(notice_topics(&mut s), ["devices/d1/rejected"]);
        // An HTTP caller reads the reason in its answer instead.
        let refused = publish(&s, "acme", "devices/d1/telemetry", "[1]", Origin::Api).unwrap_err();
        assert!(matches!(refused, Refused::Invalid(_)), "{refused:?}");
        assert!(notice_topics(&mut s).is_empty());
        assert!(s.store.appended.lock().is_empty());
    }

    #[tokio::test]
    async fn a_busy_store_asks_http_to_retry_and_takes_mqtt() {
        let s = setup(true, || stored(1)).await;
        let refused = publish(
            &s,
            "acme",
            "devices/d1/telemetry",
            r#"{"t": 1}"#,
            Origin::Api,
        )
        .unwrap_err();
        assert!(matches!(refused, Refused::Unavailable(_)), "{refused:?}");
        // MQTT publishers are slowed by backpressure instead.
        publish(&s, "acme", "devices/d1/telemetry", r#"{"t": 1}"#, mqtt()).unwrap();
        assert_eq!(s.store.appended.lock().len(), 1);
    }

    #[tokio::test]
    async fn a_used_up_budget_is_refused_as_such() {
        let mut s = setup(false, || Err(TelemetryError::QuotaExceeded { budget: 10 })).await;
        let refused =
            publish(&s, "acme", "devices/d1/telemetry", r#"{"t": 1}"#, mqtt()).unwrap_err();
        assert!(matches!(refused, Refused::QuotaExceeded(_)), "{refused:?}");
        assert_eq!(notice_topics(&mut s), ["devices/d1/rejected"]);
    }

    #[tokio::test]
    async fn a_failing_store_is_unavailable() {
        let s = setup(false, || Err(TelemetryError::Closed)).await;
        let refused = publish(&s, "acme", "devices/d1/events/boot", "{}", mqtt()).unwrap_err();
        assert!(matches!(refused, Refused::Unavailable(_)), "{refused:?}");
    }
}
