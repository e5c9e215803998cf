//! The alarms service on a real embedded store and router.

use std::sync::Arc;

use ferrule_bus::{Delivered, Entry, Matched, Router, Subscriber, SubscriptionOptions};
use ferrule_core::{DeviceId, Message, Origin, QoS, TenantId};
use ferrule_store::alarms::{AlarmFilter, AlarmState, Severity};
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::{MetaStore, NewDevice, PageRequest};
use serde_json::json;

use super::*;

/// Keeps every message delivered to it.
#[derive(Default)]
struct Inbox(parking_lot::Mutex<Vec<Arc<Message>>>);

impl Subscriber for Inbox {
    fn deliver(&self, message: &Arc<Message>, _: &Matched) -> Delivered {
        self.0.lock().push(message.clone());
        Delivered::default()
    }
}

impl Inbox {
    /// (topic, event, alarm) of each message so far.
    fn events(&self) -> Vec<(String, AlarmMessage)> {
        self.0
            .lock()
            .iter()
            .map(|m| {
                assert!(matches!(m.origin, Origin::System));
                assert_eq!(m.qos, QoS::AtMostOnce);
                let parsed: AlarmMessage = serde_json::from_slice(&m.payload).unwrap();
                (m.topic.to_string(), parsed)
            })
            .collect()
    }
}

struct Fixture {
    alarms: Alarms,
    store: EmbeddedStore,
    inbox: Arc<Inbox>,
    t: TenantId,
    d: DeviceId,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let t = TenantId::new("t").unwrap();
    let d = DeviceId::new("pump").unwrap();
    store.create_tenant(&t, "T").await.unwrap();
    store
        .create_device(&NewDevice {
            tenant: t.clone(),
            id: d.clone(),
            name: "pump".into(),
            profile: "default".into(),
            attributes: json!({}),
        })
        .await
        .unwrap();
    let router = Router::new();
    let inbox = Arc::new(Inbox::default());
    for filter in [view::DEVICE_ALARMS_FILTER, view::TENANT_TOPIC] {
        router.subscribe(
            &t,
            filter,
            Entry {
                id: router.next_subscriber_id(),
                subscriber: inbox.clone(),
                options: SubscriptionOptions::qos(QoS::AtMostOnce),
            },
        );
    }
    let alarms = Alarms::new(Arc::new(store.clone()), router);
    Fixture {
        alarms,
        store,
        inbox,
        t,
        d,
        _dir: dir,
    }
}

fn raise(f: &Fixture, kind: &str, severity: Severity, details: serde_json::Value) -> Raise {
    Raise {
        tenant: f.t.clone(),
        device: Some(f.d.clone()),
        alarm_type: kind.into(),
        severity,
        details,
        originator: "rule:r1".into(),
    }
}

