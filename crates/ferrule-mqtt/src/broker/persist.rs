//! Keeping sessions and retained messages across restarts.
//!
//! The hot path never waits on storage: sessions and the router report
//! changes into a channel; a background task coalesces them (a session
//! changed a hundred times in a batch window is written once, as a snapshot)
//! and writes each batch in one transaction. On shutdown, every persistent
//! session is snapshotted and written before the process exits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytestring::ByteString;
use ferrule_bus::{Durability, Ledger, Ticket};
use ferrule_core::stored::{
    SessionRef, StoredDelivery, StoredMessage, StoredSession, StoredSubscription,
};
use ferrule_core::{Message, Origin, TenantId};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::session::{Inflight, Outgoing, Session};

/// How long changes gather before a batch is written.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// A failure of the state store, already logged by the caller.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PersistError(pub String);

/// Where the broker keeps its state; implemented over the embedded store.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn save(
        &self,
        sessions: Vec<StoredSession>,
        ended: Vec<SessionRef>,
        retained: Vec<(TenantId, StoredMessage)>,
        cleared: Vec<(TenantId, String)>,
    ) -> Result<(), PersistError>;
    async fn load_sessions(&self) -> Result<Vec<StoredSession>, PersistError>;
    async fn load_retained(&self) -> Result<Vec<(TenantId, StoredMessage)>, PersistError>;

    /// One tenant's stored sessions, for a tenant that arrived while the
    /// broker runs (a tenant import). The default filters the full load.
    async fn load_tenant_sessions(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<StoredSession>, PersistError> {
        let mut sessions = self.load_sessions().await?;
        sessions.retain(|s| &s.tenant == tenant);
        Ok(sessions)
    }

    /// One tenant's retained messages (see [`Self::load_tenant_sessions`]).
    async fn load_tenant_retained(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<StoredMessage>, PersistError> {
        Ok(self
            .load_retained()
            .await?
            .into_iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, m)| m)
            .collect())
    }
}

/// A change to persist.
pub(crate) enum Change {
    Session(Arc<Session>),
    Ended(SessionRef),
    Retained(Arc<Message>),
    /// Nothing to write: its ticket is committed once everything queued
    /// before it is.
    Barrier,
}

/// The sending side, cloned into sessions and the router's retained hook.
#[derive(Clone)]
pub struct Persister {
    /// Tickets are numbered and queued under one lock: the writer commits
    /// in queue order, so a committed ticket must cover every smaller one,
    /// which two publishers racing between numbering and queueing would
    /// break.
    queue: Arc<Mutex<Queue>>,
}

struct Queue {
    submitted: u64,
    tx: mpsc::UnboundedSender<(u64, Change)>,
}

impl Persister {
    /// Queues a change; returns its ticket on [`Ledger::Sessions`].
    pub(crate) fn send(&self, change: Change) -> u64 {
        let mut q = self.queue.lock();
        q.submitted += 1;
        let ticket = q.submitted;
        // The writer only stops at shutdown, after the last flush.
        let _ = q.tx.send((ticket, change));
        ticket
    }

    /// The ticket after which every change queued so far is durable.
    pub fn barrier(&self) -> Ticket {
        Ticket::on(Ledger::Sessions, self.send(Change::Barrier))
    }

    /// Reports a retained message set or cleared (empty payload); returns
    /// the ticket after which the change is durable.
    pub fn retained(&self, message: &Arc<Message>) -> Ticket {
        Ticket::on(
            Ledger::Sessions,
            self.send(Change::Retained(message.clone())),
        )
    }
}

/// Starts the background writer; returns the handle sessions report to.
/// The writer reports its commits to `durability`.
pub fn start(store: Arc<dyn SessionStore>, durability: Durability) -> (Persister, Writer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let persister = Persister {
        queue: Arc::new(Mutex::new(Queue { submitted: 0, tx })),
    };
    (
        persister,
        Writer {
            store,
            rx,
            durability,
        },
    )
}

/// The background writer.
pub struct Writer {
    store: Arc<dyn SessionStore>,
    rx: mpsc::UnboundedReceiver<(u64, Change)>,
    durability: Durability,
}

