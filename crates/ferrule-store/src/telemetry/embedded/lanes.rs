//! Per-tenant lanes of queued appends, so that every group commit takes
//! from each tenant in turn: a tenant flooding the store fills its own lane,
//! and another tenant's append waits for one commit, not for the flood.
//!
//! Appends of one tenant stay in order (a lane is FIFO), which is what a
//! publisher's acknowledgements need. Other requests (purges, retention
//! deletes, settings) are barriers: the writer commits every lane before it
//! runs one (see `writer`), so they stay ordered with all appends.

use std::collections::{BTreeSet, HashMap, VecDeque};

use ferrule_core::TenantId;

use super::writer::Request;

#[derive(Default)]
pub struct Lanes {
    lanes: HashMap<TenantId, VecDeque<Request>>,
    /// Tenants with something queued, in the order they are served.
    turn: VecDeque<TenantId>,
    /// Tickets of the queued appends: the lowest is the commit mark.
    tickets: BTreeSet<u64>,
    /// The highest ticket ever queued.
    last: u64,
}

impl Lanes {
    pub fn is_empty(&self) -> bool {
        self.turn.is_empty()
    }

    /// Queues an append at the end of its tenant's lane.
    pub fn push(&mut self, request: Request) {
        let Request::Append { ticket, tenant, .. } = &request else {
            debug_assert!(false, "only appends go into lanes");
            return;
        };
        self.tickets.insert(*ticket);
        self.last = self.last.max(*ticket);
        let lane = self.lanes.entry(tenant.clone()).or_default();
        if lane.is_empty() {
            self.turn.push_back(tenant.clone());
        }
        lane.push_back(request);
    }

    /// Takes appends for one commit: one from each lane in turn, until the
    /// batch is as large as `full` says (at least one append is taken).
    pub fn batch(&mut self, mut full: impl FnMut(&Request) -> bool) -> Vec<Request> {
        let mut out = Vec::new();
        while let Some(tenant) = self.turn.pop_front() {
            let Some(lane) = self.lanes.get_mut(&tenant) else {
                continue;
            };
            let Some(request) = lane.pop_front() else {
                self.lanes.remove(&tenant);
                continue;
            };
            if lane.is_empty() {
                self.lanes.remove(&tenant);
            } else {
                self.turn.push_back(tenant);
            }
            if let Request::Append { ticket, .. } = &request {
                self.tickets.remove(ticket);
            }
            let stop = full(&request);
            out.push(request);
            if stop {
                break;
            }
        }
        out
    }

    /// Every ticket at or below this is out of the lanes (committed, once
    /// the batches taken are).
    pub fn mark(&self) -> u64 {
        self.tickets.first().map_or(self.last, |t| t - 1)
    }
}
