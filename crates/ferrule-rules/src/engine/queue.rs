//! A tenant's rule queue: the router hands it the messages on the tenant's
//! rules' FROM topics; its worker takes them in batches.
//!
//! It never blocks or pushes back on the router: when the queue is full the
//! message is not evaluated, and the overflow is counted (rules must never
//! slow devices down; a rule that cannot keep up says so in /metrics).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferrule_bus::{Delivered, Matched, Subscriber};
use ferrule_core::Message;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::stats::TenantCounters;

pub(crate) struct TenantQueue {
    messages: Mutex<VecDeque<Arc<Message>>>,
    capacity: usize,
    pub(crate) ready: Notify,
    pub(crate) counters: TenantCounters,
}

impl TenantQueue {
    pub(crate) fn new(tenant: &str, capacity: usize) -> Self {
        Self {
            messages: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            counters: TenantCounters::new(tenant),
        }
    }

    /// Moves up to `max` waiting messages into `batch` (cleared first).
    pub(crate) fn take(&self, batch: &mut Vec<Arc<Message>>, max: usize) {
        batch.clear();
        let mut messages = self.messages.lock();
        let n = messages.len().min(max);
        batch.extend(messages.drain(..n));
    }
}

impl Subscriber for TenantQueue {
    fn deliver(&self, message: &Arc<Message>, _matched: &Matched) -> Delivered {
        let was_empty = {
            let mut messages = self.messages.lock();
            if messages.len() >= self.capacity {
                drop(messages);
                self.counters.overflow.increment(1);
                self.counters.overflow_count.fetch_add(1, Ordering::Relaxed);
                return Delivered::default();
            }
            messages.push_back(message.clone());
            messages.len() == 1
        };
        // The worker drains everything it finds once woken: only the first
        // message after a drain needs to wake it.
        if was_empty {
            self.ready.notify_one();
        }
        Delivered::default()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ferrule_core::{Origin, QoS, TenantId};

    use super::*;

    fn message(n: u8) -> Arc<Message> {
        Arc::new(Message::new(
            TenantId::new("t").unwrap(),
            "a/b".into(),
            Bytes::from(vec![n]),
            QoS::AtMostOnce,
            Origin::System,
        ))
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let queue = TenantQueue::new("t", 2);
        let matched = Matched::default();
        for n in 0..5 {
            let d = queue.deliver(&message(n), &matched);
            assert!(
                d.backpressure.is_none(),
                "the router is never asked to wait"
            );
        }
        assert_eq!(queue.counters.overflow_count.load(Ordering::Relaxed), 3);
        let mut batch = Vec::new();
        queue.take(&mut batch, 10);
        let kept: Vec<u8> = batch.iter().map(|m| m.payload[0]).collect();
        assert_eq!(kept, [0, 1], "the oldest are kept, in order");
        // Room again once taken.
        queue.deliver(&message(9), &matched);
        queue.take(&mut batch, 10);
        assert_eq!(batch.len(), 1);
    }
}
