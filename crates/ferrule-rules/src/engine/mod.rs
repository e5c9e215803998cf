//! The rules engine: every tenant's rules, running on the router.
//!
//! Each tenant with rules has a [`queue::TenantQueue`] subscribed (as an
//! observer, like a live stream) to the FROM filters of its enabled rules,
//! and a worker that evaluates them. The router only ever pushes into a
//! bounded queue, so a slow or failing rule never slows devices down;
//! what overflows is counted. A rule change is compiled, stored, and
//! swapped into memory before the API answers, so it applies to every
//! message routed after the 2xx.

mod compiled;
mod context;
mod dry_run;
mod plan;
mod queue;
mod stats;
mod worker;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, Weak};

use ferrule_bus::{Entry, Router, SubscriberId, SubscriptionOptions};
use ferrule_core::message::now_ms;
use ferrule_core::{DeviceId, QoS, TenantId};
use ferrule_store::rules::{RuleRecord, RuleStore};
use ferrule_store::{Directory, MetaStore, Page, PageRequest, ProfileStore, StoreError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use compiled::RuleError;
pub use dry_run::{
    DryRun, DryRunMessage, DryRunResult, DryRunSource, MAX_MESSAGES as MAX_DRY_RUN_MESSAGES,
    PlannedAction,
};
pub use plan::Planned;
pub use stats::{LastError, RuleStats};
pub use worker::MAX_HOPS;

use crate::alarms::Alarms;
use crate::model::Action;
use crate::webhook::{WebhookOutcomes, Webhooks};
use compiled::CompiledRule;
use context::ContextCache;
use queue::TenantQueue;

/// Limits of the engine (`[rules]` in the config).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Messages waiting per tenant; more are not evaluated (counted).
    pub queue_per_tenant: usize,
    /// Rules a tenant may have.
    pub max_rules_per_tenant: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            queue_per_tenant: 10_000,
            max_rules_per_tenant: 1_000,
        }
    }
}

/// Alarm and command actions waiting per tenant.
const EFFECTS_PER_TENANT: usize = 1_024;

/// A rule as users write it (the API's body).
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub description: String,
    pub sql: String,
    pub actions: Vec<Action>,
    pub enabled: bool,
}

/// What the engine needs to run.
pub struct EngineContext {
    pub router: Arc<Router>,
    pub store: Arc<dyn RuleStore>,
    pub meta: Arc<dyn MetaStore>,
    pub profiles: Arc<dyn ProfileStore>,
    pub directory: Directory,
    pub alarms: Alarms,
    pub webhooks: Webhooks,
    /// `None` when commands are not running (then command actions fail).
    pub commands: Option<ferrule_twin::commands::Commands>,
    pub outcomes: RuleOutcomes,
    pub settings: EngineSettings,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// The rules of every tenant, running on the router.
#[derive(Clone)]
pub struct Rules {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    router: Arc<Router>,
    store: Arc<dyn RuleStore>,
    directory: Directory,
    alarms: Alarms,
    webhooks: Webhooks,
    commands: Option<ferrule_twin::commands::Commands>,
    context: ContextCache,
    settings: EngineSettings,
    tenants: RwLock<HashMap<TenantId, Arc<Tenant>>>,
    /// One change at a time: the store and memory change together.
    changes: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A tenant's rules and their queue.
pub(crate) struct Tenant {
    pub(crate) id: TenantId,
    pub(crate) queue: Arc<TenantQueue>,
    /// Sorted by id; replaced whole on every change.
    rules: RwLock<Arc<[Arc<CompiledRule>]>>,
    /// The filters the queue is subscribed to.
    subscribed: Mutex<BTreeSet<String>>,
    subscriber: SubscriberId,
    pub(crate) effects: mpsc::Sender<worker::Effect>,
    stop: CancellationToken,
}

impl Inner {
    /// Whether the device exists in the tenant (an id that cannot be one
    /// does not).
    pub(crate) fn has_device(&self, tenant: &TenantId, device: &str) -> bool {
        DeviceId::new(device).is_ok_and(|d| self.directory.has_device(tenant, &d))
    }
}

impl Tenant {
    pub(crate) fn rules(&self) -> Arc<[Arc<CompiledRule>]> {
        self.rules.read().clone()
    }

    fn rule(&self, id: &str) -> Option<Arc<CompiledRule>> {
        self.rules
            .read()
            .iter()
            .find(|r| r.record.id == id)
            .cloned()
    }

