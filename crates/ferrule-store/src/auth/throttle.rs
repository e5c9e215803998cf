//! Backoff after failed logins, per account and per source address.
//!
//! A few failures are free; after them each failure doubles the wait before
//! the next attempt is even looked at (up to `max_backoff`). While an
//! account or an address waits, its attempts are refused before any
//! password is hashed, so a guesser costs us a map lookup, not 19 MiB and
//! 50 ms of a hashing thread. A success resets the account (not the
//! address: one valid account must not launder a sprayer's failures).
//!
//! Both maps are LRU caches of at most `max_entries`: a flood of distinct
//! names or addresses evicts the stalest entries instead of growing. Keys
//! are a keyed 64-bit hash of the name, so a 64 KiB MQTT user name costs
//! eight bytes here. IPv6 sources count by /64, which one host usually has
//! whole.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashlink::LruCache;
use parking_lot::Mutex;

/// Backoff settings; a `*_free` of 0 turns that side off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures an account may have before it must wait.
    pub account_free: u32,
    /// Failures an address may have (over all accounts) before it must wait.
    pub source_free: u32,
    /// The first wait; each further failure doubles it.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Entries each map keeps at most.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            account_free: 5,
            source_free: 20,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            max_entries: 100_000,
        }
    }
}

impl ThrottleConfig {
    /// Failures are forgotten after this long without any.
    fn forget_after(&self) -> Duration {
        (self.max * 4).max(Duration::from_secs(15 * 60))
    }

    /// The wait after the `failures`-th failure of an entry allowed `free`.
    fn delay(&self, failures: u32, free: u32) -> Option<Duration> {
        let over = failures.checked_sub(free)?;
        let doubled = self.base.saturating_mul(1u32 << over.min(20));
        Some(doubled.min(self.max))
    }
}

/// Which count refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Account,
    Source,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Source => "source",
        }
    }
}

/// An attempt refused without being checked: retry after the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub scope: Scope,
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// Attempts admitted and not yet settled.
    pending: u32,
    blocked_until: Option<Instant>,
    last: Instant,
}

struct Side {
    free: u32,
    entries: Mutex<LruCache<u64, Entry>>,
}

/// Failed-login counts of accounts and addresses.
pub struct Throttle {
    config: ThrottleConfig,
    accounts: Side,
    sources: Side,
    keys: RandomState,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .finish()
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Arc<Throttle> {
        let side = |free| Side {
            free,
            entries: Mutex::new(LruCache::new(config.max_entries.max(1))),
        };
        Arc::new(Throttle {
            config,
            accounts: side(config.account_free),
            sources: side(config.source_free),
            keys: RandomState::new(),
        })
    }

    /// Admits an attempt for `account` from `source`, or says how long to
    /// wait. Settle the attempt with [`Attempt::failed`] or
    /// [`Attempt::succeeded`]; dropping it counts nothing.
    pub fn begin(
        self: &Arc<Self>,
        account: &str,
        source: Option<IpAddr>,
    ) -> Result<Attempt, Throttled> {
        let now = Instant::now();
        let account = (self.accounts.free > 0).then(|| self.keys.hash_one(account));
        let source = source
            .filter(|_| self.sources.free > 0)
            .map(|ip| self.keys.hash_one(source_key(ip)));
        let mut accounts = self.accounts.entries.lock();
        let mut sources = self.sources.entries.lock();
        if let Some(k) = account {
            self.check(&mut accounts, self.accounts.free, k, now)
                .map_err(|retry_after| Throttled {
                    scope: Scope::Account,
                    retry_after,
                })?;
        }
        if let Some(k) = source {
            self.check(&mut sources, self.sources.free, k, now)
                .map_err(|retry_after| Throttled {
                    scope: Scope::Source,
                    retry_after,
                })?;
        }
        for (map, key) in [(&mut *accounts, account), (&mut *sources, source)] {
            if let Some(k) = key {
                match map.get_mut(&k) {
                    Some(e) => e.pending += 1,
                    // `insert`, unlike `entry`, evicts beyond the bound.
                    None => {
                        map.insert(
                            k,
                            Entry {
                                failures: 0,
                                pending: 1,
                                blocked_until: None,
                                last: now,
                            },
                        );
                    }
                }
            }
        }
        Ok(Attempt {
            throttle: self.clone(),
            account,
            source,
            settled: false,
        })
    }

