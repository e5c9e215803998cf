//! The open streams: caps per identity and per tenant, and closing an
//! identity's streams when its access changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferrule_core::TenantId;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::inbox::InboxBounds;

/// Limits of live streams.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Streams one identity (user or API key) may hold open at once.
    pub per_identity: usize,
    /// Streams one tenant may hold open at once.
    pub per_tenant: usize,
    /// Topic filters one stream may hold.
    pub filters: usize,
    /// What waits for a client before it is dropped as too slow.
    pub inbox: InboxBounds,
    /// Largest text frame a client may send.
    pub max_client_frame: usize,
    /// How often the server pings; a client silent for two periods is closed.
    pub ping_every: std::time::Duration,
    /// How often the caller's credentials are checked again.
    pub reauthenticate_every: std::time::Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            per_identity: 32,
            per_tenant: 1024,
            filters: 64,
            inbox: InboxBounds {
                messages: 1024,
                bytes: 4 * 1024 * 1024,
            },
            max_client_frame: 64 * 1024,
            ping_every: std::time::Duration::from_secs(30),
            reauthenticate_every: std::time::Duration::from_secs(30),
        }
    }
}

/// Every open live stream. Cheap to clone: clones share one registry.
#[derive(Clone, Default)]
pub struct LiveStreams {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    limits: StreamLimits,
    /// Cancelled at server shutdown; streams then close with 1001.
    shutdown: CancellationToken,
    tasks: TaskTracker,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    by_tenant: HashMap<TenantId, usize>,
    /// Per (tenant, owner): one token per stream, to close them all.
    by_identity: HashMap<(TenantId, String), Vec<(u64, CancellationToken)>>,
    next: u64,
}

/// Which cap refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Identity(usize),
    Tenant(usize),
}

impl LiveStreams {
    /// Streams that close on `shutdown` and run on `tasks`, so the server
    /// waits for them to say goodbye.
    pub fn new(limits: StreamLimits, shutdown: CancellationToken, tasks: TaskTracker) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits,
                shutdown,
                tasks,
                open: Mutex::default(),
            }),
        }
    }

    pub fn limits(&self) -> &StreamLimits {
        &self.inner.limits
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Takes a place for a new stream of `owner` (a session owner:
    /// `user:ID`, `key:ID`) in `tenant`, or says which cap is full.
    pub fn admit(&self, tenant: &TenantId, owner: String) -> Result<Admitted, Full> {
        let limits = &self.inner.limits;
        let mut open = self.lock();
        let key = (tenant.clone(), owner);
        let mine = open.by_identity.get(&key).map_or(0, Vec::len);
        if mine >= limits.per_identity {
            return Err(Full::Identity(limits.per_identity));
        }
        if open.by_tenant.get(tenant).copied().unwrap_or(0) >= limits.per_tenant {
            return Err(Full::Tenant(limits.per_tenant));
        }
        open.next += 1;
        let id = open.next;
        let revoked = self.inner.shutdown.child_token();
        open.by_identity
            .entry(key.clone())
            .or_default()
            .push((id, revoked.clone()));
        *open.by_tenant.entry(tenant.clone()).or_default() += 1;
        Ok(Admitted {
            streams: self.clone(),
            key,
            id,
            revoked,
        })
    }

    /// Ends the streams of an identity whose access just changed (revoked
    /// key, deleted user, new password or role), or of the whole tenant
    /// when `owner` is `None`.
    pub fn close_identity(&self, tenant: &TenantId, owner: Option<&str>) {
        let open = self.lock();
        for ((t, o), streams) in open.by_identity.iter() {
            if t == tenant && owner.is_none_or(|owner| owner == o) {
                for (_, token) in streams {
                    token.cancel();
                }
            }
        }
    }

    fn release(&self, key: &(TenantId, String), id: u64) {
        let mut open = self.lock();
        if let Some(streams) = open.by_identity.get_mut(key) {
            streams.retain(|(i, _)| *i != id);
            if streams.is_empty() {
                open.by_identity.remove(key);
            }
        }
        if let Some(n) = open.by_tenant.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                open.by_tenant.remove(&key.0);
            }
        }
    }

    // A poisoned lock only means a panic while holding it; every update
    // leaves the maps consistent.
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.inner.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stream's place under the caps, given back when dropped.
pub struct Admitted {
    streams: LiveStreams,
    key: (TenantId, String),
    id: u64,
    /// Cancelled when the identity's access changes (or at shutdown).
    pub revoked: CancellationToken,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.streams.release(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams(per_identity: usize, per_tenant: usize) -> LiveStreams {
        LiveStreams::new(
            StreamLimits {
                per_identity,
                per_tenant,
                ..StreamLimits::default()
            },
            CancellationToken::new(),
            TaskTracker::new(),
        )
    }

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[test]
    fn caps_count_per_identity_and_per_tenant_and_free_on_drop() {
        let s = streams(2, 3);
        let a1 = s.admit(&t("a"), "user:1".into()).unwrap();
        let _a2 = s.admit(&t("a"), "user:1".into()).unwrap();
        assert_eq!(
            s.admit(&t("a"), "user:1".into()).err(),
            Some(Full::Identity(2))
        );
        let _b = s.admit(&t("a"), "key:k".into()).unwrap();
        assert_eq!(
            s.admit(&t("a"), "key:j".into()).err(),
            Some(Full::Tenant(3))
        );
        // Another tenant has its own count.
        let _other = s.admit(&t("b"), "user:1".into()).unwrap();
        drop(a1);
        assert!(s.admit(&t("a"), "user:1".into()).is_ok());
    }

    #[test]
    fn closing_an_identity_cancels_only_its_streams() {
        let s = streams(4, 8);
        let mine = s.admit(&t("a"), "key:k".into()).unwrap();
        let other = s.admit(&t("a"), "key:j".into()).unwrap();
        let elsewhere = s.admit(&t("b"), "key:k".into()).unwrap();
        s.close_identity(&t("a"), Some("key:k"));
        assert!(mine.revoked.is_cancelled());
        assert!(!other.revoked.is_cancelled());
        assert!(!elsewhere.revoked.is_cancelled());
        s.close_identity(&t("a"), None);
        assert!(other.revoked.is_cancelled());
        assert!(!elsewhere.revoked.is_cancelled());
    }
}
