//! Durable acknowledgements across stores.
//!
//! A PUBACK or an HTTP 2xx promises that what it acknowledges survives a
//! crash. Each store that keeps messages (the broker's session store, the
//! telemetry store) numbers its writes on its own [`Ledger`] and reports the
//! highest number it has committed. A message that touched several stores
//! carries a [`Ticket`] with one number per ledger, and is acknowledged once
//! every one of them is committed. One watch channel carries all ledgers, so
//! a publisher waits on a single thing whatever stores its message reached.

use std::sync::Arc;

use tokio::sync::watch;

/// A store with its own numbering of durable writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// MQTT sessions and retained messages.
    Sessions = 0,
    /// Telemetry points and events.
    Telemetry = 1,
}

const LEDGERS: usize = 2;

/// Per ledger, a write number; 0 means "nothing to wait for" there.
/// Used both for what a message needs and for what has been committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticket([u64; LEDGERS]);

impl Ticket {
    /// Needs nothing: acknowledge at once.
    pub const NONE: Ticket = Ticket([0; LEDGERS]);

    /// Write `seq` of `ledger`.
    pub fn on(ledger: Ledger, seq: u64) -> Ticket {
        let mut t = Ticket::NONE;
        t.0[ledger as usize] = seq;
        t
    }

    pub fn is_none(&self) -> bool {
        *self == Ticket::NONE
    }

    /// What both tickets need.
    #[must_use]
    pub fn join(self, other: Ticket) -> Ticket {
        let mut t = self;
        for (a, b) in t.0.iter_mut().zip(other.0) {
            *a = (*a).max(b);
        }
        t
    }

    /// Whether every write this ticket needs is within `committed`.
    pub fn is_covered_by(&self, committed: &Ticket) -> bool {
        self.0
            .iter()
            .zip(committed.0)
            .all(|(need, done)| *need <= done)
    }

    /// The write number this ticket needs on `ledger`.
    pub fn get(&self, ledger: Ledger) -> u64 {
        self.0[ledger as usize]
    }
}

/// The committed write number of every ledger, shared by stores (which
/// advance it) and publishers (which wait on it). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Durability {
    tx: Arc<watch::Sender<Ticket>>,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Ticket::NONE)),
        }
    }
}

impl Durability {
    /// A store reports that its writes up to `seq` are committed.
    pub fn committed(&self, ledger: Ledger, seq: u64) {
        self.tx.send_if_modified(|c| {
            let slot = &mut c.0[ledger as usize];
            let advanced = seq > *slot;
            *slot = (*slot).max(seq);
            advanced
        });
    }

    /// Watches the committed tickets.
    pub fn watch(&self) -> watch::Receiver<Ticket> {
        self.tx.subscribe()
    }

    /// Whether `ticket`'s writes are all committed.
    pub fn is_durable(&self, ticket: Ticket) -> bool {
        ticket.is_covered_by(&self.tx.borrow())
    }

    /// Waits until `ticket`'s writes are all committed.
    pub async fn wait(&self, ticket: Ticket) {
        if ticket.is_none() {
            return;
        }
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|c| ticket.is_covered_by(c)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_waits_for_every_ledger_it_touched() {
        let d = Durability::default();
        let t = Ticket::on(Ledger::Sessions, 3).join(Ticket::on(Ledger::Telemetry, 7));
        assert!(!d.is_durable(t));
        d.committed(Ledger::Telemetry, 9);
        assert!(!d.is_durable(t), "sessions not yet committed");
        d.committed(Ledger::Sessions, 3);
        assert!(d.is_durable(t));
        d.committed(Ledger::Sessions, 1);
        assert!(d.is_durable(t), "a ledger never goes back");
        assert!(d.is_durable(Ticket::NONE));
    }

    #[tokio::test]
    async fn wait_returns_once_committed() {
        let d = Durability::default();
        let t = Ticket::on(Ledger::Telemetry, 2);
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait(t).await }
        });
        d.committed(Ledger::Telemetry, 1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        d.committed(Ledger::Telemetry, 2);
        waiter.await.unwrap();
    }
}
