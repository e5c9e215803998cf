//! One live stream, from its upgrade to its close: one task that owns the
//! socket, the stream's subscriptions in the router and its inbox.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket};
use ferrule_bus::{Entry, Router, SubscriberId, SubscriptionOptions};
use ferrule_core::acl::{Access, Policy};
use ferrule_core::{Message, Principal, QoS, TenantId};
use ferrule_store::{AclCache, AuthError, Directory, Identity};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::inbox::Inbox;
use super::observe::{self, BadInput, CloseReason, StreamClosed};
use super::protocol::{ClientOp, FilterOutcome, ServerFrame, message_frame};
use super::registry::{Admitted, LiveStreams};

/// How long the server tries to hand over its close frame, and then waits
/// for the client's, before it drops the connection: long enough for a
/// reader that fell behind to catch up on what its socket holds and read
/// why it was dropped (the inbox is emptied first, so this holds no more
/// than the socket's buffers).
const CLOSE_GRACE: Duration = Duration::from_secs(30);
/// The same at shutdown, within the server's own grace.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Message frames encoded and written at a time.
const FRAMES_PER_WRITE: usize = 256;

/// WebSocket close codes (RFC 6455 §7.4): standard where one fits, and one
/// of the application range so that a client can tell "log in again" from
/// "reconnect".
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_CREDENTIALS: u16 = 4001;

/// Everything a stream needs, gathered before the upgrade.
pub struct StreamSession {
    pub identity: Identity,
    pub acl: AclCache,
    pub directory: Directory,
    pub router: Arc<Router>,
    pub streams: LiveStreams,
    pub admitted: Admitted,
    /// The tenant the stream acts in (the caller's, or an admin's `X-Tenant`).
    pub tenant: TenantId,
    /// The caller, placed in `tenant`, as the ACL sees it.
    pub who: Principal,
    /// The bearer token, checked again every so often.
    pub token: String,
    /// Filters asked for in the URL.
    pub initial: Vec<String>,
}

type Sink = SplitSink<WebSocket, Frame>;
type Source = SplitStream<WebSocket>;

impl StreamSession {
    pub async fn run(self, socket: WebSocket) {
        let inbox = Inbox::new(self.streams.limits().inbox);
        let id = self.router.next_subscriber_id();
        let access = ReceiveCheck::new(&self.acl, &self.tenant);
        let mut stream = Stream {
            session: self,
            inbox,
            id,
            filters: BTreeSet::new(),
            access,
        };
        let (mut tx, mut rx) = socket.split();
        let reason = stream.serve(&mut tx, &mut rx).await;
        stream.unsubscribe_all();
        let waiting = stream.inbox.waiting();
        // Nothing more goes out but the close frame.
        drop(stream.inbox.take());
        let limits = stream.session.streams.limits();
        let close = match reason {
            CloseReason::Client => None,
            CloseReason::Slow => Some((
                CLOSE_POLICY,
                format!(
                    "too slow: {waiting} messages waiting (at most {} messages or {} bytes); \
                     read faster or subscribe to less",
                    limits.inbox.messages, limits.inbox.bytes
                ),
            )),
            CloseReason::NoPong => Some((CLOSE_GOING_AWAY, "no answer to pings".to_owned())),
            CloseReason::Credentials => Some((
                CLOSE_CREDENTIALS,
                "your credentials were revoked, changed or expired: authenticate again".to_owned(),
            )),
            CloseReason::Protocol => Some((
                CLOSE_TOO_BIG,
                format!(
                    "a frame was larger than {} bytes or malformed",
                    limits.max_client_frame
                ),
            )),
            CloseReason::Shutdown => Some((CLOSE_GOING_AWAY, "the server is shutting down".into())),
        };
        StreamClosed {
            reason,
            tenant: &stream.session.tenant,
            waiting,
        }
        .emit();
        if let Some((code, text)) = close {
            // The client reads what was already sent, then the reason; a
            // client that never reads again is dropped after the grace.
            let goodbye = async {
                let frame = CloseFrame {
                    code,
                    reason: text.into(),
                };
                if tx.send(Frame::Close(Some(frame))).await.is_ok() {
                    // Read on until the client's close, so that closing the
                    // socket with unread input does not reset the connection
                    // and lose the reason.
                    while let Some(Ok(_)) = rx.next().await {}
                }
            };
            let grace = if reason == CloseReason::Shutdown {
                SHUTDOWN_GRACE
            } else {
                CLOSE_GRACE
            };
            let shutdown = stream.session.streams.shutdown().clone();
            tokio::select! {
                _ = tokio::time::timeout(grace, goodbye) => {}
                // A shutdown cuts a goodbye short, but gives its own.
                _ = shutdown.cancelled(), if reason != CloseReason::Shutdown => {}
            }
        }
    }
}

