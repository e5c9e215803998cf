//! The tree delivers to exactly the subscribers whose filters match, the same
//! as checking every filter one by one.

use std::sync::Arc;

use bytes::Bytes;
use ferrule_bus::{Entry, Matched, Router, Subscriber, SubscriptionOptions};
use ferrule_core::topic::matches;
use ferrule_core::{Message, Origin, QoS, TenantId};
use parking_lot::Mutex;
use proptest::prelude::*;

#[derive(Default)]
struct Count(Mutex<usize>);

impl Subscriber for Count {
    fn deliver(&self, _: &Arc<Message>, _: &Matched) -> ferrule_bus::Delivered {
        *self.0.lock() += 1;
        ferrule_bus::Delivered::default()
    }
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof!["[ab]{1,2}", Just(String::new()), Just("$x".to_owned())]
}

fn filter() -> impl Strategy<Value = String> {
    let lvl = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
    (prop::collection::vec(lvl, 1..4), any::<bool>()).prop_map(|(mut v, hash)| {
        if hash {
            v.push("#".to_owned());
        }
        v.join("/")
    })
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|v| v.join("/"))
        .prop_filter("non-empty", |s| !s.is_empty())
}

proptest! {
    #[test]
    fn delivers_exactly_to_matching_filters(filters in prop::collection::vec(filter(), 1..12), topic in name()) {
        let router = Router::default();
        let tenant = TenantId::new("t").unwrap();
        let mut counters = Vec::new();
        for f in &filters {
            let c = Arc::new(Count::default());
            let entry = Entry {
                id: router.next_subscriber_id(),
                subscriber: c.clone(),
                options: SubscriptionOptions::qos(QoS::AtMostOnce),
            };
            router.subscribe(&tenant, f, entry);
            counters.push((f.clone(), c));
        }
        let msg = Message::new(tenant.clone(), topic.as_str().into(), Bytes::new(), QoS::AtMostOnce, Origin::Api);
        let delivered = router.publish(Arc::new(msg)).delivered;
        let expected = filters.iter().filter(|f| matches(f, &topic)).count();
        prop_assert_eq!(delivered, expected);
        for (f, c) in counters {
            prop_assert_eq!(*c.0.lock(), usize::from(matches(&f, &topic)), "filter {} topic {}", f, topic);
        }
    }
}