#[tokio::test]
async fn raising_again_updates_the_open_alarm_and_after_clear_raises_anew() {
    let f = fixture().await;
    let r = raise(&f, "overheat", Severity::Minor, json!({"temp": 80}));
    assert_eq!(
        f.alarms.preview_raise(&r).await.unwrap(),
        Transition::Raised
    );
    let (t1, first) = f.alarms.raise(r.clone()).await.unwrap();
    assert_eq!(t1, Transition::Raised);
    assert_eq!((first.count, first.state), (1, AlarmState::Active));
    assert_eq!(first.originator, "rule:r1");

    let again = raise(&f, "overheat", Severity::Critical, json!({"temp": 95}));
    let preview = f.alarms.preview_raise(&again).await.unwrap();
    let (t2, second) = f.alarms.raise(again).await.unwrap();
    assert_eq!(preview, t2, "the dry run says what the raise does");
    assert_eq!(t2, Transition::Updated { id: first.id });
    assert_eq!(second.id, first.id);
    assert_eq!(second.count, 2);
    assert_eq!(second.severity, Severity::Critical);
    assert_eq!(second.details, json!({"temp": 95}));
    assert_eq!(second.first_seen, first.first_seen);
    assert!(second.last_seen >= first.last_seen);
    assert_eq!(f.alarms.get(&f.t, first.id).await.unwrap(), second);

    // Another type is another alarm.
    let (t3, other) = f
        .alarms
        .raise(raise(&f, "low-battery", Severity::Warning, json!(null)))
        .await
        .unwrap();
    assert_eq!(t3, Transition::Raised);
    assert_ne!(other.id, first.id);

    let preview = f
        .alarms
        .preview_clear(&f.t, Some(&f.d), "overheat")
        .await
        .unwrap();
    let (t4, cleared) = f
        .alarms
        .clear_open(&f.t, Some(&f.d), "overheat", "rule:r2")
        .await
        .unwrap();
    assert_eq!(preview, t4);
    assert_eq!(t4, Transition::Cleared { id: first.id });
    let cleared = cleared.unwrap();
    assert_eq!(cleared.state, AlarmState::Cleared);
    assert_eq!(cleared.cleared_by.as_deref(), Some("rule:r2"));
    assert_eq!(
        f.alarms
            .clear_open(&f.t, Some(&f.d), "overheat", "rule:r2")
            .await
            .unwrap(),
        (Transition::NothingToClear, None)
    );
    assert_eq!(
        f.alarms
            .preview_clear(&f.t, Some(&f.d), "overheat")
            .await
            .unwrap(),
        Transition::NothingToClear
    );

    let (t5, fresh) = f
        .alarms
        .raise(raise(&f, "overheat", Severity::Major, json!({})))
        .await
        .unwrap();
    assert_eq!(t5, Transition::Raised);
    assert_ne!(fresh.id, first.id, "a cleared alarm is history");
    assert_eq!(fresh.count, 1);
    let history = f
        .alarms
        .list(
            &f.t,
            &AlarmFilter {
                state: Some(AlarmState::Cleared),
                ..AlarmFilter::default()
            },
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(history.items, [cleared]);
}

#[tokio::test]
async fn acknowledging_and_clearing_follow_the_states() {
    let f = fixture().await;
    let (_, a) = f
        .alarms
        .raise(raise(&f, "overheat", Severity::Major, json!({})))
        .await
        .unwrap();
    let acked = f
        .alarms
        .acknowledge(&f.t, a.id, "user:ops@x.io")
        .await
        .unwrap();
    assert_eq!(acked.state, AlarmState::Acknowledged);
    assert_eq!(acked.acknowledged_by.as_deref(), Some("user:ops@x.io"));
    assert!(acked.acknowledged_at.is_some());
    assert!(matches!(
        f.alarms.acknowledge(&f.t, a.id, "user:ops@x.io").await,
        Err(AlarmError::Conflict(_))
    ));
    // Raised again while acknowledged: counted, still acknowledged.
    let (_, again) = f
        .alarms
        .raise(raise(&f, "overheat", Severity::Critical, json!({})))
        .await
        .unwrap();
    assert_eq!(again.state, AlarmState::Acknowledged);
    assert_eq!(again.count, 2);
    let cleared = f.alarms.clear(&f.t, a.id, "key:k1").await.unwrap();
    assert_eq!(cleared.state, AlarmState::Cleared);
    assert_eq!(cleared.cleared_by.as_deref(), Some("key:k1"));
    assert_eq!(cleared.acknowledged_by.as_deref(), Some("user:ops@x.io"));
    assert!(matches!(
        f.alarms.clear(&f.t, a.id, "key:k1").await,
        Err(AlarmError::Conflict(_))
    ));
    assert!(matches!(
        f.alarms.acknowledge(&f.t, a.id, "key:k1").await,
        Err(AlarmError::Conflict(_))
    ));
    // An active alarm may be cleared without acknowledgement.
    let (_, b) = f
        .alarms
        .raise(raise(&f, "door", Severity::Minor, json!({})))
        .await
        .unwrap();
    assert_eq!(
        f.alarms.clear(&f.t, b.id, "user:u").await.unwrap().state,
        AlarmState::Cleared
    );
    // Another tenant's alarm, or none at all, is not found.
    let other = TenantId::new("other").unwrap();
    assert!(matches!(
        f.alarms.acknowledge(&other, b.id, "user:u").await,
        Err(AlarmError::NotFound)
    ));
    assert!(matches!(
        f.alarms.get(&f.t, 9999).await,
        Err(AlarmError::NotFound)
    ));
}

#[tokio::test]
async fn bad_raises_are_refused_and_the_dry_run_refuses_them_alike() {
    let f = fixture().await;
    let cases = [
        Raise {
            alarm_type: String::new(),
            ..raise(&f, "x", Severity::Major, json!({}))
        },
        Raise {
            alarm_type: "x".repeat(MAX_TYPE_CHARS + 1),
            ..raise(&f, "x", Severity::Major, json!({}))
        },
        raise(
            &f,
            "x",
            Severity::Major,
            json!("y".repeat(MAX_DETAILS_BYTES)),
        ),
        Raise {
            originator: "device:pump".into(),
            ..raise(&f, "x", Severity::Major, json!({}))
        },
    ];
    for bad in cases {
        assert!(matches!(
            f.alarms.preview_raise(&bad).await,
            Err(AlarmError::Invalid(_))
        ));
        assert!(matches!(
            f.alarms.raise(bad).await,
            Err(AlarmError::Invalid(_))
        ));
    }
    let ghost = Raise {
        device: Some(DeviceId::new("ghost").unwrap()),
        ..raise(&f, "x", Severity::Major, json!({}))
    };
    assert!(matches!(
        f.alarms.preview_raise(&ghost).await,
        Err(AlarmError::DeviceNotFound)
    ));
    assert!(matches!(
        f.alarms.raise(ghost).await,
        Err(AlarmError::DeviceNotFound)
    ));
    assert!(f.inbox.events().is_empty(), "nothing refused is published");
}

#[tokio::test]
async fn open_alarms_are_bounded_per_tenant() {
    let mut f = fixture().await;
    f.alarms = f.alarms.clone().with_max_open(2);
    for kind in ["a", "b"] {
        f.alarms
            .raise(raise(&f, kind, Severity::Major, json!({})))
            .await
            .unwrap();
    }
    let third = raise(&f, "c", Severity::Major, json!({}));
    assert!(matches!(
        f.alarms.preview_raise(&third).await,
        Err(AlarmError::TooManyOpen { limit: 2 })
    ));
    assert!(matches!(
        f.alarms.raise(third.clone()).await,
        Err(AlarmError::TooManyOpen { limit: 2 })
    ));
    // Raising an open one again is still allowed: it adds nothing.
    f.alarms
        .raise(raise(&f, "a", Severity::Major, json!({})))
        .await
        .unwrap();
    f.alarms
        .clear_open(&f.t, Some(&f.d), "b", "user:u")
        .await
        .unwrap();
    assert_eq!(
        f.alarms.raise(third).await.unwrap().0,
        Transition::Raised,
        "room again once one is cleared"
    );
}

#[tokio::test]
async fn concurrent_raises_of_one_device_and_type_make_one_open_alarm() {
    let f = fixture().await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let alarms = f.alarms.clone();
            let r = raise(&f, "overheat", Severity::Major, json!({"i": i}));
            tokio::spawn(async move { alarms.raise(r).await })
        })
        .collect();
    let mut raised = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (transition, alarm) = t.await.unwrap().unwrap();
        raised += usize::from(transition == Transition::Raised);
        ids.insert(alarm.id);
    }
    assert_eq!(raised, 1);
    assert_eq!(ids.len(), 1);
    let open = f
        .store
        .open_alarm(&f.t, Some(&f.d), "overheat")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.count, 16);
}

