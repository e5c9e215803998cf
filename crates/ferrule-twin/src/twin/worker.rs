//! The one task that changes twins: applies a batch, stores it in one
//! transaction, reports the reported-state writes durable, then publishes
//! what changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrule_bus::Router;
use ferrule_core::message::now_ms;
use ferrule_core::{Ledger, Message, MessageProperties, Origin, QoS};
use ferrule_store::twin::{TwinChange, TwinRecord, TwinSection, TwinStore, TwinWrite};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::document::{self, DocumentError, MAX_DOCUMENT_BYTES};
use super::{Job, Key, TwinError, TwinView, Twins};
use crate::topics;

/// Jobs taken into one batch at most.
const BATCH: usize = 512;
/// Twins kept in memory at most; beyond, the cache starts over (every
/// cached twin is stored by then).
const CACHE: usize = 20_000;

/// Runs the twin service; see [`Twins::start`].
pub struct Worker {
    jobs: mpsc::Receiver<Job>,
    store: Arc<dyn TwinStore>,
    router: Arc<Router>,
    twins: Twins,
    cache: HashMap<Key, TwinRecord>,
}

/// What a batch did to one twin.
#[derive(Default)]
struct Touched {
    delta_before: Option<Map<String, Value>>,
    desired_changed: bool,
    changes: Vec<TwinChange>,
}

type Reply = (oneshot::Sender<Result<TwinView, TwinError>>, Key);

impl Worker {
    pub(super) fn new(
        jobs: mpsc::Receiver<Job>,
        store: Arc<dyn TwinStore>,
        router: Arc<Router>,
        twins: Twins,
    ) -> Self {
        Self {
            jobs,
            store,
            router,
            twins,
            cache: HashMap::new(),
        }
    }

