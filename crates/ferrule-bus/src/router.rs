//! The router: a [`TenantBus`] per tenant, created on first use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use bytestring::ByteString;
use ferrule_core::topic::matches;
use ferrule_core::{Message, Origin, QoS, TenantId};
use parking_lot::{Mutex, RwLock};

use crate::tree::{Entry, SubscriberId, SubscriptionTree};
use crate::{Durability, Intake, Published, Refused, Ticket};

/// One tenant's subscriptions and retained messages.
#[derive(Default)]
pub struct TenantBus {
    tree: RwLock<SubscriptionTree>,
    retained: Mutex<HashMap<ByteString, Arc<Message>>>,
    /// Set, under the retained lock, when the tenant is deleted: the bus
    /// takes no more messages (a connection may still hold it while it
    /// closes).
    closed: AtomicBool,
    load: TenantLoad,
}

/// What a tenant's clients sent, counted as the router takes it: counters
/// that only grow, read by the capacity view to make rates. They live on
/// the tenant's bus, which a publisher already holds, so counting costs two
/// relaxed atomic adds per message and no lookup.
#[derive(Debug, Default)]
pub struct TenantLoad {
    messages: AtomicU64,
    points: AtomicU64,
}

/// A reading of a [`TenantLoad`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCount {
    /// Messages from clients (MQTT publishes, HTTP ingest and API
    /// publishes) that the router took; refused ones are not counted.
    pub messages: u64,
    /// Telemetry points among them, queued for storage.
    pub points: u64,
}

impl TenantLoad {
    fn count(&self, message: &Message, points: u64) {
        // Ferrule's own messages (twin, commands, rules) are not load that
        // clients bring: they follow from it.
        if matches!(message.origin, Origin::Mqtt { .. } | Origin::Api) {
            self.messages.fetch_add(1, Ordering::Relaxed);
        }
        if points > 0 {
            self.points.fetch_add(points, Ordering::Relaxed);
        }
    }

    pub fn read(&self) -> LoadCount {
        LoadCount {
            messages: self.messages.load(Ordering::Relaxed),
            points: self.points.load(Ordering::Relaxed),
        }
    }
}

impl TenantBus {
    /// What the tenant's clients sent so far.
    pub fn load(&self) -> LoadCount {
        self.load.read()
    }

    /// Retained messages matching `filter` (unexpired).
    pub fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        // Tokio's clock, as the broker's expiry stamps (`expires_at`) are:
        // the system's monotonic clock, except in tests that pause time.
        let now = tokio::time::Instant::now().into_std();
        self.retained
            .lock()
            .values()
            .filter(|m| matches(filter, &m.topic) && !m.is_expired(now))
            .cloned()
            .collect()
    }

    /// Every retained message, for persistence.
    pub fn retained_all(&self) -> Vec<Arc<Message>> {
        self.retained.lock().values().cloned().collect()
    }

    pub fn subscription_count(&self) -> usize {
        self.tree.read().len()
    }
}

/// Called with every retained message set or cleared (empty payload), so
/// that retained state can be persisted.
/// It returns the ticket after which the change is durable.
pub type RetainedSink = Box<dyn Fn(&Arc<Message>) -> Ticket + Send + Sync>;

/// Told of every new subscription (tenant, filter), after it is in place:
/// the command tracker sends a device's waiting commands once the device
/// listens for them.
pub type SubscribeWatch = Box<dyn Fn(&TenantId, &str) + Send + Sync>;

/// The in-process router shared by every component.
#[derive(Default)]
pub struct Router {
    tenants: RwLock<HashMap<TenantId, Arc<TenantBus>>>,
    next_subscriber: AtomicU64,
    retained_sink: std::sync::OnceLock<RetainedSink>,
    intake: std::sync::OnceLock<Arc<dyn Intake>>,
    durability: Durability,
    /// Subscriptions of Ferrule's own services (twin, commands,
    /// connectivity), placed in every tenant's bus, present and future.
    everywhere: RwLock<Vec<(String, Entry)>>,
    subscribe_watch: std::sync::OnceLock<SubscribeWatch>,
}

