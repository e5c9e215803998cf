//! A client's recent access decisions, so that checking every message costs
//! little.
//!
//! Read access is decided per message: every message on its way to a client
//! is checked against the tenant's rules, and so is every publish. The
//! [`Gatekeeper`] hands out a [`Check`] for one principal and access, valid
//! while the tenant's policy version stays the same; [`Decisions`] keeps it
//! with the answers for the last few topics, and starts afresh as soon as
//! the version moves (a rule changed, a device was deleted), so a change
//! reaches existing subscriptions at the next message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrule_core::Principal;

use super::{Access, Gatekeeper};

/// How a principal's access to topics is decided under one policy version.
pub enum Check {
    /// Every topic (an editor with no deny rule in the way): no per-message
    /// work at all.
    Everything,
    /// No topic (a deleted identity).
    Nothing,
    /// Topic by topic.
    Each(Box<dyn Fn(&str) -> bool + Send + Sync>),
}

/// Topics remembered with their answer: a client mostly sends to, and
/// receives from, a handful of topics.
const RECENT: usize = 4;

/// One principal's decisions for one access, under the current version.
pub struct Decisions {
    gate: Arc<dyn Gatekeeper>,
    who: Principal,
    access: Access,
    version: Arc<AtomicU64>,
    /// The version `check` and `recent` hold for; `None` before the first
    /// message.
    seen: Option<u64>,
    check: Check,
    /// Most recent first.
    recent: Vec<(bytestring::ByteString, bool)>,
}

impl Decisions {
    pub fn new(gate: Arc<dyn Gatekeeper>, who: Principal, access: Access) -> Self {
        let version = gate.policy_version(&who.tenant);
        Self {
            gate,
            who,
            access,
            version,
            seen: None,
            check: Check::Nothing,
            recent: Vec::new(),
        }
    }

    /// Whether the principal may have this access to `topic` now.
    pub fn allows(&mut self, topic: &bytestring::ByteString) -> bool {
        // The version is read before the check is built: a change racing
        // with the build bumps it again, and the next message rebuilds.
        let now = self.version.load(Ordering::Acquire);
        if self.seen != Some(now) {
            self.seen = Some(now);
            self.check = self.gate.check(&self.who, self.access);
            self.recent.clear();
        }
        let check = match &self.check {
            Check::Everything => return true,
            Check::Nothing => return false,
            Check::Each(check) => check,
        };
        if let Some(i) = self.recent.iter().position(|(t, _)| t == topic) {
            let hit = self.recent[i].1;
            // Keep the hottest topic first.
            self.recent[..=i].rotate_right(1);
            return hit;
        }
        let allowed = check(topic);
        if self.recent.len() == RECENT {
            self.recent.pop();
        }
        self.recent.insert(0, (topic.clone(), allowed));
        allowed
    }
}
