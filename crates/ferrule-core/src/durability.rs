//! Durable acknowledgements across stores.
//!
//! Here in the core, not in the router, so that a store reports its
//! commits without knowing the router, and the broker and the HTTP API
//! wait on them without knowing the stores.
//!
//! A PUBACK or an HTTP 2xx promises that what it acknowledges survives a
//! crash. Each store that keeps messages (the broker's session store, the
//! telemetry store) numbers its writes on its own [`Ledger`] and reports the
//! highest number it has committed. A message that touched several stores
//! carries a [`Ticket`] with one number per ledger, and is acknowledged once
//! every one of them is committed. One watch channel carries all ledgers, so
//! a publisher waits on a single thing whatever stores its message reached.
//!
//! A store may also commit writes out of order (the telemetry writer takes
//! each tenant's queue in turn, so that one tenant's backlog does not hold
//! up another's acknowledgements): it reports the writes it committed above
//! its low-water mark, which count until the mark passes them. Writes of
//! one publisher stay in order, so a ticket joined from several of its
//! writes is covered once its highest one is.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::watch;

/// A store with its own numbering of durable writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// MQTT sessions and retained messages.
    Sessions = 0,
    /// Telemetry points and events.
    Telemetry = 1,
    /// Device twins (reported state sent over MQTT or HTTP ingest).
    Twin = 2,
}

const LEDGERS: usize = 3;

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
    /// Per ledger, writes committed above its mark (out of order).
    early: Arc<[Mutex<BTreeSet<u64>>; LEDGERS]>,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Ticket::NONE)),
            early: Arc::new(Default::default()),
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

    /// A store that commits out of order reports `seqs`, just committed,
    /// and `mark`, below which every write is committed. Watchers are woken
    /// even if the mark did not move.
    pub fn committed_out_of_order(&self, ledger: Ledger, seqs: &[u64], mark: u64) {
        let early = &self.early[ledger as usize];
        // Recorded before watchers wake, forgotten only once the mark (which
        // watchers read under the same lock as they test) covers them.
        early
            .lock()
            .extend(seqs.iter().copied().filter(|s| *s > mark));
        self.tx.send_modify(|c| {
            let slot = &mut c.0[ledger as usize];
            *slot = (*slot).max(mark);
        });
        let mut early = early.lock();
        if early.first().is_some_and(|s| *s <= mark) {
            *early = early.split_off(&(mark + 1));
        }
    }

    /// Watches the committed tickets; test a ticket against what it shows
    /// with [`covers`](Self::covers).
    pub fn watch(&self) -> watch::Receiver<Ticket> {
        self.tx.subscribe()
    }

    /// Whether `ticket` is committed, given `marks` read from [`watch`]
    /// (Self::watch): each number at or below its ledger's mark, or
    /// committed out of order.
    pub fn covers(&self, marks: &Ticket, ticket: Ticket) -> bool {
        ticket
            .0
            .iter()
            .zip(marks.0)
            .enumerate()
            .all(|(l, (need, done))| *need <= done || self.early[l].lock().contains(need))
    }

    /// Whether `ticket`'s writes are all committed.
    pub fn is_durable(&self, ticket: Ticket) -> bool {
        self.covers(&self.tx.borrow(), ticket)
    }

    /// Waits until `ticket`'s writes are all committed.
    pub async fn wait(&self, ticket: Ticket) {
        if ticket.is_none() {
            return;
        }
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|c| self.covers(c, ticket)).await;
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
    async fn writes_committed_out_of_order_count_until_the_mark_passes() {
        let d = Durability::default();
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait(Ticket::on(Ledger::Telemetry, 7)).await }
        });
        // 7 commits before 3..6: the mark stays at 2.
        d.committed_out_of_order(Ledger::Telemetry, &[1, 2, 7], 2);
        waiter.await.unwrap();
        assert!(d.is_durable(Ticket::on(Ledger::Telemetry, 2)));
        assert!(!d.is_durable(Ticket::on(Ledger::Telemetry, 3)));
        assert!(d.is_durable(Ticket::on(Ledger::Telemetry, 7)));
        d.committed_out_of_order(Ledger::Telemetry, &[3, 4, 5, 6], 7);
        assert!(d.is_durable(Ticket::on(Ledger::Telemetry, 5)));
        assert!(!d.is_durable(Ticket::on(Ledger::Telemetry, 8)));
        assert!(d.early[Ledger::Telemetry as usize].lock().is_empty());
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
