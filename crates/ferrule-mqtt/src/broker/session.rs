//! Sessions: what a client's subscriptions and QoS 1/2 state are, whether or
//! not a connection is attached.
//!
//! A [`Session`] is the router's [`Subscriber`]: the router pushes matching
//! messages into its queue (under the session's own lock, never a global
//! one) and wakes the attached connection, which drains the queue into its
//! socket within the client's in-flight window. When no connection is
//! attached, QoS 1/2 messages wait in the queue (bounded) and QoS 0 messages
//! are dropped, as MQTT allows.
//!
//! Read access is decided per message: once a client has attached, its
//! session keeps the client's [`Decisions`] for receiving, and a message it
//! may not receive is neither queued nor sent (the connection checks again
//! when sending, as the rules may have changed meanwhile).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytestring::ByteString;
use ferrule_bus::{
    Delivered, Ledger, Matched, Router, Subscriber, SubscriberId, SubscriptionOptions, Ticket,
};
use ferrule_core::stored::{SessionRef, StoredSession};
use ferrule_core::{Message, QoS, TenantId};
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use tokio::sync::{Notify, oneshot};

use super::decisions::Decisions;
use super::observe::{self, DeniedAccess, DropReason};
use super::persist::{Change, Persister};
use crate::codec::ReasonCode;

/// A message waiting to be sent to the client.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: SmallVec<[u32; 2]>,
}

/// A QoS 1/2 message sent and not yet fully acknowledged.
#[derive(Debug, Clone)]
pub enum Inflight {
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Outgoing),
    /// PUBREL sent; waiting for PUBCOMP. The message is kept only so the
    /// session's state can be stored whole.
    Release(Outgoing),
}

/// The mutable part of a session, behind its lock.
#[derive(Default)]
pub struct SessionState {
    /// Filter (as subscribed, with any `$share/` prefix) → options.
    pub subscriptions: HashMap<String, SubscriptionOptions>,
    /// Change it through [`SessionState::push_queued`] and
    /// [`SessionState::pop_queued`], which keep [`SessionState::held_bytes`].
    pub queue: VecDeque<Outgoing>,
    /// In send order, for redelivery on reconnect. Change it through
    /// [`SessionState::push_inflight`], [`SessionState::take_inflight`] and
    /// [`SessionState::retain_inflight`].
    pub inflight: VecDeque<(u16, Inflight)>,
    /// Bytes of the messages in `queue` and `inflight` (see [`held_size`]).
    held_bytes: usize,
    next_packet_id: u16,
    /// QoS 2 packet ids received and routed, waiting for PUBREL.
    pub inbound_qos2: HashSet<u16>,
    /// The attached connection, if any.
    pub connection: Option<u64>,
    /// Tells the attached connection to leave (takeover, session end).
    pub kick: Option<oneshot::Sender<ReasonCode>>,
    /// Bumped on every attach; delayed wills and expiry check it.
    pub generation: u64,
    /// How long the session outlives its connection.
    pub expiry: Duration,
    /// Set once the session has ended; late deliveries are ignored.
    pub ended: bool,
    /// When the last connection left, ms since the epoch (expiry counts from it).
    pub detached_at_ms: i64,
    /// A will waiting out its delay; published when the delay passes or the
    /// session ends, whichever comes first (MQTT 5 §3.1.3.2.2), dropped if a
    /// client resumes the session.
    pub pending_will: Option<Arc<Message>>,
    /// What the client may receive; set by the first connection (a session
    /// restored at start has none until its client returns, and the
    /// connection checks what it sends).
    pub reader: Option<Decisions>,
}