struct Stream {
    session: StreamSession,
    inbox: Arc<Inbox>,
    id: SubscriberId,
    filters: BTreeSet<String>,
    access: ReceiveCheck,
}

impl Stream {
    /// Runs until the stream must end; says why.
    async fn serve(&mut self, tx: &mut Sink, rx: &mut Source) -> CloseReason {
        let limits = self.session.streams.limits().clone();
        let initial = std::mem::take(&mut self.session.initial);
        if !initial.is_empty()
            && let Err(reason) = self.subscribe(tx, initial).await
        {
            return reason;
        }
        let start = Instant::now();
        let mut ping = interval_at(start + limits.ping_every, limits.ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reauth = interval_at(
            start + limits.reauthenticate_every,
            limits.reauthenticate_every,
        );
        reauth.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            if self.inbox.has_overflowed() {
                return CloseReason::Slow;
            }
            let batch = self.inbox.take();
            if !batch.is_empty() {
                if let Err(reason) = self.send_messages(tx, batch, false).await {
                    return reason;
                }
                continue;
            }
            let shutdown = self.session.streams.shutdown().clone();
            let revoked = self.session.admitted.revoked.clone();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return CloseReason::Shutdown,
                _ = revoked.cancelled() => return CloseReason::Credentials,
                _ = self.inbox.woken() => {}
                frame = rx.next() => {
                    last_heard = Instant::now();
                    let text = match frame {
                        None => return CloseReason::Client,
                        Some(Err(e)) => return read_failure(e),
                        Some(Ok(Frame::Close(_))) => return CloseReason::Client,
                        Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
                        Some(Ok(Frame::Binary(_))) => None,
                        Some(Ok(Frame::Text(text))) => Some(text),
                    };
                    if let Err(reason) = self.handle(tx, text.as_deref()).await {
                        return reason;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > limits.ping_every * 2 {
                        return CloseReason::NoPong;
                    }
                    if let Err(reason) = self.write(tx, vec![Frame::Ping(Default::default())]).await {
                        return reason;
                    }
                }
                _ = reauth.tick() => {
                    if !self.still_authorized().await {
                        return CloseReason::Credentials;
                    }
                }
            }
        }
    }

    /// A client frame: `None` when it was not text.
    async fn handle(&mut self, tx: &mut Sink, text: Option<&str>) -> Result<(), CloseReason> {
        let op = match text.map(serde_json::from_str::<ClientOp>) {
            Some(Ok(op)) => op,
            Some(Err(e)) => return self.bad_request(tx, format!("not a stream request: {e}. Send {{\"op\":\"subscribe\"|\"unsubscribe\",\"filters\":[...]}}")).await,
            None => return self.bad_request(tx, "send JSON text frames, not binary ones".into()).await,
        };
        match op {
            ClientOp::Subscribe { filters } => self.subscribe(tx, filters).await,
            ClientOp::Unsubscribe { filters } => {
                for filter in &filters {
                    if self.filters.remove(filter) {
                        self.session
                            .router
                            .unsubscribe(&self.session.tenant, filter, self.id);
                    }
                }
                let frame = ServerFrame::Unsubscribed { filters };
                self.write(tx, vec![Frame::Text(frame.to_text().into())])
                    .await
            }
        }
    }

