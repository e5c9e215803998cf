//! A stream's inbox: the router's subscriber for one WebSocket.
//!
//! The router calls [`Inbox::deliver`] on the publisher's task, under the
//! tenant's read lock, so it only queues and wakes the stream's task. The
//! queue is bounded in messages and in bytes; a message that does not fit
//! is not queued and marks the inbox overflowed, which the stream's task
//! answers by closing the stream: a live view that silently skips messages
//! would mislead, and a reader that cannot keep up would otherwise hold the
//! server's memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrule_bus::{Delivered, Matched, Notify, Subscriber};
use ferrule_core::Message;

use super::observe::StreamReleased;

/// How much one stream may hold for its client.
#[derive(Debug, Clone, Copy)]
pub struct InboxBounds {
    pub messages: usize,
    /// Topic and payload bytes.
    pub bytes: usize,
}

#[derive(Default)]
struct Queue {
    messages: VecDeque<Arc<Message>>,
    bytes: usize,
}

pub struct Inbox {
    bounds: InboxBounds,
    queue: Mutex<Queue>,
    overflowed: AtomicBool,
    wake: Notify,
}

fn size_of(message: &Message) -> usize {
    message.topic.len() + message.payload.len()
}

impl Inbox {
    pub fn new(bounds: InboxBounds) -> Arc<Self> {
        super::observe::StreamOpened.emit();
        Arc::new(Self {
            bounds,
            queue: Mutex::default(),
            overflowed: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// Takes everything queued, oldest first.
    pub fn take(&self) -> VecDeque<Arc<Message>> {
        let mut queue = self.lock();
        queue.bytes = 0;
        std::mem::take(&mut queue.messages)
    }

    /// How many messages wait.
    pub fn waiting(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn has_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Resolves when something was queued or the inbox overflowed since the
    /// last call (a wake-up sent while nobody waits is kept for the next).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Resolves once the inbox has overflowed.
    pub async fn overflow(&self) {
        while !self.has_overflowed() {
            self.wake.notified().await;
        }
    }

    // A poisoned lock only means a panic while holding it; the queue stays
    // consistent (each update is one push or one take).
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Subscriber for Inbox {
    fn deliver(&self, message: &Arc<Message>, _: &Matched) -> Delivered {
        if self.has_overflowed() {
            return Delivered::default();
        }
        let size = size_of(message);
        {
            let mut queue = self.lock();
            if queue.messages.len() >= self.bounds.messages
                || queue.bytes + size > self.bounds.bytes
            {
                self.overflowed.store(true, Ordering::Release);
            } else {
                queue.bytes += size;
                queue.messages.push_back(message.clone());
            }
        }
        self.wake.notify_one();
        // No backpressure: one browser tab must not slow the devices that
        // publish; the stream is dropped instead.
        Delivered::default()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        StreamReleased.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrule_core::{Origin, QoS, TenantId};

    fn message(payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message::new(
            TenantId::new("t").unwrap(),
            "a/b".into(),
            Bytes::from_static(payload),
            QoS::AtMostOnce,
            Origin::Api,
        ))
    }

    #[test]
    fn it_overflows_past_its_message_bound_and_keeps_what_fit() {
        let inbox = Inbox::new(InboxBounds {
            messages: 2,
            bytes: 1 << 20,
        });
        for _ in 0..3 {
            inbox.deliver(&message(b"x"), &Matched::default());
        }
        assert!(inbox.has_overflowed());
        assert_eq!(inbox.take().len(), 2);
    }

    #[test]
    fn it_overflows_past_its_byte_bound() {
        let inbox = Inbox::new(InboxBounds {
            messages: 100,
            bytes: 10,
        });
        inbox.deliver(&message(b"12345"), &Matched::default());
        assert!(!inbox.has_overflowed());
        inbox.deliver(&message(b"12345"), &Matched::default());
        assert!(inbox.has_overflowed());
        assert_eq!(inbox.waiting(), 1);
    }

    #[test]
    fn taking_frees_room() {
        let inbox = Inbox::new(InboxBounds {
            messages: 1,
            bytes: 100,
        });
        inbox.deliver(&message(b"x"), &Matched::default());
        assert_eq!(inbox.take().len(), 1);
        inbox.deliver(&message(b"x"), &Matched::default());
        assert!(!inbox.has_overflowed());
    }
}