impl SessionState {
    /// The next free packet id, skipping ids still in flight.
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            if self.next_packet_id == 0 {
                continue;
            }
            let id = self.next_packet_id;
            if !self.inflight.iter().any(|(i, _)| *i == id) {
                return id;
            }
        }
    }

    /// Removes an in-flight entry by packet id.
    pub fn take_inflight(&mut self, id: u16) -> Option<Inflight> {
        let pos = self.inflight.iter().position(|(i, _)| *i == id)?;
        let (_, f) = self.inflight.remove(pos)?;
        let (Inflight::Publish(out) | Inflight::Release(out)) = &f;
        self.held_bytes = self.held_bytes.saturating_sub(held_size(out));
        Some(f)
    }

    /// Appends a message to the queue.
    pub fn push_queued(&mut self, out: Outgoing) {
        self.held_bytes += held_size(&out);
        self.queue.push_back(out);
    }

    /// Takes the next queued message; it no longer counts as held unless it
    /// goes in flight ([`SessionState::push_inflight`]).
    pub fn pop_queued(&mut self) -> Option<Outgoing> {
        let out = self.queue.pop_front()?;
        self.held_bytes = self.held_bytes.saturating_sub(held_size(&out));
        Some(out)
    }

    /// Keeps only the in-flight messages `keep` accepts.
    pub fn retain_inflight(&mut self, mut keep: impl FnMut(&Inflight) -> bool) {
        let mut freed = 0;
        self.inflight.retain(|(_, f)| {
            let kept = keep(f);
            if !kept {
                let (Inflight::Publish(out) | Inflight::Release(out)) = f;
                freed += held_size(out);
            }
            kept
        });
        self.held_bytes = self.held_bytes.saturating_sub(freed);
    }

    /// Records a message sent and waiting for its acknowledgement.
    pub fn push_inflight(&mut self, id: u16, f: Inflight) {
        let (Inflight::Publish(out) | Inflight::Release(out)) = &f;
        self.held_bytes += held_size(out);
        self.inflight.push_back((id, f));
    }

    /// Bytes of the messages queued and in flight.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Forgets every queued and in-flight message (the session ended).
    fn clear_messages(&mut self) {
        self.queue.clear();
        self.inflight.clear();
        self.held_bytes = 0;
    }
}

/// What a message costs a session's byte bound: its topic and payload (the
/// message itself is shared among subscribers, but a session that holds it
/// keeps it alive).
pub fn held_size(out: &Outgoing) -> usize {
    out.message.topic.len() + out.message.payload.len()
}

/// How much a session may hold for its client.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Messages queued.
    pub messages: usize,
    /// Bytes queued and in flight ([`held_size`]).
    pub bytes: usize,
}

/// One client's session in one tenant.
pub struct Session {
    pub tenant: TenantId,
    /// The identity that opened it ([`ferrule_core::Principal::session_owner`]):
    /// client ids are scoped to it, so nobody else can resume this session.
    pub owner: ByteString,
    pub client_id: ByteString,
    pub subscriber_id: SubscriberId,
    state: Mutex<SessionState>,
    /// Wakes the attached connection when there is something to send.
    pub wake: Notify,
    limits: QueueLimits,
    persister: Option<Persister>,
    /// A snapshot is already on its way to the writer, with this ticket.
    dirty: AtomicBool,
    pending_ticket: AtomicU64,
    me: Weak<Session>,
    /// Signalled when a congested queue has drained (see [`CONGESTED`]).
    drained: Arc<Notify>,
    congested: AtomicBool,
}

/// Queue length at which an online session asks publishers to wait, so that
/// a fast publisher is slowed by TCP rather than its messages dropped.
pub const CONGESTED: usize = 1024;
/// Queue length below which waiting publishers are released.
pub const RELIEVED: usize = 256;

