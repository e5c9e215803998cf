//! Message and byte rate limits, per client and per tenant.
//!
//! One tenant's flood must not slow the others. Each MQTT connection has
//! its own buckets (messages/s, bytes/s) and shares its tenant's; HTTP
//! ingest takes from the tenant's too. Buckets are GCRA (`governor`), a
//! second's worth of burst. Over the limit an MQTT client is slowed, not
//! dropped: its connection stops reading until the tokens for what it sent
//! are available, so TCP pushes back on the sender and nothing it sent is
//! lost. HTTP, which cannot be paused that way, answers 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use ferrule_core::TenantId;
use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;

use super::observe::{RateLimited, RateScope};

/// Limits per second; 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub client_messages: u32,
    pub client_bytes: u32,
    pub tenant_messages: u32,
    pub tenant_bytes: u32,
}

impl RateLimits {
    /// No limits at all.
    pub const OFF: RateLimits = RateLimits {
        client_messages: 0,
        client_bytes: 0,
        tenant_messages: 0,
        tenant_bytes: 0,
    };
}

impl Default for RateLimits {
    /// Far above what a device sends (a reading every second or so), and
    /// what a gateway or a backend client sends at a steady pace; a flood
    /// reaches them within a second.
    fn default() -> Self {
        Self {
            client_messages: 2_000,
            client_bytes: 2 * 1024 * 1024,
            tenant_messages: 20_000,
            tenant_bytes: 20 * 1024 * 1024,
        }
    }
}

/// A batch this large, even within its limits, gives the other connections
/// a turn before the next: a connection whose socket always has data would
/// otherwise run for the scheduler's whole budget (128 reads of 64 KiB)
/// while a quiet tenant's packet waits.
const YIELD_AFTER_PUBLISHES: u64 = 64;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

/// One GCRA bucket of `rate` per second, with a second's worth of burst.
struct Bucket {
    limiter: Limiter,
    burst: u32,
}

impl Bucket {
    fn new(rate: u32) -> Option<Self> {
        let rate = NonZeroU32::new(rate)?;
        Some(Self {
            limiter: RateLimiter::direct(Quota::per_second(rate)),
            burst: rate.get(),
        })
    }

    /// Takes `n` now, or says how long until it could. A batch above the
    /// burst is capped to it: a single packet larger than a second's worth
    /// of bytes still goes through, one second apart.
    fn take(&self, n: u64) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(n.min(u64::from(self.burst)) as u32) else {
            return Ok(());
        };
        match self.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.limiter.clock().now())),
            // n is capped to the burst above, so this cannot happen; waiting a
            // second is the safe answer if it does.
            Err(_) => Err(Duration::from_secs(1)),
        }
    }

    /// Takes `n`, in bursts, waiting as long as it takes; says whether it
    /// had to wait.
    async fn take_waiting(&self, mut n: u64) -> bool {
        let mut waited = false;
        while n > 0 {
            let chunk = n.min(u64::from(self.burst));
            match self.take(chunk) {
                Ok(()) => n -= chunk,
                Err(wait) => {
                    waited = true;
                    tokio::time::sleep(wait).await;
                }
            }
        }
        waited
    }
}

/// A pair of buckets: messages and bytes.
struct Buckets {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl Buckets {
    fn new(messages: u32, bytes: u32) -> Option<Self> {
        let b = Self {
            messages: Bucket::new(messages),
            bytes: Bucket::new(bytes),
        };
        (b.messages.is_some() || b.bytes.is_some()).then_some(b)
    }

    async fn take_waiting(&self, messages: u64, bytes: u64) -> bool {
        let mut waited = false;
        if let Some(b) = &self.messages {
            waited |= b.take_waiting(messages).await;
        }
        if let Some(b) = &self.bytes {
            waited |= b.take_waiting(bytes).await;
        }
        waited
    }
}

/// Every tenant's buckets, shared by its MQTT connections and HTTP ingest.
pub struct TenantRates {
    limits: RateLimits,
    tenants: Mutex<HashMap<TenantId, Arc<Buckets>>>,
}

impl TenantRates {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// The tenant's buckets; `None` when its limits are off.
    fn tenant(&self, tenant: &TenantId) -> Option<Arc<Buckets>> {
        if self.limits.tenant_messages == 0 && self.limits.tenant_bytes == 0 {
            return None;
        }
        let mut map = self.tenants.lock();
        if let Some(b) = map.get(tenant) {
            return Some(b.clone());
        }
        let b = Arc::new(Buckets::new(
            self.limits.tenant_messages,
            self.limits.tenant_bytes,
        )?);
        map.insert(tenant.clone(), b.clone());
        Some(b)
    }