impl Router {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Installs the hook that persists retained messages (once).
    pub fn set_retained_sink(&self, sink: RetainedSink) {
        let _ = self.retained_sink.set(sink);
    }

    /// Installs the stage that stores messages before fan-out (once).
    pub fn set_intake(&self, intake: Arc<dyn Intake>) {
        let _ = self.intake.set(intake);
    }

    /// Where stores report commits and publishers wait for them.
    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// A fresh id for a new subscriber.
    pub fn next_subscriber_id(&self) -> SubscriberId {
        self.next_subscriber.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Installs the watcher of new subscriptions (once).
    pub fn set_subscribe_watch(&self, watch: SubscribeWatch) {
        let _ = self.subscribe_watch.set(watch);
    }

    /// The tenant's bus, created on first use.
    pub fn tenant(&self, tenant: &TenantId) -> Arc<TenantBus> {
        if let Some(bus) = self.tenants.read().get(tenant) {
            return bus.clone();
        }
        let mut tenants = self.tenants.write();
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| {
                let bus = TenantBus::default();
                {
                    let mut tree = bus.tree.write();
                    for (filter, entry) in self.everywhere.read().iter() {
                        tree.insert(filter, entry.clone());
                    }
                }
                Arc::new(bus)
            })
            .clone()
    }

    /// Subscribes `entry` to `filter` in every tenant, those to come too:
    /// Ferrule's own services listen across tenants this way, and learn a
    /// message's tenant from the message.
    pub fn subscribe_everywhere(&self, filter: &str, entry: Entry) {
        // Under the tenants' write lock, so that no bus is created between
        // the list growing and the existing buses being given the entry.
        let tenants = self.tenants.write();
        self.everywhere
            .write()
            .push((filter.to_owned(), entry.clone()));
        for bus in tenants.values() {
            bus.tree.write().insert(filter, entry.clone());
        }
    }

    /// Subscribes; returns true when the subscription is new (not a
    /// replacement), which MQTT's retain handling 1 needs to know.
    pub fn subscribe(&self, tenant: &TenantId, filter: &str, entry: Entry) -> bool {
        let new = self.tenant(tenant).tree.write().insert(filter, entry);
        if let Some(watch) = self.subscribe_watch.get() {
            watch(tenant, filter);
        }
        new
    }

    /// [`subscribe`](Self::subscribe) for an observer that is no client
    /// session (a live stream): the subscribe watch is not told, since
    /// nothing subscribing here is a device ready for its waiting commands.
    pub fn subscribe_observer(&self, tenant: &TenantId, filter: &str, entry: Entry) -> bool {
        self.tenant(tenant).tree.write().insert(filter, entry)
    }

    /// Unsubscribes; returns true when the subscription existed.
    pub fn unsubscribe(&self, tenant: &TenantId, filter: &str, id: SubscriberId) -> bool {
        self.tenant(tenant).tree.write().remove(filter, id)
    }

    /// Whether a subscriber owned by `owner` (see [`Subscriber::owner`])
    /// has a subscription matching `topic` in the tenant: the command
    /// tracker sends a device its commands only once the device listens.
    pub fn is_listening(&self, tenant: &TenantId, topic: &str, owner: &str) -> bool {
        let Some(bus) = self.tenants.read().get(tenant).cloned() else {
            return false;
        };
        let probe = Message::new(
            tenant.clone(),
            topic.into(),
            Bytes::new(),
            QoS::AtLeastOnce,
            Origin::System,
        );
        let mut found = false;
        bus.tree.read().for_each_match(&probe, |entry, _| {
            found |= entry.subscriber.owner() == Some(owner);
        });
        found
    }