impl Session {
    fn new(
        tenant: TenantId,
        owner: ByteString,
        client_id: ByteString,
        subscriber_id: SubscriberId,
        limits: QueueLimits,
        persister: Option<Persister>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            tenant,
            owner,
            client_id,
            subscriber_id,
            state: Mutex::new(SessionState::default()),
            wake: Notify::new(),
            limits,
            persister,
            dirty: AtomicBool::new(false),
            pending_ticket: AtomicU64::new(0),
            me: me.clone(),
            drained: Arc::new(Notify::new()),
            congested: AtomicBool::new(false),
        })
    }

    /// The name the registry and the store know it by.
    pub fn reference(&self) -> SessionRef {
        SessionRef {
            tenant: self.tenant.clone(),
            owner: self.owner.to_string(),
            client_id: self.client_id.to_string(),
        }
    }

    fn key(&self) -> SessionKey {
        (
            self.tenant.clone(),
            self.owner.clone(),
            self.client_id.clone(),
        )
    }

    /// Asks for this session's state to be written (coalesced); returns the
    /// ticket after which the state as it is now is durable.
    pub fn mark_dirty(&self) -> Ticket {
        let Some(p) = self.persister.as_ref() else {
            return Ticket::NONE;
        };
        if self.dirty.swap(true, Ordering::AcqRel) {
            // A snapshot is queued and will be taken when written, so it
            // includes what changed just now.
            return Ticket::on(
                Ledger::Sessions,
                self.pending_ticket.load(Ordering::Acquire),
            );
        }
        let Some(me) = self.me.upgrade() else {
            return Ticket::NONE;
        };
        let ticket = p.send(Change::Session(me));
        self.pending_ticket.store(ticket, Ordering::Release);
        Ticket::on(Ledger::Sessions, ticket)
    }

    pub(crate) fn clear_dirty(&self) {
        self.dirty.store(false, Ordering::Release);
    }

    pub fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// Queues a message for the client and wakes its connection. Reports a
    /// [`Notify`] to wait on when the queue of a connected client is long,
    /// and the store ticket when the message was kept for an offline client.
    pub fn enqueue(&self, out: Outgoing) -> Delivered {
        let mut st = self.state.lock();
        if st.ended || (st.connection.is_none() && out.qos == QoS::AtMostOnce) {
            return Delivered::default();
        }
        if let Some(reader) = st.reader.as_mut()
            && !reader.allows(&out.message.topic)
        {
            drop(st);
            observe::Denied {
                access: DeniedAccess::Receive,
                tenant: &self.tenant,
                n: 1,
            }
            .emit();
            return Delivered::default();
        }
        if st.queue.len() >= self.limits.messages {
            drop(st);
            observe::MessagesDropped {
                reason: DropReason::QueueFull,
                n: 1,
            }
            .emit();
            return Delivered::default();
        }
        // A session holding nothing takes one message whatever its size, so
        // a large message is not refused by an idle subscriber.
        let held = st.held_bytes();
        if held > 0 && held + held_size(&out) > self.limits.bytes {
            drop(st);
            observe::SessionBytesFull {
                tenant: &self.tenant,
            }
            .emit();
            return Delivered::default();
        }
        st.push_queued(out);
        let connected = st.connection.is_some();
        let congested = connected && st.queue.len() >= CONGESTED;
        let persistent = !st.expiry.is_zero();
        drop(st);
        let mut delivered = Delivered::default();
        if connected {
            self.wake.notify_one();
        } else if persistent {
            // Offline: the queue is all the client will get; keep it, and
            // let the publisher's acknowledgement wait for the write.
            delivered.durable_after = self.mark_dirty();
        }
        if congested {
            self.congested.store(true, Ordering::Release);
            delivered.backpressure = Some(self.drained.clone());
        }
        delivered
    }

    /// Called by the connection after draining: releases waiting publishers
    /// once the queue is short again (or the client is gone).
    pub fn relieve_if_drained(&self, queue_len: usize) {
        if queue_len < RELIEVED && self.congested.swap(false, Ordering::AcqRel) {
            self.drained.notify_waiters();
        }
    }
}

impl Subscriber for Session {
    fn owner(&self) -> Option<&str> {
        Some(&self.owner)
    }

    fn deliver(&self, message: &Arc<Message>, matched: &Matched) -> Delivered {
        self.enqueue(Outgoing {
            message: message.clone(),
            qos: message.qos.min(matched.qos),
            retain: matched.retain_as_published && message.retain,
            subscription_ids: matched.subscription_ids.clone(),
        })
    }
}

/// Tenant, owner, client id.
pub type SessionKey = (TenantId, ByteString, ByteString);

/// All sessions, by tenant, owner and client id.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<SessionKey, Arc<Session>>>,
    persister: OnceLock<Persister>,
}

impl SessionRegistry {
    /// The session for a connecting client: a fresh one on clean start (the
    /// old one ends), else the existing one; `attach` runs on its state before
    /// any other CONNECT can see it. Returns whether it existed.
    pub fn open(
        &self,
        router: &Router,
        key: SessionKey,
        clean_start: bool,
        limits: QueueLimits,
        attach: impl FnOnce(&mut SessionState),
    ) -> (Arc<Session>, bool) {
        let (tenant, owner, client_id) = (&key.0, &key.1, &key.2);
        // The registry lock is held throughout, so concurrent CONNECTs with
        // one client id are ordered: each finds the other's session and ends
        // or resumes it [MQTT-3.1.4-3]. Ending takes only router and session
        // locks, never this one.
        let mut map = self.sessions.lock();
        if let Some(existing) = map.get(&key) {
            if !clean_start {
                attach(&mut existing.state());
                return (existing.clone(), true);
            }
            let old = map.remove(&key).expect("present");
            end_session(router, &old);
            if let Some(p) = self.persister.get() {
                p.send(Change::Ended(old.reference()));
            }
        }
        let session = Session::new(
            tenant.clone(),
            owner.clone(),
            client_id.clone(),
            router.next_subscriber_id(),
            limits,
            self.persister.get().cloned(),
        );
        attach(&mut session.state());
        map.insert(key, session.clone());
        (session, false)
    }

    /// Sessions report their changes here from now on.
    pub fn set_persister(&self, p: Persister) {
        let _ = self.persister.set(p);
    }

