//! Sessions: what a client's subscriptions and QoS 1/2 state are, whether or
//! not a connection is attached.
//!
//! A [`Session`] is the router's [`Subscriber`]: the router pushes matching
//! messages into its queue (under the session's own lock, never a global
//! one) and wakes the attached connection, which drains the queue into its
//! socket within the client's in-flight window. When no connection is
//! attached, QoS 1/2 messages wait in the queue (bounded) and QoS 0 messages
//! are dropped, as MQTT allows.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use ferrule_bus::{Matched, Router, Subscriber, SubscriberId, SubscriptionOptions};
use ferrule_core::{Message, QoS, TenantId};
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use tokio::sync::{Notify, oneshot};

use super::observe;
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
    /// PUBREL sent; waiting for PUBCOMP.
    Release,
}

/// The mutable part of a session, behind its lock.
#[derive(Default)]
pub struct SessionState {
    /// Filter (as subscribed, with any `$share/` prefix) → options.
    pub subscriptions: HashMap<String, SubscriptionOptions>,
    pub queue: VecDeque<Outgoing>,
    /// In send order, for redelivery on reconnect.
    pub inflight: VecDeque<(u16, Inflight)>,
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
        self.inflight.remove(pos).map(|(_, f)| f)
    }
}

/// One client's session in one tenant.
pub struct Session {
    pub tenant: TenantId,
    pub client_id: ByteString,
    pub subscriber_id: SubscriberId,
    state: Mutex<SessionState>,
    /// Wakes the attached connection when there is something to send.
    pub wake: Notify,
    max_queued: usize,
}

impl Session {
    fn new(
        tenant: TenantId,
        client_id: ByteString,
        subscriber_id: SubscriberId,
        max_queued: usize,
    ) -> Self {
        Self {
            tenant,
            client_id,
            subscriber_id,
            state: Mutex::new(SessionState::default()),
            wake: Notify::new(),
            max_queued,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// Queues a message for the client and wakes its connection.
    pub fn enqueue(&self, out: Outgoing) {
        let mut st = self.state.lock();
        if st.ended || (st.connection.is_none() && out.qos == QoS::AtMostOnce) {
            return;
        }
        if st.queue.len() >= self.max_queued {
            drop(st);
            observe::dropped("queue_full", 1);
            return;
        }
        st.queue.push_back(out);
        let connected = st.connection.is_some();
        drop(st);
        if connected {
            self.wake.notify_one();
        }
    }
}

impl Subscriber for Session {
    fn deliver(&self, message: &Arc<Message>, matched: &Matched) {
        self.enqueue(Outgoing {
            message: message.clone(),
            qos: message.qos.min(matched.qos),
            retain: matched.retain_as_published && message.retain,
            subscription_ids: matched.subscription_ids.clone(),
        });
    }
}

/// All sessions, by tenant and client id.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<(TenantId, ByteString), Arc<Session>>>,
}

impl SessionRegistry {
    /// The session for a connecting client: a fresh one on clean start (the
    /// old one ends), else the existing one. Returns whether it existed.
    pub fn open(
        &self,
        router: &Router,
        tenant: &TenantId,
        client_id: &ByteString,
        clean_start: bool,
        max_queued: usize,
    ) -> (Arc<Session>, bool) {
        let key = (tenant.clone(), client_id.clone());
        let mut map = self.sessions.lock();
        if let Some(existing) = map.get(&key) {
            if !clean_start {
                return (existing.clone(), true);
            }
            let old = map.remove(&key).expect("present");
            drop(map);
            end_session(router, &old);
            map = self.sessions.lock();
        }
        let session = Arc::new(Session::new(
            tenant.clone(),
            client_id.clone(),
            router.next_subscriber_id(),
            max_queued,
        ));
        map.insert(key, session.clone());
        (session, false)
    }

    /// Ends a session: removes it (if it is still the registered one) and all
    /// its subscriptions.
    pub fn end(&self, router: &Router, session: &Arc<Session>) {
        let key = (session.tenant.clone(), session.client_id.clone());
        {
            let mut map = self.sessions.lock();
            if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, session)) {
                map.remove(&key);
            }
        }
        end_session(router, session);
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    let filters: Vec<String> = {
        let mut st = session.state();
        st.ended = true;
        st.queue.clear();
        st.inflight.clear();
        if let Some(k) = st.kick.take() {
            let _ = k.send(ReasonCode::SESSION_TAKEN_OVER);
        }
        st.subscriptions.drain().map(|(f, _)| f).collect()
    };
    for f in filters {
        router.unsubscribe(&session.tenant, &f, session.subscriber_id);
    }
}