    /// Forgets a deleted tenant's buckets.
    pub fn remove(&self, tenant: &TenantId) {
        self.tenants.lock().remove(tenant);
    }

    /// For a caller that cannot be paused (HTTP ingest): takes one message
    /// of `bytes` from the tenant's buckets now, or says how long to wait
    /// before retrying (counted).
    pub fn try_take(&self, tenant: &TenantId, bytes: usize) -> Result<(), Duration> {
        let Some(b) = self.tenant(tenant) else {
            return Ok(());
        };
        let refused = b
            .messages
            .as_ref()
            .and_then(|m| m.take(1).err())
            .or_else(|| b.bytes.as_ref().and_then(|m| m.take(bytes as u64).err()));
        match refused {
            None => Ok(()),
            Some(wait) => {
                RateLimited {
                    scope: RateScope::Tenant,
                    tenant,
                }
                .emit();
                Err(wait)
            }
        }
    }

    /// The limiter of one MQTT connection of `tenant`.
    pub(super) fn client(&self, tenant: &TenantId) -> ClientRate {
        ClientRate {
            own: Buckets::new(self.limits.client_messages, self.limits.client_bytes),
            tenant: self.tenant(tenant),
            tenant_id: tenant.clone(),
            owed_messages: 0,
            owed_bytes: 0,
        }
    }
}

/// One connection's limits and what it has read but not yet paid for.
pub(super) struct ClientRate {
    own: Option<Buckets>,
    tenant: Option<Arc<Buckets>>,
    tenant_id: TenantId,
    owed_messages: u64,
    owed_bytes: u64,
}

impl ClientRate {
    /// Records a batch just handled: `publishes` messages in `bytes` of input.
    pub(super) fn charge(&mut self, publishes: u64, bytes: usize) {
        self.owed_messages += publishes;
        self.owed_bytes += bytes as u64;
    }

    /// Whether [`settle`](Self::settle) has anything to do.
    pub(super) fn pending(&self) -> bool {
        self.owed_messages >= YIELD_AFTER_PUBLISHES
            || ((self.own.is_some() || self.tenant.is_some())
                && (self.owed_messages > 0 || self.owed_bytes > 0))
    }

    /// Pays for what was read: returns at once when within the limits,
    /// otherwise once the buckets have the tokens (the connection reads
    /// nothing meanwhile). A large batch yields to other connections first.
    pub(super) async fn settle(&mut self) {
        let (messages, bytes) = (self.owed_messages, self.owed_bytes);
        self.owed_messages = 0;
        self.owed_bytes = 0;
        if messages >= YIELD_AFTER_PUBLISHES {
            tokio::task::yield_now().await;
        }
        if let Some(own) = &self.own
            && own.take_waiting(messages, bytes).await
        {
            RateLimited {
                scope: RateScope::Client,
                tenant: &self.tenant_id,
            }
            .emit();
        }
        if let Some(tenant) = &self.tenant
            && tenant.take_waiting(messages, bytes).await
        {
            RateLimited {
                scope: RateScope::Tenant,
                tenant: &self.tenant_id,
            }
            .emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_says_how_long_to_wait() {
        let b = Bucket::new(100).unwrap();
        assert!(b.take(100).is_ok());
        let wait = b.take(10).unwrap_err();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(110));
        assert!(Bucket::new(0).is_none());
    }

    #[test]
    fn a_batch_above_the_burst_is_capped() {
        let b = Bucket::new(10).unwrap();
        assert!(b.take(1_000).is_ok());
        assert!(b.take(1).is_err());
    }

    #[tokio::test]
    async fn settling_over_the_limit_waits_and_under_it_does_not() {
        let rates = TenantRates::new(RateLimits {
            client_messages: 100,
            client_bytes: 0,
            tenant_messages: 0,
            tenant_bytes: 0,
        });
        let t = TenantId::new("t").unwrap();
        let mut c = rates.client(&t);
        let start = std::time::Instant::now();
        c.charge(50, 500);
        c.settle().await;
        assert!(start.elapsed() < Duration::from_millis(50));
        c.charge(100, 500);
        c.settle().await;
        // 150 messages at 100/s with a burst of 100: about half a second.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(!c.pending());
    }

    #[test]
    fn http_over_the_tenant_limit_is_told_when_to_retry() {
        let rates = TenantRates::new(RateLimits {
            tenant_messages: 2,
            ..RateLimits::OFF
        });
        let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
        assert!(rates.try_take(&a, 10).is_ok());
        assert!(rates.try_take(&a, 10).is_ok());
        assert!(rates.try_take(&a, 10).is_err());
        // Another tenant has its own bucket.
        assert!(rates.try_take(&b, 10).is_ok());
        assert!(TenantRates::new(RateLimits::OFF).try_take(&a, 10).is_ok());
    }
}