impl Writer {
    /// Writes batches until `stop`, then writes what is left and returns.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) {
        loop {
            let first = tokio::select! {
                c = self.rx.recv() => c,
                _ = stop.cancelled() => break,
            };
            let Some(first) = first else { return };
            tokio::time::sleep(BATCH_WINDOW).await;
            let mut batch = vec![first];
            while let Ok(c) = self.rx.try_recv() {
                batch.push(c);
            }
            self.write(batch).await;
        }
        self.flush().await;
    }

    /// Writes whatever is queued now.
    async fn flush(&mut self) {
        let mut batch = Vec::new();
        while let Ok(c) = self.rx.try_recv() {
            batch.push(c);
        }
        if !batch.is_empty() {
            self.write(batch).await;
        }
    }

    async fn write(&self, batch: Vec<(u64, Change)>) {
        let last = batch.iter().map(|(t, _)| *t).max().unwrap_or(0);
        if write_batch(&*self.store, batch.into_iter().map(|(_, c)| c).collect()).await {
            self.durability.committed(Ledger::Sessions, last);
        }
    }
}

/// Coalesces a batch and writes it in one call; false if the write failed
/// (the changes are then not acknowledged as durable).
pub(crate) async fn write_batch(store: &dyn SessionStore, batch: Vec<Change>) -> bool {
    let mut sessions: HashMap<SessionRef, Arc<Session>> = HashMap::new();
    let mut ended: HashMap<SessionRef, ()> = HashMap::new();
    let mut retained: HashMap<(TenantId, ByteString), Arc<Message>> = HashMap::new();
    for change in batch {
        match change {
            Change::Session(s) => {
                // An ended session has nothing to write, and it must not
                // hide what follows it: on a clean-start takeover the old
                // session's last change can arrive after its successor's
                // (same key), which would then never be written while its
                // dirty flag stayed set — a later PUBACK would wait on a
                // ticket that had long passed, without a durable write. Nor
                // may it cancel the `Ended` queued for it.
                if s.state().ended {
                    s.clear_dirty();
                    continue;
                }
                let key = s.reference();
                ended.remove(&key);
                sessions.insert(key, s);
            }
            Change::Ended(r) => {
                sessions.remove(&r);
                ended.insert(r, ());
            }
            Change::Retained(m) => {
                retained.insert((m.tenant.clone(), m.topic.clone()), m);
            }
            Change::Barrier => {}
        }
    }
    let snapshots: Vec<StoredSession> = sessions.values().filter_map(|s| snapshot(s)).collect();
    let (set, cleared): (Vec<_>, Vec<_>) =
        retained.into_values().partition(|m| !m.payload.is_empty());
    let result = store
        .save(
            snapshots,
            ended.into_keys().collect(),
            set.iter()
                .map(|m| (m.tenant.clone(), stored_message(m)))
                .collect(),
            cleared
                .iter()
                .map(|m| (m.tenant.clone(), m.topic.to_string()))
                .collect(),
        )
        .await;
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "saving MQTT sessions failed");
            false
        }
    }
}

fn wall_ms(at: Option<Instant>) -> Option<i64> {
    let at = at?;
    let now = super::monotonic_now();
    let now_ms = ferrule_core::message::now_ms();
    Some(if at >= now {
        now_ms + at.duration_since(now).as_millis() as i64
    } else {
        now_ms - now.duration_since(at).as_millis() as i64
    })
}

fn instant(ms: Option<i64>) -> Option<Instant> {
    let ms = ms?;
    let left = ms - ferrule_core::message::now_ms();
    Some(super::monotonic_now() + Duration::from_millis(left.max(0) as u64))
}

pub(crate) fn stored_message(m: &Message) -> StoredMessage {
    StoredMessage {
        topic: m.topic.to_string(),
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        properties: m.properties.as_deref().cloned(),
        expires_at_ms: wall_ms(m.expires_at),
        origin_client: match &m.origin {
            Origin::Mqtt { client_id, .. } => Some(client_id.to_string()),
            _ => None,
        },
        received_at_ms: m.received_at_ms,
    }
}

pub(crate) fn message(tenant: &TenantId, m: StoredMessage) -> Message {
    Message {
        tenant: tenant.clone(),
        topic: m.topic.into(),
        payload: m.payload,
        qos: m.qos,
        retain: m.retain,
        properties: m.properties.map(Box::new),
        expires_at: instant(m.expires_at_ms),
        origin: match m.origin_client {
            // The session id does not survive a restart; "no local" can
            // only err towards delivering.
            Some(c) => Origin::Mqtt {
                client_id: c.into(),
                session: 0,
            },
            None => Origin::System,
        },
        received_at_ms: m.received_at_ms,
    }
}