    /// Subscribes the queue to the enabled rules' filters, and only those.
    fn resubscribe(&self, router: &Router) {
        let wanted: BTreeSet<String> = self
            .rules()
            .iter()
            .filter(|r| r.record.enabled)
            .flat_map(|r| r.program.sources().iter().cloned())
            .collect();
        let mut subscribed = self.subscribed.lock();
        for gone in subscribed.difference(&wanted) {
            router.unsubscribe(&self.id, gone, self.subscriber);
        }
        for new in wanted.difference(&subscribed) {
            router.subscribe_observer(
                &self.id,
                new,
                Entry {
                    id: self.subscriber,
                    subscriber: self.queue.clone(),
                    options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                },
            );
        }
        *subscribed = wanted;
    }
}

/// Tells the engine how webhook calls ended, for the rules' counters.
/// Made before the webhooks (which need it) and the engine (which it
/// reports to).
#[derive(Clone, Default)]
pub struct RuleOutcomes(Arc<OnceLock<Weak<Inner>>>);

impl WebhookOutcomes for RuleOutcomes {
    fn finished(&self, tenant: &TenantId, rule: &str, result: Result<(), String>) {
        let Some(inner) = self.0.get().and_then(Weak::upgrade) else {
            return;
        };
        let Some(rule) = inner.tenants.read().get(tenant).and_then(|t| t.rule(rule)) else {
            return;
        };
        match result {
            Ok(()) => rule.counters.action_ok(),
            Err(e) => rule.counters.action_failed(e, "", b""),
        }
    }
}

impl Rules {
    /// Loads every tenant's rules and starts their workers. A stored rule
    /// that no longer compiles (after an upgrade changed the language) is
    /// not run; it is logged and stays in the store for its owner to fix.
    pub async fn start(cx: EngineContext) -> Result<Rules, StoreError> {
        let inner = Arc::new(Inner {
            router: cx.router,
            store: cx.store,
            directory: cx.directory,
            alarms: cx.alarms,
            webhooks: cx.webhooks,
            commands: cx.commands,
            context: ContextCache::new(cx.meta, cx.profiles),
            settings: cx.settings,
            tenants: RwLock::new(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
            shutdown: cx.shutdown,
            tasks: cx.tasks,
        });
        let _ = cx.outcomes.0.set(Arc::downgrade(&inner));
        let rules = Rules { inner };
        for record in rules.inner.store.all_rules().await? {
            let actions: Vec<Action> = match serde_json::from_value(record.actions.clone()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(tenant = %record.tenant, rule = %record.id, error = %e, "stored rule has unreadable actions; not running it");
                    continue;
                }
            };
            match compiled::compile(&record.sql, &actions, &rules.inner.webhooks) {
                Ok((program, actions)) => rules.install(record, program, actions),
                Err(e) => {
                    tracing::error!(tenant = %record.tenant, rule = %record.id, error = %e, "stored rule does not compile; not running it")
                }
            }
        }
        Ok(rules)
    }

    /// Loads and starts the rules of a tenant that came in whole (a tenant
    /// move) while the engine runs, as [`Self::start`] does for every
    /// tenant; returns how many run.
    pub async fn load_tenant(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        let _change = self.inner.changes.lock().await;
        let mut running = 0;
        for record in self.inner.store.all_rules().await? {
            if &record.tenant != tenant {
                continue;
            }
            let compiled = serde_json::from_value::<Vec<Action>>(record.actions.clone())
                .map_err(|e| e.to_string())
                .and_then(|actions| {
                    compiled::compile(&record.sql, &actions, &self.inner.webhooks)
                        .map_err(|e| e.to_string())
                });
            match compiled {
                Ok((program, actions)) => {
                    self.install(record, program, actions);
                    running += 1;
                }
                Err(e) => {
                    tracing::error!(%tenant, rule = %record.id, error = %e, "an imported rule does not compile; not running it")
                }
            }
        }
        // Devices of the tenant may have been looked up (and missed) before.
        self.inner.context.forget(tenant, None);
        Ok(running)
    }

    pub fn alarms(&self) -> &Alarms {
        &self.inner.alarms
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.inner.webhooks
    }