    /// Every session, for a final snapshot.
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Brings back a stored session: its state and its subscriptions.
    pub fn restore(
        &self,
        router: &Router,
        stored: StoredSession,
        limits: QueueLimits,
    ) -> Arc<Session> {
        let session = Session::new(
            stored.tenant.clone(),
            ByteString::from(stored.owner.clone()),
            ByteString::from(stored.client_id.clone()),
            router.next_subscriber_id(),
            limits,
            self.persister.get().cloned(),
        );
        {
            let mut st = session.state();
            st.expiry = Duration::from_secs(stored.expiry_secs);
            st.detached_at_ms = stored.expires_at_ms.saturating_sub(
                i64::try_from(stored.expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            );
            st.inbound_qos2 = stored.inbound_qos2.iter().copied().collect();
            for d in stored.deliveries {
                let out = Outgoing {
                    message: Arc::new(super::persist::message(&stored.tenant, d.message)),
                    qos: d.qos,
                    retain: d.retain,
                    subscription_ids: d.subscription_ids.into_iter().collect(),
                };
                match d.packet_id {
                    Some(id) if d.released => st.push_inflight(id, Inflight::Release(out)),
                    Some(id) => st.push_inflight(id, Inflight::Publish(out)),
                    None => st.push_queued(out),
                }
            }
            for sub in &stored.subscriptions {
                let options = SubscriptionOptions {
                    qos: sub.qos,
                    no_local: sub.no_local,
                    retain_as_published: sub.retain_as_published,
                    subscription_id: sub.subscription_id,
                };
                st.subscriptions.insert(sub.filter.clone(), options);
            }
        }
        let subs: Vec<(String, SubscriptionOptions)> = session
            .state()
            .subscriptions
            .iter()
            .map(|(f, o)| (f.clone(), *o))
            .collect();
        for (filter, options) in subs {
            let entry = ferrule_bus::Entry {
                id: session.subscriber_id,
                subscriber: session.clone(),
                options,
            };
            router.subscribe(&session.tenant, &filter, entry);
        }
        self.sessions.lock().insert(session.key(), session.clone());
        session
    }

    /// Ends a session: removes it (if it is still the registered one) and all
    /// its subscriptions.
    pub fn end(&self, router: &Router, session: &Arc<Session>) {
        let mut map = self.sessions.lock();
        self.remove_and_end(&mut map, router, session);
    }

    /// Ends `session` if no connection has attached to it since `generation`
    /// (its last connection left, or it was restored, then): the check and
    /// the end are one step under the registry lock, which a resuming
    /// CONNECT also takes, so a client resuming the session at that moment
    /// either finds it whole or finds none — never a session that ends under
    /// it. Returns whether it ended.
    pub fn end_if_idle(&self, router: &Router, session: &Arc<Session>, generation: u64) -> bool {
        let mut map = self.sessions.lock();
        let idle = {
            let st = session.state();
            st.connection.is_none() && st.generation == generation && !st.ended
        };
        idle && self.remove_and_end(&mut map, router, session)
    }

    /// Removes `session` if it is the registered one, and ends it either
    /// way; reports the end to the store (under the registry lock, so that a
    /// new session under the same key is queued after it). Returns whether
    /// it was registered.
    fn remove_and_end(
        &self,
        map: &mut HashMap<SessionKey, Arc<Session>>,
        router: &Router,
        session: &Arc<Session>,
    ) -> bool {
        let key = session.key();
        let mine = map.get(&key).is_some_and(|s| Arc::ptr_eq(s, session));
        if mine {
            map.remove(&key);
        }
        end_session(router, session);
        if mine && let Some(p) = self.persister.get() {
            p.send(Change::Ended(session.reference()));
        }
        mine
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the connections of `owner`'s sessions in `tenant` (every
    /// session of the tenant when `owner` is `None`) with `reason`; returns
    /// how many were connected.
    pub fn kick_owner(&self, tenant: &TenantId, owner: Option<&str>, reason: ReasonCode) -> usize {
        let targets: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .iter()
            .filter(|((t, o, _), _)| t == tenant && owner.is_none_or(|w| &**o == w))
            .map(|(_, s)| s.clone())
            .collect();
        targets
            .iter()
            .filter_map(|s| s.state().kick.take())
            .map(|k| k.send(reason).is_ok())
            .filter(|sent| *sent)
            .count()
    }

    /// Kicks every attached connection with `reason` (server shutdown).
    pub fn kick_all(&self, reason: ReasonCode) {
        for s in self.sessions.lock().values() {
            if let Some(k) = s.state().kick.take() {
                let _ = k.send(reason);
            }
        }
    }
}

fn end_session(router: &Router, session: &Session) {
    let (filters, will) = {
        let mut st = session.state();
        st.ended = true;
        st.clear_messages();
        if let Some(k) = st.kick.take() {
            let _ = k.send(ReasonCode::SESSION_TAKEN_OVER);
        }
        let filters: Vec<String> = st.subscriptions.drain().map(|(f, _)| f).collect();
        (filters, st.pending_will.take())
    };
    for f in filters {
        router.unsubscribe(&session.tenant, &f, session.subscriber_id);
    }
    if let Some(will) = will {
        router.publish(will);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrule_core::Origin;

    fn message(payload_len: usize) -> Outgoing {
        let m = Message::new(
            TenantId::default_tenant(),
            ByteString::from_static("t/1"),
            Bytes::from(vec![0u8; payload_len]),
            QoS::AtLeastOnce,
            Origin::Api,
        );
        Outgoing {
            message: Arc::new(m),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: SmallVec::new(),
        }
    }

    #[test]
    fn a_session_holds_at_most_its_bytes_queued_and_in_flight() {
        let router = Router::new();
        let registry = SessionRegistry::default();
        let limits = QueueLimits {
            messages: 1000,
            bytes: 100,
        };
        let key = (TenantId::default_tenant(), "o".into(), "c".into());
        let (session, _) = registry.open(&router, key, true, limits, |st| {
            st.connection = Some(1);
        });
        // 40 bytes each (3 of topic, 37 of payload): the third would exceed 100.
        let queued = |s: &Session| s.state().queue.len();
        session.enqueue(message(37));
        session.enqueue(message(37));
        session.enqueue(message(37));
        assert_eq!(queued(&session), 2);
        assert_eq!(session.state().held_bytes(), 80);
        // Sent and unacknowledged, a message is still held.
        {
            let mut st = session.state();
            let out = st.pop_queued().expect("queued");
            st.push_inflight(7, Inflight::Publish(out));
            assert_eq!(st.held_bytes(), 80);
        }
        session.enqueue(message(37));
        assert_eq!(queued(&session), 1, "in flight counts against the bound");
        // Acknowledged, it frees its bytes.
        session.state().take_inflight(7);
        assert_eq!(session.state().held_bytes(), 40);
        session.enqueue(message(37));
        assert_eq!(queued(&session), 2);
        // Dropped from the in-flight list (a redelivery the client may no
        // longer read), a message frees its bytes too.
        {
            let mut st = session.state();
            let out = st.pop_queued().expect("queued");
            st.push_inflight(8, Inflight::Publish(out));
            assert_eq!(st.held_bytes(), 80);
            st.retain_inflight(|_| false);
            assert_eq!(st.held_bytes(), 40);
        }
        // A session holding nothing takes a message larger than its bound.
        registry.end(&router, &session);
        assert_eq!(session.state().held_bytes(), 0);
        let key = (TenantId::default_tenant(), "o".into(), "big".into());
        let (big, _) = registry.open(&router, key, true, limits, |st| {
            st.connection = Some(2);
        });
        big.enqueue(message(500));
        big.enqueue(message(1));
        assert_eq!(big.state().queue.len(), 1);
    }

    #[test]
    fn a_session_resumed_after_its_connection_left_is_not_ended() {
        let router = Router::new();
        let registry = SessionRegistry::default();
        let limits = QueueLimits {
            messages: 10,
            bytes: 1000,
        };
        let key = || (TenantId::default_tenant(), "o".into(), "c".into());
        let attach = |id| {
            move |st: &mut SessionState| {
                st.connection = Some(id);
                st.generation += 1;
            }
        };
        let (session, _) = registry.open(&router, key(), true, limits, attach(1));
        // The first connection leaves (expiry 0)…
        let generation = {
            let mut st = session.state();
            st.connection = None;
            st.generation
        };
        // …and before it ends the session, a client resumes it.
        let (resumed, present) = registry.open(&router, key(), false, limits, attach(2));
        assert!(present && Arc::ptr_eq(&session, &resumed));
        assert!(!registry.end_if_idle(&router, &session, generation));
        assert!(!session.state().ended);
        assert_eq!(registry.len(), 1);
        // Once the resumed connection leaves too, its own end goes ahead.
        let generation = {
            let mut st = session.state();
            st.connection = None;
            st.generation
        };
        assert!(registry.end_if_idle(&router, &session, generation));
        assert!(session.state().ended);
        assert!(registry.is_empty());
        // A resume after the end finds no session.
        let (fresh, present) = registry.open(&router, key(), false, limits, attach(3));
        assert!(!present && !Arc::ptr_eq(&session, &fresh));
    }
}