    async fn bad_request(&mut self, tx: &mut Sink, detail: String) -> Result<(), CloseReason> {
        BadInput::Request.emit();
        let frame = ServerFrame::Error { detail };
        self.write(tx, vec![Frame::Text(frame.to_text().into())])
            .await
    }

    /// Subscribes to what may be granted, answers, then sends the retained
    /// messages of the new subscriptions, as MQTT does.
    async fn subscribe(&mut self, tx: &mut Sink, filters: Vec<String>) -> Result<(), CloseReason> {
        let session = &self.session;
        // Load the tenant's rules if they are not in memory; the last known
        // ones serve while the store is unreachable.
        let policy = match session.acl.policy(&session.tenant).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(tenant = %session.tenant, error = %e, "loading ACL rules failed; using the last known");
                session.acl.current(&session.tenant)
            }
        };
        let max = session.streams.limits().filters;
        let mut outcomes = Vec::with_capacity(filters.len());
        let mut retained = Vec::new();
        for filter in filters {
            let outcome = match self.check_filter(&policy, &filter, max) {
                Err(reason) => FilterOutcome::refused(filter, reason),
                Ok(()) => {
                    let entry = Entry {
                        id: self.id,
                        subscriber: self.inbox.clone(),
                        options: SubscriptionOptions::qos(QoS::ExactlyOnce),
                    };
                    let router = &self.session.router;
                    router.subscribe_observer(&self.session.tenant, &filter, entry);
                    retained.extend(
                        router
                            .tenant(&self.session.tenant)
                            .retained_matching(&filter),
                    );
                    self.filters.insert(filter.clone());
                    FilterOutcome::granted(filter)
                }
            };
            outcomes.push(outcome);
        }
        let frame = ServerFrame::Subscribed { filters: outcomes };
        self.write(tx, vec![Frame::Text(frame.to_text().into())])
            .await?;
        self.send_messages(tx, retained, true).await
    }

    fn check_filter(&self, policy: &Policy, filter: &str, max: usize) -> Result<(), String> {
        if filter.starts_with("$share/") {
            BadInput::Filter.emit();
            return Err("shared subscriptions ($share/…) are for MQTT clients, not streams".into());
        }
        if let Err(e) = ferrule_core::topic::validate_filter(filter) {
            BadInput::Filter.emit();
            return Err(format!("not a valid topic filter: {e}"));
        }
        if !self.filters.contains(filter) && self.filters.len() >= max {
            return Err(format!(
                "a stream holds at most {max} filters: unsubscribe some first"
            ));
        }
        // Like MQTT's 0x80, this does not say which rule.
        if !policy.allows(&self.session.who, Access::Subscribe, filter) {
            return Err("not allowed".into());
        }
        Ok(())
    }

    /// Sends messages the caller may receive (the tenant's rules may have
    /// changed since it subscribed: each is checked, as MQTT's are).
    async fn send_messages(
        &mut self,
        tx: &mut Sink,
        messages: impl IntoIterator<Item = Arc<Message>>,
        retained: bool,
    ) -> Result<(), CloseReason> {
        let session = &self.session;
        if !self
            .access
            .refresh(&session.acl, &session.directory, &session.who)
        {
            return Err(CloseReason::Credentials);
        }
        let mut messages = messages.into_iter().peekable();
        // Encoded a few at a time: a `#` subscription's retained messages
        // may be many more than a live batch, which the inbox bounds.
        while messages.peek().is_some() {
            let frames: Vec<Frame> = messages
                .by_ref()
                .take(FRAMES_PER_WRITE)
                .filter(|m| self.access.allows(&self.session.who, &m.topic))
                .map(|m| Frame::Text(message_frame(&m, retained).into()))
                .collect();
            let n = frames.len();
            if n > 0 {
                self.write(tx, frames).await?;
                observe::messages_sent(n);
            }
        }
        Ok(())
    }

    /// Writes frames, unless the stream must end first: a client that does
    /// not read blocks the write, and meanwhile its inbox overflows; one
    /// that reads nothing for two ping periods is gone even if little is
    /// sent to it.
    async fn write(&self, tx: &mut Sink, frames: Vec<Frame>) -> Result<(), CloseReason> {
        let send = async {
            for frame in frames {
                tx.feed(frame).await?;
            }
            tx.flush().await
        };
        let stalled = self.session.streams.limits().ping_every * 2;
        tokio::select! {
            biased;
            _ = self.session.streams.shutdown().cancelled() => Err(CloseReason::Shutdown),
            _ = self.session.admitted.revoked.cancelled() => Err(CloseReason::Credentials),
            _ = self.inbox.overflow() => Err(CloseReason::Slow),
            sent = send => sent.map_err(|_| CloseReason::Client),
            _ = tokio::time::sleep(stalled) => Err(CloseReason::Slow),
        }
    }

    /// Authenticates the stream's token again: a session that expired or
    /// ended, a key revoked, a user deleted end the stream.
    async fn still_authorized(&mut self) -> bool {
        let session = &mut self.session;
        match session.identity.authenticate_bearer(&session.token).await {
            Ok(principal) => {
                let Some(role) = principal.role() else {
                    return false;
                };
                if principal.tenant != session.tenant && !role.is_admin() {
                    return false;
                }
                session.who = Principal {
                    tenant: session.tenant.clone(),
                    kind: principal.kind,
                };
                // An admin's stream of a tenant since deleted ends too.
                if !session.directory.may_act(&session.who) {
                    return false;
                }
                self.access.forget();
                true
            }
            // The store is busy or unreachable: not the caller's fault.
            Err(AuthError::Store(_) | AuthError::Busy) => true,
            Err(_) => false,
        }
    }

    fn unsubscribe_all(&mut self) {
        for filter in std::mem::take(&mut self.filters) {
            self.session
                .router
                .unsubscribe(&self.session.tenant, &filter, self.id);
        }
    }
}