    /// What each tenant's clients sent so far, for tenants that have a bus
    /// (every tenant that had a message or a subscription since start).
    pub fn load(&self) -> Vec<(TenantId, LoadCount)> {
        self.tenants
            .read()
            .iter()
            .map(|(t, bus)| (t.clone(), bus.load()))
            .collect()
    }

    /// Routes a message to every matching subscriber and keeps it if retained.
    pub fn publish(&self, message: Arc<Message>) -> Published {
        let bus = self.tenant(&message.tenant);
        self.publish_in(&bus, message)
    }

    /// [`publish`](Self::publish) for a caller that holds its tenant's bus
    /// (an MQTT connection), skipping the tenant lookup on the hot path.
    /// `bus` must be `message.tenant`'s; once the tenant is deleted, the
    /// bus refuses every message.
    pub fn publish_in(&self, bus: &TenantBus, message: Arc<Message>) -> Published {
        if bus.closed.load(Ordering::Acquire) {
            return Published {
                refused: Some(Refused::Unavailable("this tenant was deleted".into())),
                ..Published::default()
            };
        }
        debug_assert!(
            self.tenants
                .read()
                .get(&message.tenant)
                .is_some_and(|b| std::ptr::eq(&**b, bus))
        );
        let mut durable_after = Ticket::NONE;
        let mut backpressure = None;
        let mut points = 0;
        if let Some(intake) = self.intake.get() {
            match intake.accept(&message) {
                Ok(accepted) => {
                    durable_after = accepted.durable_after;
                    backpressure = accepted.backpressure;
                    points = accepted.points;
                }
                Err(refused) => {
                    return Published {
                        refused: Some(refused),
                        ..Published::default()
                    };
                }
            }
        }
        bus.load.count(&message, points);
        if message.retain {
            let mut retained = bus.retained.lock();
            if !bus.closed.load(Ordering::Acquire) {
                // An empty retained payload clears the topic (MQTT 5 §3.3.1.3).
                if message.payload.is_empty() {
                    retained.remove(&message.topic);
                } else {
                    retained.insert(message.topic.clone(), message.clone());
                }
                // Reported under the lock, so that the store sees the changes
                // of a topic in the order memory did.
                if let Some(sink) = self.retained_sink.get() {
                    durable_after = durable_after.join(sink(&message));
                }
            }
        }
        let tree = bus.tree.read();
        let delivered = tree.for_each_match(&message, |entry, matched| {
            let d = entry.subscriber.deliver(&message, matched);
            if d.backpressure.is_some() {
                backpressure = d.backpressure;
            }
            durable_after = durable_after.join(d.durable_after);
        });
        Published {
            delivered,
            backpressure,
            durable_after,
            refused: None,
        }
    }

    /// Drops the retained messages whose topic `filter` matches (a deleted
    /// device's topic space), in storage too; returns how many, and the
    /// ticket after which their removal is durable.
    pub fn clear_retained(&self, tenant: &TenantId, filter: &str) -> (usize, Ticket) {
        let Some(bus) = self.tenants.read().get(tenant).cloned() else {
            return (0, Ticket::NONE);
        };
        let mut retained = bus.retained.lock();
        let topics: Vec<ByteString> = retained
            .keys()
            .filter(|t| matches(filter, t))
            .cloned()
            .collect();
        for t in &topics {
            retained.remove(t);
        }
        let ticket = self.report_cleared(tenant, &topics);
        (topics.len(), ticket)
    }

    /// Forgets a deleted tenant: its bus takes no more messages and its
    /// retained messages are dropped, in storage too. Its subscribers are
    /// not told: end them first. A later message for this tenant id starts
    /// a new, empty bus. Returns how many retained messages were dropped,
    /// and the ticket after which their removal is durable.
    pub fn remove_tenant(&self, tenant: &TenantId) -> (usize, Ticket) {
        let Some(bus) = self.tenants.write().remove(tenant) else {
            return (0, Ticket::NONE);
        };
        let mut retained = bus.retained.lock();
        bus.closed.store(true, Ordering::Release);
        let topics: Vec<ByteString> = retained.drain().map(|(t, _)| t).collect();
        let ticket = self.report_cleared(tenant, &topics);
        (topics.len(), ticket)
    }