    /// Creates a rule (`id` chosen by the caller or made up); effective
    /// for every message routed once this returns.
    pub async fn create(
        &self,
        tenant: &TenantId,
        id: Option<String>,
        spec: RuleSpec,
    ) -> Result<RuleRecord, RuleError> {
        let (program, actions) = self.compile(&spec)?;
        let id = match id {
            Some(id) => {
                ferrule_core::id::validate_slug(&id).map_err(|e| RuleError::Invalid {
                    field: "id".into(),
                    why: e.to_string(),
                })?;
                id
            }
            None => format!("rule-{:016x}", rand::random::<u64>()),
        };
        // A rule without a name is called by its id.
        let name = if spec.name.is_empty() {
            id.clone()
        } else {
            spec.name
        };
        let _change = self.inner.changes.lock().await;
        let count = self
            .inner
            .tenants
            .read()
            .get(tenant)
            .map_or(0, |t| t.rules.read().len());
        if count >= self.inner.settings.max_rules_per_tenant {
            return Err(RuleError::TooMany(count));
        }
        let now = now_ms();
        let record = RuleRecord {
            tenant: tenant.clone(),
            id,
            name,
            description: spec.description,
            sql: spec.sql,
            actions: serde_json::to_value(&spec.actions).unwrap_or_default(),
            enabled: spec.enabled,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        match self.inner.store.create_rule(&record).await {
            Err(StoreError::Conflict { .. }) => return Err(RuleError::Exists),
            other => other?,
        }
        self.install(record.clone(), program, actions);
        Ok(record)
    }

    /// Replaces a rule's definition (`expected_version`: refuse when it
    /// changed meanwhile).
    pub async fn replace(
        &self,
        tenant: &TenantId,
        id: &str,
        spec: RuleSpec,
        expected_version: Option<u64>,
    ) -> Result<RuleRecord, RuleError> {
        let (program, actions) = self.compile(&spec)?;
        self.change(tenant, id, expected_version, move |r| {
            r.name = if spec.name.is_empty() {
                r.id.clone()
            } else {
                spec.name
            };
            r.description = spec.description;
            r.sql = spec.sql;
            r.actions = serde_json::to_value(&spec.actions).unwrap_or_default();
            r.enabled = spec.enabled;
            Some((program, actions))
        })
        .await
    }

    /// Enables or disables a rule.
    pub async fn set_enabled(
        &self,
        tenant: &TenantId,
        id: &str,
        enabled: bool,
    ) -> Result<RuleRecord, RuleError> {
        self.change(tenant, id, None, move |r| {
            r.enabled = enabled;
            None
        })
        .await
    }

    async fn change(
        &self,
        tenant: &TenantId,
        id: &str,
        expected_version: Option<u64>,
        apply: impl FnOnce(
            &mut RuleRecord,
        ) -> Option<(crate::sql::Program, Vec<compiled::CompiledAction>)>,
    ) -> Result<RuleRecord, RuleError> {
        let _change = self.inner.changes.lock().await;
        let mut record = self.get(tenant, id).await?;
        if let Some(v) = expected_version
            && v != record.version
        {
            return Err(RuleError::VersionMismatch(record.version));
        }
        let before = record.version;
        let compiled = apply(&mut record);
        record.version = before + 1;
        record.updated_at = now_ms();
        match self.inner.store.update_rule(&record, before).await {
            Err(StoreError::Conflict { .. }) => return Err(RuleError::VersionMismatch(before)),
            Err(StoreError::NotFound { .. }) => return Err(RuleError::NotFound),
            other => other?,
        }
        let (program, actions) =
            match compiled {
                Some(c) => c,
                None => {
                    let actions: Vec<Action> = serde_json::from_value(record.actions.clone())
                        .map_err(|e| RuleError::Invalid {
                            field: "actions".into(),
                            why: e.to_string(),
                        })?;
                    compiled::compile(&record.sql, &actions, &self.inner.webhooks)?
                }
            };
        self.install(record.clone(), program, actions);
        Ok(record)
    }

    /// Deletes a rule (and its dead letters); it stops at once.
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<(), RuleError> {
        let _change = self.inner.changes.lock().await;
        match self.inner.store.delete_rule(tenant, id).await {
            Err(StoreError::NotFound { .. }) => return Err(RuleError::NotFound),
            other => other?,
        }
        if let Some(t) = self.inner.tenants.read().get(tenant).cloned() {
            let rules: Arc<[Arc<CompiledRule>]> = t
                .rules()
                .iter()
                .filter(|r| r.record.id != id)
                .cloned()
                .collect();
            *t.rules.write() = rules;
            t.resubscribe(&self.inner.router);
        }
        Ok(())
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<RuleRecord, RuleError> {
        match self.inner.store.get_rule(tenant, id).await {
            Err(StoreError::NotFound { .. }) => Err(RuleError::NotFound),
            other => Ok(other?),
        }
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<RuleRecord>, RuleError> {
        Ok(self.inner.store.list_rules(tenant, page).await?)
    }

    /// A running rule's counters (zero when it is not running).
    pub fn stats(&self, tenant: &TenantId, id: &str) -> RuleStats {
        self.running(tenant, id)
            .map(|r| r.counters.snapshot())
            .unwrap_or_default()
    }

    /// A running rule's FROM filters.
    pub fn sources(&self, tenant: &TenantId, id: &str) -> Vec<String> {
        self.running(tenant, id)
            .map(|r| r.program.sources().to_vec())
            .unwrap_or_default()
    }

    /// Messages of the tenant not evaluated because its queue was full.
    pub fn overflowed(&self, tenant: &TenantId) -> u64 {
        self.inner.tenants.read().get(tenant).map_or(0, |t| {
            t.queue
                .counters
                .overflow_count
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    fn running(&self, tenant: &TenantId, id: &str) -> Option<Arc<CompiledRule>> {
        self.inner
            .tenants
            .read()
            .get(tenant)
            .and_then(|t| t.rule(id))
    }

    /// Stops and forgets a deleted tenant's rules (their rows went with it).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        if let Some(t) = self.inner.tenants.write().remove(tenant) {
            t.stop.cancel();
            *t.rules.write() = Arc::from(Vec::new());
            t.resubscribe(&self.inner.router);
        }
        self.inner.context.forget(tenant, None);
    }

    /// Forgets what is cached of a device that changed or was deleted.
    pub fn forget_device(&self, tenant: &TenantId, device: &DeviceId) {
        self.inner.context.forget(tenant, Some(device));
    }

    fn compile(
        &self,
        spec: &RuleSpec,
    ) -> Result<(crate::sql::Program, Vec<compiled::CompiledAction>), RuleError> {
        if spec.name.chars().count() > 128 {
            return Err(RuleError::Invalid {
                field: "name".into(),
                why: "at most 128 characters".into(),
            });
        }
        if spec.description.chars().count() > 1024 {
            return Err(RuleError::Invalid {
                field: "description".into(),
                why: "at most 1024 characters".into(),
            });
        }
        compiled::compile(&spec.sql, &spec.actions, &self.inner.webhooks)
    }

    /// Puts a compiled rule in place of its previous version, keeping its
    /// counters, and subscribes the tenant's queue to what it needs.
    fn install(
        &self,
        record: RuleRecord,
        program: crate::sql::Program,
        actions: Vec<compiled::CompiledAction>,
    ) {
        let tenant = self.tenant(&record.tenant);
        let counters = tenant
            .rule(&record.id)
            .map(|r| r.counters.clone())
            .unwrap_or_else(|| {
                Arc::new(stats::RuleCounters::new(record.tenant.as_str(), &record.id))
            });
        let rule = Arc::new(CompiledRule {
            record,
            program,
            actions,
            counters,
        });
        let mut rules: Vec<Arc<CompiledRule>> = tenant
            .rules()
            .iter()
            .filter(|r| r.record.id != rule.record.id)
            .cloned()
            .collect();
        rules.push(rule);
        rules.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        *tenant.rules.write() = Arc::from(rules);
        tenant.resubscribe(&self.inner.router);
    }

    /// The tenant's state, created with its workers on first use.
    fn tenant(&self, id: &TenantId) -> Arc<Tenant> {
        if let Some(t) = self.inner.tenants.read().get(id) {
            return t.clone();
        }
        let mut tenants = self.inner.tenants.write();
        if let Some(t) = tenants.get(id) {
            return t.clone();
        }
        let (effects, effects_rx) = mpsc::channel(EFFECTS_PER_TENANT);
        let stop = self.inner.shutdown.child_token();
        let tenant = Arc::new(Tenant {
            id: id.clone(),
            queue: Arc::new(TenantQueue::new(
                id.as_str(),
                self.inner.settings.queue_per_tenant,
            )),
            rules: RwLock::new(Arc::from(Vec::new())),
            subscribed: Mutex::new(BTreeSet::new()),
            subscriber: self.inner.router.next_subscriber_id(),
            effects,
            stop: stop.clone(),
        });
        tenants.insert(id.clone(), tenant.clone());
        self.inner.tasks.spawn(worker::run(
            self.inner.clone(),
            tenant.clone(),
            stop.clone(),
        ));
        self.inner.tasks.spawn(worker::run_effects(
            self.inner.clone(),
            tenant.clone(),
            effects_rx,
            stop.clone(),
        ));
        tenant
    }
}
