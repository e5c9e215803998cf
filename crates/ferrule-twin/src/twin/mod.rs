//! Device twins: reported state (what the device says), desired state
//! (what users want) and the delta between them.
//!
//! Every change of every twin goes through one [`worker`] task, in order:
//! reported state from the router's intake ([`intake::TwinIntake`], so a
//! PUBACK or HTTP 2xx waits until the change is stored), desired state
//! and reads from the API through [`Twins`]. The worker applies changes
//! in batches, writes each batch (twins and history) in one transaction,
//! and only then publishes what follows: retained `state/desired` and
//! `state/delta` for the device, and a twin event on
//! `$ferrule/devices/{id}/twin` for rules and live streams.

pub mod document;
pub mod intake;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use ferrule_core::{DeviceId, TenantId};
use ferrule_store::twin::{TwinChange, TwinHistoryQuery, TwinRecord, TwinStore};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

pub use document::{DocumentError, MAX_DEPTH, MAX_DOCUMENT_BYTES};
pub use worker::Worker;

/// Changes waiting for the worker at most; beyond, new ones are refused
/// (MQTT 5 0x80, HTTP 503) rather than held without bound.
const QUEUE: usize = 8192;

/// A twin as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinView {
    pub twin: TwinRecord,
    pub delta: Map<String, Value>,
}

/// Why a twin change was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    #[error("desired state is at version {current}, not the version in If-Match")]
    VersionMismatch { current: u64 },
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("the twin service is behind; retry shortly")]
    Busy,
    #[error("twin storage failed: {0}")]
    Store(String),
}

/// A change or read for the worker.
enum Job {
    Reported {
        key: Key,
        patch: Map<String, Value>,
        ts: i64,
        actor: String,
        /// Its number on the twin ledger.
        seq: u64,
    },
    Desired {
        key: Key,
        patch: Map<String, Value>,
        if_match: Option<u64>,
        actor: String,
        reply: oneshot::Sender<Result<TwinView, TwinError>>,
    },
    Read {
        key: Key,
        reply: oneshot::Sender<Result<TwinView, TwinError>>,
    },
}

type Key = (TenantId, DeviceId);

/// Handle on the twin service. Cheap to clone.
#[derive(Clone)]
pub struct Twins {
    inner: Arc<Shared>,
}

struct Shared {
    jobs: mpsc::Sender<Job>,
    /// The last twin ledger number given; held while queueing so numbers
    /// reach the worker in order.
    seq: Mutex<u64>,
    /// Stored sizes (reported, desired) of each twin, so a change that
    /// would outgrow its document is refused before it is accepted.
    sizes: Mutex<HashMap<Key, (usize, usize)>>,
    /// Deleted devices whose cached twin the worker drops before its next
    /// batch.
    forgotten: Mutex<Vec<Key>>,
    store: Arc<dyn TwinStore>,
}

impl Twins {
    /// The service and the worker that runs it (spawn `Worker::run`).
    pub async fn start(
        store: Arc<dyn TwinStore>,
        router: Arc<ferrule_bus::Router>,
    ) -> ferrule_store::Result<(Twins, Worker)> {
        let sizes = store
            .twin_sizes()
            .await?
            .into_iter()
            .map(|(t, d, r, s)| ((t, d), (r, s)))
            .collect();
        let (tx, rx) = mpsc::channel(QUEUE);
        let twins = Twins {
            inner: Arc::new(Shared {
                jobs: tx,
                seq: Mutex::new(0),
                sizes: Mutex::new(sizes),
                forgotten: Mutex::default(),
                store: store.clone(),
            }),
        };
        let worker = Worker::new(rx, store, router, twins.clone());
        Ok((twins, worker))
    }

    /// Learns the stored sizes of a tenant that came in whole (a tenant
    /// move) while the server runs, as [`Self::start`] does for all.
    pub async fn load_tenant(&self, tenant: &TenantId) -> ferrule_store::Result<()> {
        let sizes = self.inner.store.twin_sizes().await?;
        let mut known = self.inner.sizes.lock();
        for (t, d, r, s) in sizes {
            if &t == tenant {
                known.insert((t, d), (r, s));
            }
        }
        Ok(())
    }

    /// The device's twin now.
    pub async fn get(&self, tenant: &TenantId, device: &DeviceId) -> Result<TwinView, TwinError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Read {
            key: (tenant.clone(), device.clone()),
            reply,
        })?;
        answer.await.map_err(|_| TwinError::Busy)?
    }

    /// Applies a merge patch to desired state; `if_match` is the desired
    /// version the caller last saw. Returns once stored.
    pub async fn patch_desired(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        patch: Value,
        if_match: Option<u64>,
        actor: String,
    ) -> Result<TwinView, TwinError> {
        let patch = document::check_patch(&patch)?.clone();
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Desired {
            key: (tenant.clone(), device.clone()),
            patch,
            if_match,
            actor,
            reply,
        })?;
        answer.await.map_err(|_| TwinError::Busy)?
    }

    /// A page of a twin's history, oldest first.
    pub async fn history(
        &self,
        query: TwinHistoryQuery,
    ) -> ferrule_store::Result<ferrule_store::Page<TwinChange>> {
        self.inner.store.twin_history(query).await
    }

    /// Drops the tenant's twin history older than `before` (ms).
    pub async fn prune_history(
        &self,
        tenant: &TenantId,
        before: i64,
    ) -> ferrule_store::Result<u64> {
        self.inner.store.prune_twin_history(tenant, before).await
    }

    /// Forgets a deleted device's twin (its rows go with the device).
    pub fn forget(&self, tenant: &TenantId, device: &DeviceId) {
        let key = (tenant.clone(), device.clone());
        self.inner.sizes.lock().remove(&key);
        // Not through the bounded queue: a full queue must not keep a
        // deleted device's twin cached for a device created anew.
        self.inner.forgotten.lock().push(key);
    }

    /// Forgets every twin of a deleted tenant.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let keys: Vec<Key> = self
            .inner
            .sizes
            .lock()
            .keys()
            .filter(|(t, _)| t == tenant)
            .cloned()
            .collect();
        for (t, d) in keys {
            self.forget(&t, &d);
        }
    }

    fn submit(&self, job: Job) -> Result<(), TwinError> {
        self.inner.jobs.try_send(job).map_err(|_| {
            metrics::counter!("ferrule_twin_refused_total", "reason" => "busy").increment(1);
            TwinError::Busy
        })
    }

    /// Queues reported state from the intake; returns its ledger number.
    fn report(
        &self,
        key: Key,
        patch: Map<String, Value>,
        ts: i64,
        actor: String,
        added_bytes: usize,
    ) -> Result<u64, TwinError> {
        let stored = self.inner.sizes.lock().get(&key).map_or(0, |s| s.0);
        // A merge grows the document by at most the patch's size.
        if stored + added_bytes > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge(stored + added_bytes).into());
        }
        let mut seq = self.inner.seq.lock();
        let next = *seq + 1;
        self.submit(Job::Reported {
            key,
            patch,
            ts,
            actor,
            seq: next,
        })?;
        *seq = next;
        Ok(next)
    }

    /// The deleted devices told since the last call.
    fn take_forgotten(&self) -> Vec<Key> {
        std::mem::take(&mut *self.inner.forgotten.lock())
    }

    fn set_size(&self, key: Key, reported: usize, desired: usize) {
        self.inner.sizes.lock().insert(key, (reported, desired));
    }
}