    /// Reports retained topics cleared to the sink (as empty retained
    /// messages, like a client clearing them); the caller holds the bus's
    /// retained lock.
    fn report_cleared(&self, tenant: &TenantId, topics: &[ByteString]) -> Ticket {
        let Some(sink) = self.retained_sink.get() else {
            return Ticket::NONE;
        };
        topics.iter().fold(Ticket::NONE, |ticket, topic| {
            let mut clear = Message::new(
                tenant.clone(),
                topic.clone(),
                Bytes::new(),
                QoS::AtMostOnce,
                Origin::System,
            );
            clear.retain = true;
            ticket.join(sink(&Arc::new(clear)))
        })
    }

    /// Restores a retained message (start-up), without delivering it.
    pub fn restore_retained(&self, message: Arc<Message>) {
        self.tenant(&message.tenant)
            .retained
            .lock()
            .insert(message.topic.clone(), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Matched, SubscriptionOptions};
    use crate::{Delivered, Subscriber};
    use bytes::Bytes;
    use ferrule_core::{Origin, QoS};

    #[derive(Default)]
    struct Inbox(parking_lot::Mutex<Vec<(String, Matched)>>);

    impl Subscriber for Inbox {
        fn deliver(&self, message: &Arc<Message>, matched: &Matched) -> Delivered {
            self.0
                .lock()
                .push((message.topic.to_string(), matched.clone()));
            Delivered::default()
        }
    }

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    /// `from`: the publishing session's subscriber id.
    fn msg(t: &str, topic: &str, from: Option<u64>) -> Arc<Message> {
        let origin = from.map_or(Origin::Api, |session| Origin::Mqtt {
            client_id: "c".into(),
            session,
        });
        Arc::new(Message::new(
            tenant(t),
            topic.into(),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            origin,
        ))
    }

    /// An intake that takes three points from every `…/telemetry` message
    /// and refuses `…/bad`.
    struct Points;

    impl Intake for Points {
        fn accept(&self, message: &Arc<Message>) -> Result<crate::Accepted, Refused> {
            if message.topic.ends_with("/bad") {
                return Err(Refused::Invalid("bad".into()));
            }
            let points = if message.topic.ends_with("/telemetry") {
                3
            } else {
                0
            };
            Ok(crate::Accepted {
                points,
                ..Default::default()
            })
        }
    }

    #[test]
    fn load_is_counted_per_tenant_for_what_clients_sent() {
        let router = Router::new();
        router.set_intake(Arc::new(Points));
        router.publish(msg("a", "devices/d/telemetry", Some(1)));
        router.publish(msg("a", "devices/d/telemetry", None));
        router.publish(msg("a", "devices/d/bad", Some(1)));
        router.publish(msg("b", "x", Some(2)));
        // Ferrule's own message is no client load, but its points are
        // stored all the same.
        let own = Message::new(
            tenant("b"),
            "devices/d/telemetry".into(),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            Origin::System,
        );
        router.publish(Arc::new(own));
        let mut load = router.load();
        load.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            load,
            vec![
                (
                    tenant("a"),
                    LoadCount {
                        messages: 2,
                        points: 6
                    }
                ),
                (
                    tenant("b"),
                    LoadCount {
                        messages: 1,
                        points: 3
                    }
                ),
            ]
        );
    }

    fn entry(router: &Router, inbox: &Arc<Inbox>, qos: QoS) -> Entry {
        Entry {
            id: router.next_subscriber_id(),
            subscriber: inbox.clone(),
            options: SubscriptionOptions::qos(qos),
        }
    }

