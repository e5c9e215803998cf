//! Tenants' ACL policies, kept in memory for the broker.
//!
//! The broker asks for a tenant's [`Policy`] on every publish and
//! subscription, so [`AclCache`] loads it from the store once and then serves
//! it from memory. Rule changes go through the cache's write-through methods,
//! which write the store and drop the tenant's policy, so the next call loads
//! the rules as they now are.
//!
//! Each tenant also has a policy version ([`AclCache::version`]), bumped
//! whenever the answers for the tenant may change, so that the broker can
//! cache decisions per connection and drop them at once on a change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ferrule_core::TenantId;
use ferrule_core::acl::{AclRule, Policy};

use crate::{MetaStore, Result};

/// Compiled ACL policies by tenant, loaded on first use. Cheap to clone: the
/// clones share one cache.
#[derive(Clone)]
pub struct AclCache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn MetaStore>,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    policies: HashMap<TenantId, Arc<Policy>>,
    /// The last policy loaded per tenant, kept across invalidations so the
    /// broker's synchronous checks always have an answer while a reload runs.
    last_known: HashMap<TenantId, Arc<Policy>>,
    /// Bumped by every invalidation. A load that started before one may have
    /// read the old rules, so it is served but not cached (see `policy`).
    generation: u64,
    /// Per tenant, bumped after every change of what `current` answers.
    versions: HashMap<TenantId, Arc<AtomicU64>>,
}

impl State {
    fn bump(&mut self, tenant: &TenantId) {
        if let Some(v) = self.versions.get(tenant) {
            v.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl AclCache {
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                state: RwLock::default(),
            }),
        }
    }

    /// The tenant's policy: from memory, or loaded from the store the first
    /// time and after a change.
    pub async fn policy(&self, tenant: &TenantId) -> Result<Arc<Policy>> {
        let generation = {
            let state = self.read();
            if let Some(p) = state.policies.get(tenant) {
                return Ok(p.clone());
            }
            state.generation
        };
        let policy = Arc::new(Policy::new(self.inner.store.list_acl_rules(tenant).await?));
        let mut state = self.write();
        if state.generation == generation {
            state.policies.insert(tenant.clone(), policy.clone());
            state.last_known.insert(tenant.clone(), policy.clone());
            // After the new policy is in place: a decision cached under the
            // version bumped by the invalidation may still be the old one's.
            state.bump(tenant);
        }
        Ok(policy)
    }

    /// The tenant's policy without waiting: the cached one, else the last one
    /// loaded, else no rules (the role defaults). For the broker's hot path,
    /// which calls [`policy`](Self::policy) when a client connects, so the
    /// tenant is normally cached.
    pub fn current(&self, tenant: &TenantId) -> Arc<Policy> {
        let state = self.read();
        state
            .policies
            .get(tenant)
            .or_else(|| state.last_known.get(tenant))
            .cloned()
            .unwrap_or_default()
    }

    /// The tenant's policy version: it changes whenever what
    /// [`current`](Self::current) answers for the tenant may have changed, or
    /// [`touch`](Self::touch) is called. Cheap to read on every message.
    pub fn version(&self, tenant: &TenantId) -> Arc<AtomicU64> {
        if let Some(v) = self.read().versions.get(tenant) {
            return v.clone();
        }
        self.write()
            .versions
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(AtomicU64::new(1)))
            .clone()
    }

    /// Bumps the tenant's version without touching its rules: something
    /// else its decisions depend on changed (a device was deleted).
    pub fn touch(&self, tenant: &TenantId) {
        self.write().bump(tenant);
    }

    /// Forgets everything about a deleted tenant.
    pub fn forget(&self, tenant: &TenantId) {
        self.invalidate(tenant);
        let mut state = self.write();
        state.last_known.remove(tenant);
        // Whoever still holds the version sees one last change.
        if let Some(v) = state.versions.remove(tenant) {
            v.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Invalidates and reloads at once, so connected clients see the change
    /// as soon as the API answers.
    async fn refresh(&self, tenant: &TenantId) {
        self.invalidate(tenant);
        if let Err(e) = self.policy(tenant).await {
            tracing::warn!(tenant = %tenant, error = %e, "reloading ACL rules failed");
        }
    }

    /// Forgets the tenant's policy, so the next [`policy`](Self::policy)
    /// call reads the store. Call it when a tenant's rules change other than
    /// through this cache, e.g. when the tenant is deleted.
    pub fn invalidate(&self, tenant: &TenantId) {
        let mut state = self.write();
        state.policies.remove(tenant);
        state.generation += 1;
        state.bump(tenant);
    }

    /// Stores a new rule; the tenant's policy includes it from the next call.
    pub async fn create(&self, tenant: &TenantId, rule: &AclRule) -> Result<AclRule> {
        let out = self.inner.store.create_acl_rule(tenant, rule).await;
        // Whatever the outcome: a reload costs little, a stale policy a lot.
        self.refresh(tenant).await;
        out
    }

    /// Replaces a rule; the tenant's policy reflects it from the next call.
    pub async fn update(&self, tenant: &TenantId, rule: &AclRule) -> Result<AclRule> {
        let out = self.inner.store.update_acl_rule(tenant, rule).await;
        self.refresh(tenant).await;
        out
    }

    /// Deletes a rule; the tenant's policy drops it from the next call.
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let out = self.inner.store.delete_acl_rule(tenant, id).await;
        self.refresh(tenant).await;
        out
    }

    // A poisoned lock only means a panic while holding it; every update
    // leaves the map consistent, so carry on with it.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }
}