    /// Until shutdown; what is queued then is still applied.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                job = self.jobs.recv() => job,
                _ = shutdown.cancelled() => None,
            };
            let mut batch: Vec<Job> = first.into_iter().collect();
            while batch.len() < BATCH {
                match self.jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            self.apply(batch).await;
            if self.cache.len() > CACHE {
                self.cache.clear();
            }
        }
    }

    /// The cached twin, loaded on first use; an error only when storage
    /// keeps failing.
    async fn load(&mut self, key: &Key) -> Result<&mut TwinRecord, TwinError> {
        if !self.cache.contains_key(key) {
            let got = self
                .store
                .load_twin(&key.0, &key.1)
                .await
                .map_err(|e| TwinError::Store(e.to_string()))?;
            self.cache.insert(key.clone(), got.unwrap_or_default());
        }
        Ok(self.cache.get_mut(key).expect("inserted above"))
    }

    async fn apply(&mut self, batch: Vec<Job>) {
        for key in self.twins.take_forgotten() {
            self.cache.remove(&key);
        }
        let mut touched: HashMap<Key, Touched> = HashMap::new();
        let mut replies: Vec<Reply> = Vec::new();
        let mut reads: Vec<Reply> = Vec::new();
        let mut last_seq = 0;
        for job in batch {
            match job {
                Job::Reported {
                    key,
                    patch,
                    ts,
                    actor,
                    seq,
                } => {
                    last_seq = seq;
                    let twin = self.load_retrying(&key).await;
                    let entry = touched.entry(key).or_default();
                    entry
                        .delta_before
                        .get_or_insert_with(|| document::delta(&twin.desired, &twin.reported));
                    if document::merge(&mut twin.reported, &mut twin.reported_meta, &patch, ts) {
                        twin.reported_version += 1;
                        twin.version += 1;
                        twin.updated_at = ts;
                        entry.changes.push(TwinChange {
                            version: twin.version,
                            ts,
                            section: TwinSection::Reported,
                            actor,
                            patch: Value::Object(patch),
                        });
                    }
                }
                Job::Desired {
                    key,
                    patch,
                    if_match,
                    actor,
                    reply,
                } => {
                    let twin = match self.load(&key).await {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    };
                    if let Some(expected) = if_match
                        && expected != twin.desired_version
                    {
                        metrics::counter!("ferrule_twin_refused_total", "reason" => "version")
                            .increment(1);
                        let _ = reply.send(Err(TwinError::VersionMismatch {
                            current: twin.desired_version,
                        }));
                        continue;
                    }
                    let now = now_ms();
                    let (mut desired, mut meta) = (twin.desired.clone(), twin.desired_meta.clone());
                    if !document::merge(&mut desired, &mut meta, &patch, now) {
                        replies.push((reply, key));
                        continue;
                    }
                    let size = document::size(&desired);
                    if size > MAX_DOCUMENT_BYTES
                        || document::depth(&Value::Object(desired.clone())) > document::MAX_DEPTH
                    {
                        metrics::counter!("ferrule_twin_refused_total", "reason" => "too_large")
                            .increment(1);
                        let _ = reply.send(Err(DocumentError::TooLarge(size).into()));
                        continue;
                    }
                    let delta_before = document::delta(&twin.desired, &twin.reported);
                    twin.desired = desired;
                    twin.desired_meta = meta;
                    twin.desired_version += 1;
                    twin.version += 1;
                    twin.updated_at = now;
                    let version = twin.version;
                    let entry = touched.entry(key.clone()).or_default();
                    entry.delta_before.get_or_insert(delta_before);
                    entry.desired_changed = true;
                    entry.changes.push(TwinChange {
                        version,
                        ts: now,
                        section: TwinSection::Desired,
                        actor,
                        patch: Value::Object(patch),
                    });
                    replies.push((reply, key));
                }
                Job::Read { key, reply } => match self.load(&key).await {
                    Ok(_) => reads.push((reply, key)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
            }
        }
        let writes: Vec<TwinWrite> = touched
            .iter()
            .filter(|(_, t)| !t.changes.is_empty())
            .filter_map(|(key, t)| {
                Some(TwinWrite {
                    tenant: key.0.clone(),
                    device: key.1.clone(),
                    twin: self.cache.get(key)?.clone(),
                    changes: t.changes.clone(),
                })
            })
            .collect();
        self.save_retrying(writes).await;
        if last_seq > 0 {
            self.router.durability().committed(Ledger::Twin, last_seq);
        }
        for (key, t) in &touched {
            if let Some(twin) = self.cache.get(key) {
                self.twins.set_size(
                    key.clone(),
                    document::size(&twin.reported),
                    document::size(&twin.desired),
                );
                self.announce(key, twin, t);
            }
        }
        for (reply, key) in replies.into_iter().chain(reads) {
            let view = self.cache.get(&key).map(|twin| TwinView {
                delta: document::delta(&twin.desired, &twin.reported),
                twin: twin.clone(),
            });
            let _ = reply.send(view.ok_or(TwinError::Busy));
        }
    }

    /// Loads a twin for reported state, which was acknowledged to wait
    /// for this: storage failing is retried, not given up on.
    async fn load_retrying(&mut self, key: &Key) -> &mut TwinRecord {
        let mut wait = Duration::from_millis(100);
        loop {
            if self.cache.contains_key(key) {
                break;
            }
            match self.load(key).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(tenant = %key.0, device = %key.1, error = %e, "loading a twin failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.cache.get_mut(key).expect("loaded above")
    }

    async fn save_retrying(&self, writes: Vec<TwinWrite>) {
        if writes.is_empty() {
            return;
        }
        let mut wait = Duration::from_millis(100);
        loop {
            match self.store.save_twins(writes.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    metrics::counter!("ferrule_twin_store_errors_total").increment(1);
                    tracing::error!(error = %e, twins = writes.len(), "storing twins failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Publishes, once stored, what the device and listeners must learn.
    fn announce(&self, key: &Key, twin: &TwinRecord, touched: &Touched) {
        if touched.changes.is_empty() {
            return;
        }
        let (tenant, device) = key;
        let delta = document::delta(&twin.desired, &twin.reported);
        let version = twin.desired_version.to_string();
        if touched.desired_changed {
            self.publish_retained(key, "state/desired", &twin.desired, &version);
        }
        if touched.desired_changed || touched.delta_before.as_ref() != Some(&delta) {
            self.publish_retained(key, "state/delta", &delta, &version);
        }
        for change in &touched.changes {
            let event = json!({
                "device": device.as_str(),
                "section": change.section.as_str(),
                "version": change.version,
                "actor": change.actor,
                "ts": change.ts,
                "patch": change.patch,
                "delta": delta,
            });
            let message = Message::new(
                tenant.clone(),
                topics::twin(device).into(),
                Bytes::from(event.to_string()),
                QoS::AtLeastOnce,
                Origin::System,
            );
            self.router.publish(Arc::new(message));
        }
        metrics::counter!("ferrule_twin_changes_total").increment(touched.changes.len() as u64);
    }

    fn publish_retained(&self, key: &Key, suffix: &str, doc: &Map<String, Value>, version: &str) {
        let mut message = Message::new(
            key.0.clone(),
            format!("devices/{}/{suffix}", key.1).into(),
            Bytes::from(Value::Object(doc.clone()).to_string()),
            QoS::AtLeastOnce,
            Origin::System,
        );
        message.retain = true;
        // MQTT 5 devices read the desired version without parsing.
        message.properties = Some(Box::new(MessageProperties {
            payload_format_indicator: Some(true),
            content_type: Some("application/json".into()),
            user_properties: vec![("version".into(), version.into())],
            ..MessageProperties::default()
        }));
        self.router.publish(Arc::new(message));
    }
}