    #[test]
    fn a_service_subscribed_everywhere_hears_every_tenant_old_and_new() {
        let r = Router::default();
        r.publish(msg("old", "x", None));
        let service = Arc::new(Inbox::default());
        r.subscribe_everywhere("devices/+/response", entry(&r, &service, QoS::AtLeastOnce));
        assert_eq!(
            r.publish(msg("old", "devices/d/response", None)).delivered,
            1
        );
        assert_eq!(
            r.publish(msg("new", "devices/d/response", None)).delivered,
            1
        );
        // A deleted tenant's id starts a new bus, which has it too.
        r.remove_tenant(&tenant("new"));
        assert_eq!(
            r.publish(msg("new", "devices/e/response", None)).delivered,
            1
        );
        assert_eq!(service.0.lock().len(), 3);
    }

    struct Owned(&'static str);

    impl Subscriber for Owned {
        fn deliver(&self, _: &Arc<Message>, _: &Matched) -> Delivered {
            Delivered::default()
        }
        fn owner(&self) -> Option<&str> {
            Some(self.0)
        }
    }

    #[test]
    fn listening_means_a_subscription_of_that_owner_matches() {
        let r = Router::default();
        let t = tenant("t");
        assert!(!r.is_listening(&t, "devices/d/commands/x", "device:d"));
        let other = Entry {
            id: r.next_subscriber_id(),
            subscriber: Arc::new(Owned("user:u")),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        };
        r.subscribe(&t, "devices/#", other);
        assert!(!r.is_listening(&t, "devices/d/commands/x", "device:d"));
        let device = Entry {
            id: r.next_subscriber_id(),
            subscriber: Arc::new(Owned("device:d")),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        };
        r.subscribe(&t, "devices/d/commands/+", device);
        assert!(r.is_listening(&t, "devices/d/commands/x", "device:d"));
        assert!(!r.is_listening(&tenant("u"), "devices/d/commands/x", "device:d"));
    }

    #[test]
    fn the_subscribe_watch_hears_each_new_subscription() {
        let r = Router::default();
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log = seen.clone();
        r.set_subscribe_watch(Box::new(move |t, f| {
            log.lock().push((t.to_string(), f.to_owned()))
        }));
        let inbox = Arc::new(Inbox::default());
        r.subscribe(
            &tenant("t"),
            "devices/d/#",
            entry(&r, &inbox, QoS::AtMostOnce),
        );
        assert_eq!(*seen.lock(), [("t".to_owned(), "devices/d/#".to_owned())]);
    }

    #[test]
    fn tenants_never_see_each_other() {
        let r = Router::default();
        let a = Arc::new(Inbox::default());
        r.subscribe(&tenant("a"), "#", entry(&r, &a, QoS::AtMostOnce));
        assert_eq!(r.publish(msg("b", "x/y", None)).delivered, 0);
        assert_eq!(r.publish(msg("a", "x/y", None)).delivered, 1);
        assert_eq!(a.0.lock().len(), 1);
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
        let r = Router::default();
        let inbox = Arc::new(Inbox::default());
        let mut e = entry(&r, &inbox, QoS::AtMostOnce);
        e.options.subscription_id = Some(1);
        r.subscribe(&tenant("t"), "a/+", e.clone());
        e.options.qos = QoS::ExactlyOnce;
        e.options.subscription_id = Some(2);
        r.subscribe(&tenant("t"), "a/#", e.clone());
        assert_eq!(r.publish(msg("t", "a/b", None)).delivered, 1);
        let got = inbox.0.lock();
        assert_eq!(got[0].1.qos, QoS::ExactlyOnce);
        assert_eq!(got[0].1.subscription_ids.as_slice(), [1, 2]);
    }

    #[test]
    fn no_local_skips_the_publishers_own_messages() {
        let r = Router::default();
        let inbox = Arc::new(Inbox::default());
        let mut e = entry(&r, &inbox, QoS::AtMostOnce);
        e.options.no_local = true;
        let me = e.id;
        r.subscribe(&tenant("t"), "a", e);
        assert_eq!(r.publish(msg("t", "a", Some(me))).delivered, 0);
        assert_eq!(r.publish(msg("t", "a", Some(me + 100))).delivered, 1);
    }

    #[test]
    fn shared_subscriptions_take_turns() {
        let r = Router::default();
        let (x, y) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        r.subscribe(
            &tenant("t"),
            "$share/g/jobs/+",
            entry(&r, &x, QoS::AtMostOnce),
        );
        r.subscribe(
            &tenant("t"),
            "$share/g/jobs/+",
            entry(&r, &y, QoS::AtMostOnce),
        );
        for _ in 0..10 {
            assert_eq!(r.publish(msg("t", "jobs/1", None)).delivered, 1);
        }
        assert_eq!((x.0.lock().len(), y.0.lock().len()), (5, 5));
    }

    #[test]
    fn unsubscribe_and_dollar_topics() {
        let r = Router::default();
        let inbox = Arc::new(Inbox::default());
        let e = entry(&r, &inbox, QoS::AtMostOnce);
        let id = e.id;
        assert!(r.subscribe(&tenant("t"), "#", e.clone()));
        assert!(!r.subscribe(&tenant("t"), "#", e), "replacement is not new");
        assert_eq!(r.publish(msg("t", "$SYS/x", None)).delivered, 0);
        assert!(r.unsubscribe(&tenant("t"), "#", id));
        assert!(!r.unsubscribe(&tenant("t"), "#", id));
        assert_eq!(r.publish(msg("t", "a", None)).delivered, 0);
        assert_eq!(r.tenant(&tenant("t")).subscription_count(), 0);
    }

    #[test]
    fn a_removed_tenant_keeps_nothing_and_its_old_bus_refuses_messages() {
        let r = Router::default();
        let t = tenant("t");
        let inbox = Arc::new(Inbox::default());
        let mut m = (*msg("t", "devices/d1/state", None)).clone();
        m.retain = true;
        r.publish(Arc::new(m.clone()));
        let old = r.tenant(&t);
        assert_eq!(r.remove_tenant(&t).0, 1);
        let refused = r.publish_in(&old, Arc::new(m.clone()));
        assert!(refused.refused.is_some());
        assert!(old.retained_all().is_empty());
        // The id starts over, empty.
        r.subscribe(&t, "#", entry(&r, &inbox, QoS::AtMostOnce));
        assert!(r.tenant(&t).retained_all().is_empty());
        assert_eq!(r.publish(msg("t", "x", None)).delivered, 1);
    }

    #[test]
    fn clearing_a_topic_space_leaves_the_rest() {
        let r = Router::default();
        for topic in ["devices/d1", "devices/d1/a/b", "devices/d10/a", "other"] {
            let mut m = (*msg("t", topic, None)).clone();
            m.retain = true;
            r.publish(Arc::new(m));
        }
        assert_eq!(r.clear_retained(&tenant("t"), "devices/d1/#").0, 2);
        let mut left: Vec<String> = r
            .tenant(&tenant("t"))
            .retained_all()
            .iter()
            .map(|m| m.topic.to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["devices/d10/a", "other"]);
        assert_eq!(r.clear_retained(&tenant("nobody"), "#").0, 0);
    }

    #[test]
    fn retained_set_replace_clear() {
        let r = Router::default();
        let mut m = (*msg("t", "s/1", None)).clone();
        m.retain = true;
        r.publish(Arc::new(m.clone()));
        m.payload = Bytes::from_static(b"y");
        r.publish(Arc::new(m.clone()));
        let bus = r.tenant(&tenant("t"));
        let kept = bus.retained_matching("s/+");
        assert_eq!(kept.len(), 1);
        assert_eq!(&kept[0].payload[..], b"y");
        m.payload = Bytes::new();
        r.publish(Arc::new(m));
        assert!(bus.retained_matching("#").is_empty());
    }
}