/// A session's persistent state now; `None` for sessions that end with their
/// connection (nothing to keep).
pub(crate) fn snapshot(s: &Session) -> Option<StoredSession> {
    s.clear_dirty();
    let st = s.state();
    if st.ended || st.expiry.is_zero() {
        return None;
    }
    let expiry_ms = i64::try_from(st.expiry.as_millis()).unwrap_or(i64::MAX / 2);
    let base = if st.connection.is_some() {
        ferrule_core::message::now_ms()
    } else {
        st.detached_at_ms
    };
    let delivery = |out: &Outgoing, packet_id: Option<u16>, released: bool| StoredDelivery {
        message: stored_message(&out.message),
        qos: out.qos,
        retain: out.retain,
        subscription_ids: out.subscription_ids.to_vec(),
        packet_id,
        released,
    };
    let mut deliveries = Vec::with_capacity(st.inflight.len() + st.queue.len());
    for (id, f) in &st.inflight {
        match f {
            Inflight::Publish(out) => deliveries.push(delivery(out, Some(*id), false)),
            Inflight::Release(out) => deliveries.push(delivery(out, Some(*id), true)),
        }
    }
    deliveries.extend(
        st.queue
            .iter()
            .filter(|o| o.qos != ferrule_core::QoS::AtMostOnce)
            .map(|o| delivery(o, None, false)),
    );
    Some(StoredSession {
        tenant: s.tenant.clone(),
        owner: s.owner.to_string(),
        client_id: s.client_id.to_string(),
        expires_at_ms: base.saturating_add(expiry_ms),
        expiry_secs: st.expiry.as_secs(),
        subscriptions: st
            .subscriptions
            .iter()
            .map(|(filter, o)| StoredSubscription {
                filter: filter.clone(),
                qos: o.qos,
                no_local: o.no_local,
                retain_as_published: o.retain_as_published,
                subscription_id: o.subscription_id,
            })
            .collect(),
        deliveries,
        inbound_qos2: st.inbound_qos2.iter().copied().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::session::{QueueLimits, SessionRegistry};
    use ferrule_bus::Router;

    /// Records what each save was given.
    #[derive(Default)]
    struct Recorder {
        saved: Mutex<Vec<(Vec<StoredSession>, Vec<SessionRef>)>>,
    }

    #[async_trait]
    impl SessionStore for Recorder {
        async fn save(
            &self,
            sessions: Vec<StoredSession>,
            ended: Vec<SessionRef>,
            _retained: Vec<(TenantId, StoredMessage)>,
            _cleared: Vec<(TenantId, String)>,
        ) -> Result<(), PersistError> {
            self.saved.lock().push((sessions, ended));
            Ok(())
        }
        async fn load_sessions(&self) -> Result<Vec<StoredSession>, PersistError> {
            Ok(Vec::new())
        }
        async fn load_retained(&self) -> Result<Vec<(TenantId, StoredMessage)>, PersistError> {
            Ok(Vec::new())
        }
    }

    const LIMITS: QueueLimits = QueueLimits {
        messages: 100,
        bytes: 1 << 20,
    };

    fn key() -> crate::broker::session::SessionKey {
        (TenantId::default_tenant(), "dev".into(), "c1".into())
    }

    #[tokio::test]
    async fn an_ended_sessions_late_change_does_not_hide_its_successor() {
        let router = Router::new();
        let registry = SessionRegistry::default();
        let persistent = |st: &mut crate::broker::session::SessionState| {
            st.expiry = Duration::from_secs(60);
        };
        let (old, _) = registry.open(&router, key(), true, LIMITS, persistent);
        // Clean-start takeover: the old session ends, a new one takes the key.
        let (new, present) = registry.open(&router, key(), true, LIMITS, persistent);
        assert!(!present);
        assert!(old.state().ended);
        // The new session's change, then the old one's last (its connection
        // leaving after the takeover), in one batch.
        let batch = vec![
            Change::Ended(old.reference()),
            Change::Session(new.clone()),
            Change::Session(old.clone()),
        ];
        let store = Recorder::default();
        assert!(write_batch(&store, batch).await);
        let saved = store.saved.lock();
        let (sessions, ended) = &saved[0];
        assert_eq!(sessions.len(), 1, "the new session must be written");
        assert_eq!(sessions[0].client_id, "c1");
        assert!(ended.is_empty(), "the new session replaces the ended one");
    }

    #[tokio::test]
    async fn an_ended_sessions_change_does_not_cancel_its_end() {
        let router = Router::new();
        let registry = SessionRegistry::default();
        let (old, _) = registry.open(&router, key(), true, LIMITS, |st| {
            st.expiry = Duration::from_secs(60);
        });
        registry.end(&router, &old);
        let batch = vec![Change::Ended(old.reference()), Change::Session(old.clone())];
        let store = Recorder::default();
        assert!(write_batch(&store, batch).await);
        let saved = store.saved.lock();
        let (sessions, ended) = &saved[0];
        assert!(sessions.is_empty());
        assert_eq!(ended.len(), 1, "the end must reach the store");
    }
}
