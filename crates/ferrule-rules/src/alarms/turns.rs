//! One writer at a time per tenant: raising, acknowledging and clearing
//! read an alarm and write it back, and two raises of the same device and
//! type at once must find one open alarm, not create two.
//!
//! A fixed set of locks, picked by the tenant's hash, so the set never grows
//! with tenants; tenants sharing a lock only wait on each other's (short)
//! store writes.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use ferrule_core::TenantId;
use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 64;

pub struct Turns {
    stripes: Vec<Mutex<()>>,
    wait: Duration,
}

impl Turns {
    /// `wait`: the longest a caller waits for its turn.
    pub fn new(wait: Duration) -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            wait,
        }
    }

    /// The tenant's turn, or `None` when it did not come within the wait.
    pub async fn take(&self, tenant: &TenantId) -> Option<MutexGuard<'_, ()>> {
        let mut h = DefaultHasher::new();
        tenant.hash(&mut h);
        let stripe = &self.stripes[(h.finish() % STRIPES as u64) as usize];
        tokio::time::timeout(self.wait, stripe.lock()).await.ok()
    }
}