#[tokio::test]
async fn every_transition_is_published_after_it_is_stored() {
    let f = fixture().await;
    let (_, a) = f
        .alarms
        .raise(raise(&f, "overheat", Severity::Major, json!({"t": 1})))
        .await
        .unwrap();
    f.alarms
        .raise(raise(&f, "overheat", Severity::Critical, json!({"t": 2})))
        .await
        .unwrap();
    f.alarms.acknowledge(&f.t, a.id, "user:u").await.unwrap();
    let cleared = f.alarms.clear(&f.t, a.id, "user:u").await.unwrap();
    let (_, site) = f
        .alarms
        .raise(Raise {
            device: None,
            ..raise(&f, "site-offline", Severity::Warning, json!({}))
        })
        .await
        .unwrap();

    let events = f.inbox.events();
    let got: Vec<_> = events
        .iter()
        .map(|(topic, m)| {
            (
                topic.as_str(),
                m.event,
                m.alarm.state.as_str(),
                m.alarm.count,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "$ferrule/devices/pump/alarms",
                AlarmEvent::Raised,
                "active",
                1
            ),
            (
                "$ferrule/devices/pump/alarms",
                AlarmEvent::Updated,
                "active",
                2
            ),
            (
                "$ferrule/devices/pump/alarms",
                AlarmEvent::Acknowledged,
                "acknowledged",
                2
            ),
            (
                "$ferrule/devices/pump/alarms",
                AlarmEvent::Cleared,
                "cleared",
                2
            ),
            ("$ferrule/alarms", AlarmEvent::Raised, "active", 1),
        ]
    );
    // The payload is the stored alarm's view, and reads as the wire shows it.
    assert_eq!(events[3].1.alarm, AlarmView::from(&cleared));
    assert_eq!(events[4].1.alarm.id, site.id);
    assert_eq!(events[4].1.alarm.device, None);
    let wire: serde_json::Value = serde_json::from_slice(&f.inbox.0.lock()[1].payload).unwrap();
    assert_eq!(wire["event"], "updated");
    assert_eq!(wire["alarm"]["type"], "overheat");
    assert_eq!(wire["alarm"]["severity"], "critical");
    assert_eq!(wire["alarm"]["details"], json!({"t": 2}));
    assert!(wire["alarm"]["first_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(wire["alarm"]["cleared_at"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_deleted_devices_alarms_are_gone_and_cannot_come_back() {
    let f = fixture().await;
    let (_, a) = f
        .alarms
        .raise(raise(&f, "overheat", Severity::Major, json!({})))
        .await
        .unwrap();
    f.store.delete_device(&f.t, &f.d).await.unwrap();
    assert!(matches!(
        f.alarms.get(&f.t, a.id).await,
        Err(AlarmError::NotFound)
    ));
    assert!(matches!(
        f.alarms
            .raise(raise(&f, "overheat", Severity::Major, json!({})))
            .await,
        Err(AlarmError::DeviceNotFound)
    ));
}