/// Why reading from the client failed: an oversized or malformed frame is
/// the client's doing; anything else is a broken connection.
fn read_failure(e: axum::Error) -> CloseReason {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(e)
            if matches!(
                *e,
                tungstenite::Error::Capacity(_) | tungstenite::Error::Protocol(_)
            ) =>
        {
            CloseReason::Protocol
        }
        _ => CloseReason::Client,
    }
}

/// Whether the caller may receive a message on a topic, with the tenant's
/// policy cached until its version moves (a rule change, a deletion).
struct ReceiveCheck {
    version: Arc<AtomicU64>,
    /// The version `policy` was read under; 0 before the first read.
    seen: u64,
    policy: Arc<Policy>,
    everything: bool,
}

impl ReceiveCheck {
    fn new(acl: &AclCache, tenant: &TenantId) -> Self {
        Self {
            version: acl.version(tenant),
            seen: 0,
            policy: Arc::default(),
            everything: false,
        }
    }

    /// Rereads the policy if it changed; false when the caller may no
    /// longer act at all (its tenant was deleted).
    fn refresh(&mut self, acl: &AclCache, directory: &Directory, who: &Principal) -> bool {
        let now = self.version.load(Ordering::Acquire);
        if now == self.seen {
            return true;
        }
        if !directory.may_act(who) {
            return false;
        }
        self.policy = acl.current(&who.tenant);
        self.everything = self.policy.receives_everything(who);
        self.seen = now;
        true
    }

    /// Drops the cached decision (the caller changed).
    fn forget(&mut self) {
        self.seen = 0;
    }

    fn allows(&self, who: &Principal, topic: &str) -> bool {
        self.everything || self.policy.allows(who, Access::Receive, topic)
    }
}