    /// `Err(wait)` when the entry must wait; forgets a stale entry.
    fn check(
        &self,
        map: &mut LruCache<u64, Entry>,
        free: u32,
        key: u64,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(e) = map.get_mut(&key) else {
            return Ok(());
        };
        if let Some(until) = e.blocked_until
            && until > now
        {
            return Err(until - now);
        }
        if e.pending == 0 && now.duration_since(e.last) > self.config.forget_after() {
            map.remove(&key);
            return Ok(());
        }
        // Out of free attempts and one is being checked: its outcome decides
        // the wait, so concurrent guesses cannot all slip in before it.
        if e.failures + e.pending >= free && e.pending > 0 {
            return Err(self.config.base);
        }
        Ok(())
    }

    fn settle(&self, account: Option<u64>, source: Option<u64>, failed: Option<bool>) {
        let now = Instant::now();
        for (side, key) in [(&self.accounts, account), (&self.sources, source)] {
            let Some(k) = key else { continue };
            let mut map = side.entries.lock();
            let Some(e) = map.get_mut(&k) else { continue };
            e.pending = e.pending.saturating_sub(1);
            match failed {
                Some(true) => {
                    e.failures = e.failures.saturating_add(1);
                    e.last = now;
                    if let Some(wait) = self.config.delay(e.failures, side.free) {
                        e.blocked_until = Some(now + wait);
                    }
                }
                // A success clears the account, never the address.
                Some(false) if std::ptr::eq(side, &self.accounts) => {
                    map.remove(&k);
                }
                _ => {}
            }
        }
    }
}

/// Addresses as counted: IPv6 by /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// An admitted attempt; settle it once its password has been checked.
pub struct Attempt {
    throttle: Arc<Throttle>,
    account: Option<u64>,
    source: Option<u64>,
    settled: bool,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt").finish_non_exhaustive()
    }
}

impl Attempt {
    pub fn failed(mut self) {
        self.settled = true;
        self.throttle.settle(self.account, self.source, Some(true));
    }

    pub fn succeeded(mut self) {
        self.settled = true;
        self.throttle.settle(self.account, self.source, Some(false));
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        // Abandoned (caller gone, hashing busy, store error): not a failure.
        if !self.settled {
            self.throttle.settle(self.account, self.source, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            account_free: 3,
            source_free: 5,
            base: Duration::from_millis(200),
            max: Duration::from_secs(1),
            max_entries: 4,
        }
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn free_failures_then_doubling_waits_and_a_success_resets_the_account() {
        let t = Throttle::new(config());
        for _ in 0..3 {
            t.begin("ann", ip(1)).unwrap().failed();
        }
        let refused = t.begin("ann", ip(2)).unwrap_err();
        assert_eq!(refused.scope, Scope::Account);
        assert!(refused.retry_after <= Duration::from_millis(200));
        // Another account from the same address is still fine.
        t.begin("bob", ip(1)).unwrap().succeeded();
        std::thread::sleep(Duration::from_millis(210));
        t.begin("ann", ip(2)).unwrap().failed();
        let refused = t.begin("ann", ip(2)).unwrap_err();
        assert!(
            refused.retry_after > Duration::from_millis(200),
            "{refused:?}"
        );
        std::thread::sleep(refused.retry_after + Duration::from_millis(10));
        t.begin("ann", ip(2)).unwrap().succeeded();
        for _ in 0..3 {
            t.begin("ann", ip(3)).unwrap().failed();
        }
    }

    #[test]
    fn an_address_waits_after_failures_on_many_accounts() {
        let t = Throttle::new(config());
        for i in 0..5 {
            t.begin(&format!("user{i}"), ip(1)).unwrap().failed();
        }
        let refused = t.begin("fresh", ip(1)).unwrap_err();
        assert_eq!(refused.scope, Scope::Source);
        t.begin("fresh", ip(9)).unwrap().succeeded();
    }

    #[test]
    fn concurrent_attempts_beyond_the_free_ones_wait_for_the_first() {
        let t = Throttle::new(config());
        let a: Vec<_> = (0..3).map(|_| t.begin("ann", None).unwrap()).collect();
        assert_eq!(t.begin("ann", None).unwrap_err().scope, Scope::Account);
        drop(a);
        t.begin("ann", None).unwrap().failed();
    }

    #[test]
    fn maps_stay_within_their_bound() {
        let t = Throttle::new(config());
        for i in 0..100u8 {
            t.begin(&format!("u{i}"), ip(i)).unwrap().failed();
        }
        assert!(t.accounts.entries.lock().len() <= 4);
        assert!(t.sources.entries.lock().len() <= 4);
    }

    #[test]
    fn ipv6_counts_by_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_key(m), IpAddr::from([10, 0, 0, 1]));
    }
}
