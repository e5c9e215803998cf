//! One client connection, from CONNECT to close, on any byte stream.
//!
//! The connection is a single task: it reads and decodes every complete
//! packet in its buffer, handles each (routing publishes, queueing acks),
//! drains the session's queue within the in-flight window, and writes all
//! the resulting bytes with one write. Batching this way is what makes the
//! broker fast: a busy client costs one read and one write per batch, not per
//! packet. Before that, [`handshake`] turns the stream's CONNECT into an open
//! connection, or refuses it.

mod connectivity;
mod handshake;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use ferrule_bus::{Entry, SubscriptionOptions, Ticket};
use ferrule_core::connectivity::{ConnectivityChange, DisconnectReason};
use ferrule_core::topic::parse_subscription;
use ferrule_core::{Message, MessageProperties, Origin, Principal, QoS, TenantId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::decisions::Decisions;
use super::observe::{self, DeniedAccess, DropReason};
use super::rate::ClientRate;
use super::refusal::PublishRefusal;
use super::session::{Inflight, Outgoing, Session};
use super::{Access, Broker, ConnectionSlot, Transport, monotonic_now};
use crate::codec::{
    self, Ack, DecodeError, Disconnect, MqttStr, Packet, PacketId, Properties, ProtocolVersion,
    Publish, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
};

/// Read sizes adapt between these: an idle connection holds a small buffer,
/// a busy one reads in large batches.
const MIN_READ: usize = 256;
const MAX_READ: usize = 64 * 1024;
/// A write buffer larger than this is released after a flush rather than
/// kept for the connection's life.
const KEEP_WRITE_CAPACITY: usize = 64 * 1024;
/// Longest a publisher pauses for a congested subscriber before reading on.
const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(2);
/// Flush the write buffer once it holds this much, even mid-batch.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// After the server closes a connection with a reason, how long and how
/// much it goes on reading (and discarding) what the client still sends.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// Runs one MQTT client on `stream` until it disconnects, breaks the
/// protocol, is taken over, or the server shuts down.
pub async fn serve_connection<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut io = Io {
        stream,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        read_hint: MIN_READ,
    };
    // The handshake's futures are boxed: they are large and short-lived, and
    // inline they would size the task for its whole life — thousands of idle
    // connections would each carry them.
    let connect = match Box::pin(handshake::read_connect(&broker, &mut io, &shutdown)).await {
        Some(c) => c,
        None => return,
    };
    let Some(mut conn) = Box::pin(handshake::accept(
        &broker,
        &mut io,
        *connect,
        transport.tls(),
        peer,
    ))
    .await
    else {
        // A refusing CONNACK: the client may have sent more behind CONNECT.
        let _ = io.flush().await;
        let _ = io.stream.shutdown().await;
        linger(&mut io, &shutdown).await;
        return;
    };
    observe::ConnectionOpened {
        version: conn.version,
        transport: transport.label(),
    }
    .emit();
    let open = broker.open.slot(&transport);
    open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    conn.announce(ConnectivityChange::Connected, None);
    let end = conn.run(&mut io, &shutdown).await;
    open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    observe::connection_closed(transport.label());
    let _ = io.flush().await;
    let _ = io.stream.shutdown().await;
    let server_closed = conn.server_closed && end != End::Shutdown;
    conn.finish(end);
    if server_closed {
        linger(&mut io, &shutdown).await;
    }
}

/// After a half-close (our DISCONNECT or refusing CONNACK and FIN are sent):
/// reads and discards what the client still sends until it closes too, for
/// at most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing a socket with
/// unread data makes TCP reset the connection, and a client still writing
/// would meet the reset instead of reading why it was disconnected.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut Io<S>, shutdown: &CancellationToken) {
    let deadline = tokio::time::sleep(LINGER_TIME);
    tokio::pin!(deadline);
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        io.rbuf.clear();
        io.rbuf.reserve(MIN_READ * 16);
        tokio::select! {
            _ = &mut deadline => break,
            _ = shutdown.cancelled() => break,
            n = io.stream.read_buf(&mut io.rbuf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    }
}

/// The byte stream with its buffers.
struct Io<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// How much to make room for before the next read.
    read_hint: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    async fn read(&mut self) -> std::io::Result<usize> {
        // After a burst, give a large buffer back: thousands of idle
        // connections must not each keep one.
        if self.rbuf.is_empty() && self.rbuf.capacity() > 2 * self.read_hint {
            self.rbuf = BytesMut::new();
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.read_hint / 2 {
            self.rbuf.reserve(self.read_hint);
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n >= spare {
            self.read_hint = (self.read_hint * 2).min(MAX_READ);
        } else if n < self.read_hint / 4 {
            self.read_hint = (self.read_hint / 2).max(MIN_READ);
        }
        Ok(n)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            if self.wbuf.capacity() > KEEP_WRITE_CAPACITY {
                self.wbuf = BytesMut::new();
            } else {
                self.wbuf.clear();
            }
        }
        self.stream.flush().await
    }
}

fn byte_string(s: &MqttStr) -> ByteString {
    // MqttStr is valid UTF-8 by construction, so this cannot fail.
    ByteString::try_from(s.clone().into_bytes()).unwrap_or_default()
}

fn mqtt_str(s: &ByteString) -> MqttStr {
    MqttStr::from_bytes(s.as_bytes().clone()).unwrap_or_default()
}

/// Why a connection ended; decides the will and the session's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT 0x00: no will.
    Normal,
    /// DISCONNECT 0x04: publish the will.
    WithWill,
    /// Network loss, keep alive, protocol error (which one it was):
    /// publish the will.
    Lost(DisconnectReason),
    /// Another connection took the session over (`Takeover`), or the
    /// identity's rights went (`Revoked`).
    TakenOver(DisconnectReason),
    /// Server shutting down: the session stays for the client's return.
    Shutdown,
}

impl End {
    /// Why the connection ended, as the device's connectivity event says.
    fn reason(self) -> DisconnectReason {
        match self {
            End::Normal | End::WithWill => DisconnectReason::ClientDisconnect,
            End::Lost(r) | End::TakenOver(r) => r,
            End::Shutdown => DisconnectReason::ServerShutdown,
        }
    }
}

struct Connection {
    broker: Arc<Broker>,
    /// The tenant's router bus, held so publishing skips the tenant lookup.
    bus: Arc<ferrule_bus::TenantBus>,
    _slot: ConnectionSlot,
    version: ProtocolVersion,
    v5: bool,
    principal: Principal,
    /// Recent publish decisions (boxed: idle connections are many).
    publishing: Box<Decisions>,
    tenant: TenantId,
    client_id: ByteString,
    session: Arc<Session>,
    connection_id: u64,
    kick: Option<oneshot::Receiver<ReasonCode>>,
    /// Boxed: most clients have none, and it is large.
    will: Option<Box<Will>>,
    keep_alive: Duration,
    /// QoS 1/2 messages we may have in flight to the client.
    window: usize,
    client_max_packet: Option<usize>,
    client_alias_max: u16,
    aliases_in: HashMap<u16, MqttStr>,
    aliases_out: HashMap<ByteString, u16>,
    /// Redeliver in-flight messages first (resumed session).
    resend: bool,
    /// Set when a publish found a subscriber congested.
    backpressure: Option<Arc<ferrule_bus::Notify>>,
    /// The store writes the last routed publish depends on.
    durable_after: Ticket,
    /// What the stores have committed.
    committed: tokio::sync::watch::Receiver<Ticket>,
    /// Acknowledgements waiting for their ticket, in PUBLISH order.
    deferred_acks: std::collections::VecDeque<(Ticket, Packet)>,
    /// PUBACKs among `deferred_acks`: QoS 1 messages the client still
    /// counts against our Receive Maximum.
    deferred_pubacks: usize,
    /// We ended the connection (DISCONNECT with a reason, or a close).
    server_closed: bool,
    /// This client's and its tenant's rate limits.
    rate: ClientRate,
    /// Set when a device is the client (boxed: other clients need none).
    device: Option<Box<connectivity::DeviceLink>>,
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A protocol violation: close with this reason code.
struct Violation(ReasonCode, &'static str);

impl Connection {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        shutdown: &CancellationToken,
    ) -> End {
        let mut kick = self.kick.take().expect("kick receiver");
        let mut keepalive: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(self.keepalive_window()));
        let session = self.session.clone();
        let mut committed = self.committed.clone();
        if self.resend {
            self.redeliver(&mut io.wbuf);
        }
        // Packets that came in the same read as CONNECT are handled at once,
        // not when the client next sends something.
        let mut buffered = !io.rbuf.is_empty();
        loop {
            self.drain(&mut io.wbuf);
            if !io.wbuf.is_empty() && io.flush().await.is_err() {
                return End::Lost(DisconnectReason::ConnectionLost);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.disconnect(&mut io.wbuf, ReasonCode::SERVER_SHUTTING_DOWN);
                    return End::Shutdown;
                }
                reason = &mut kick => return self.kicked(&mut io.wbuf, reason),
                n = async {
                    if std::mem::take(&mut buffered) { Ok(1) } else { io.read().await }
                } => {
                    match n {
                        Ok(0) | Err(_) => return End::Lost(DisconnectReason::ConnectionLost),
                        Ok(_) => {}
                    }
                    if let Some(device) = self.device.as_mut() {
                        device.heard();
                    }
                    if !self.keep_alive.is_zero() {
                        keepalive.as_mut().reset(tokio::time::Instant::now() + self.keepalive_window());
                    }
                    let input = self.handle_input(io);
                    self.release_acks(&mut io.wbuf);
                    match input {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(Violation(code, detail)) => {
                            observe::ProtocolViolated { code, detail }.emit();
                            self.disconnect(&mut io.wbuf, code);
                            return End::Lost(DisconnectReason::ProtocolError);
                        }
                    }
                    if io.wbuf.len() >= WRITE_HIGH_WATER && io.flush().await.is_err() {
                        return End::Lost(DisconnectReason::ConnectionLost);
                    }
                    // A subscriber is falling behind: stop reading for a
                    // moment so TCP slows this publisher, rather than
                    // accepting messages only to drop them.
                    if let Some(drained) = self.backpressure.take() {
                        self.drain(&mut io.wbuf);
                        if !io.wbuf.is_empty() && io.flush().await.is_err() {
                            return End::Lost(DisconnectReason::ConnectionLost);
                        }
                        tokio::select! {
                            _ = drained.notified() => {}
                            _ = tokio::time::sleep(BACKPRESSURE_PAUSE) => {}
                        }
                    }
                    // Over its rate limit, the client is not read until its
                    // tokens are there (its acknowledgements go out first).
                    if self.rate.pending() {
                        self.drain(&mut io.wbuf);
                        if !io.wbuf.is_empty() && io.flush().await.is_err() {
                            return End::Lost(DisconnectReason::ConnectionLost);
                        }
                        // A takeover or a revocation does not wait for it.
                        tokio::select! {
                            _ = self.rate.settle() => {}
                            _ = shutdown.cancelled() => {}
                            reason = &mut kick => return self.kicked(&mut io.wbuf, reason),
                        }
                    }
                }
                _ = session.wake.notified() => {}
                Ok(()) = committed.changed(), if !self.deferred_acks.is_empty() => {
                    self.release_acks(&mut io.wbuf);
                }
                _ = &mut keepalive, if !self.keep_alive.is_zero() => {
                    observe::ProtocolViolated {
                        code: ReasonCode::KEEP_ALIVE_TIMEOUT,
                        detail: "keep alive expired",
                    }
                    .emit();
                    self.disconnect(&mut io.wbuf, ReasonCode::KEEP_ALIVE_TIMEOUT);
                    return End::Lost(DisconnectReason::KeepAliveTimeout);
                }
            }
        }
    }

    /// MQTT 5 §3.1.2.10: one and a half keep alive periods without a packet.
    fn keepalive_window(&self) -> Duration {
        if self.keep_alive.is_zero() {
            Duration::from_secs(86_400)
        } else {
            self.keep_alive * 3 / 2
        }
    }

    fn send(&self, wbuf: &mut BytesMut, packet: Packet) {
        if let Err(e) = codec::encode(&packet, self.version, wbuf) {
            tracing::warn!(error = %e, "could not encode a packet for the client");
        }
    }

    /// Closes for a kick: a takeover, or a revocation (administrative action).
    fn kicked(
        &mut self,
        wbuf: &mut BytesMut,
        reason: Result<ReasonCode, oneshot::error::RecvError>,
    ) -> End {
        let code = reason.unwrap_or(ReasonCode::SESSION_TAKEN_OVER);
        self.disconnect(wbuf, code);
        End::TakenOver(if code == ReasonCode::ADMINISTRATIVE_ACTION {
            DisconnectReason::Revoked
        } else {
            DisconnectReason::Takeover
        })
    }

    fn disconnect(&mut self, wbuf: &mut BytesMut, code: ReasonCode) {
        self.server_closed = true;
        // 3.1.1 has no server DISCONNECT: the server just closes.
        if self.v5 {
            self.send(wbuf, Packet::Disconnect(Disconnect::new(code)));
        }
    }

    /// Decodes and handles every complete packet in the read buffer.
    fn handle_input<S>(&mut self, io: &mut Io<S>) -> Result<Option<End>, Violation> {
        let mut publishes = 0u64;
        let unread = io.rbuf.len();
        let result = loop {
            let packet = match codec::decode(
                &mut io.rbuf,
                self.version,
                self.broker.config.max_packet_size,
            ) {
                Ok(Some(p)) => p,
                Ok(None) => break Ok(None),
                Err(e) => break Err(decode_violation(&e)),
            };
            let step = match packet {
                Packet::Publish(p) => {
                    publishes += 1;
                    self.on_publish(&mut io.wbuf, p).map(|()| None)
                }
                Packet::PubAck(a) => {
                    self.session.state().take_inflight(a.packet_id.get());
                    Ok(None)
                }
                Packet::PubRec(a) => {
                    self.on_pubrec(&mut io.wbuf, a);
                    Ok(None)
                }
                Packet::PubRel(a) => {
                    self.on_pubrel(&mut io.wbuf, a);
                    Ok(None)
                }
                Packet::PubComp(a) => {
                    self.session.state().take_inflight(a.packet_id.get());
                    Ok(None)
                }
                Packet::Subscribe(s) => self.on_subscribe(&mut io.wbuf, s).map(|()| None),
                Packet::Unsubscribe(u) => {
                    self.on_unsubscribe(&mut io.wbuf, u);
                    Ok(None)
                }
                Packet::PingReq => {
                    self.send(&mut io.wbuf, Packet::PingResp);
                    Ok(None)
                }
                Packet::Disconnect(d) => self.on_disconnect(d).map(Some),
                Packet::Connect(_) => Err(Violation(ReasonCode::PROTOCOL_ERROR, "second CONNECT")),
                Packet::Auth(_) => Err(Violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "AUTH without an authentication method",
                )),
                Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                    Err(Violation(
                        ReasonCode::PROTOCOL_ERROR,
                        "server-to-client packet sent by a client",
                    ))
                }
            };
            match step {
                Ok(None) => {}
                other => break other,
            }
        };
        if publishes > 0 {
            observe::messages_in(publishes);
        }
        self.rate.charge(publishes, unread - io.rbuf.len());
        result
    }

    fn on_publish(&mut self, wbuf: &mut BytesMut, p: Publish) -> Result<(), Violation> {
        self.durable_after = Ticket::NONE;
        // Topic aliases from the client (MQTT 5 §3.3.2.3.4).
        let topic = match p.properties.topic_alias {
            Some(alias) => {
                let alias = alias.get();
                if alias > self.broker.config.topic_alias_maximum {
                    return Err(Violation(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "topic alias above the maximum",
                    ));
                }
                if p.topic.is_empty() {
                    match self.aliases_in.get(&alias) {
                        Some(t) => t.clone(),
                        None => {
                            return Err(Violation(
                                ReasonCode::PROTOCOL_ERROR,
                                "unknown topic alias",
                            ));
                        }
                    }
                } else {
                    self.aliases_in.insert(alias, p.topic.clone());
                    p.topic.clone()
                }
            }
            None => p.topic.clone(),
        };
        let qos = p.qos;
        let packet_id = p.packet_id;
        let topic_str = topic.as_str();

        // A payload declared UTF-8 must be (MQTT 5 §3.3.2.3.2).
        let format_ok = p.properties.payload_format_indicator != Some(true)
            || std::str::from_utf8(&p.payload).is_ok();
        let allowed = !topic_str.starts_with('$') && self.publishing.allows(&byte_string(&topic));
        // Kept off the connection's state: every idle connection would pay
        // for the intake's reason string.
        let mut refusal = if !allowed {
            Some(PublishRefusal::Denied)
        } else if !format_ok {
            Some(PublishRefusal::PayloadFormatInvalid)
        } else {
            None
        };
        if let Some(r) = &refusal {
            r.observe(&self.tenant);
        }

        // Only deferred PUBACKs can pile up, so with none the client is
        // within the window (the QoS 2 check below keeps its own count).
        if qos == QoS::AtLeastOnce
            && self.deferred_pubacks > 0
            && self.in_flight_from_client() >= self.receive_maximum()
        {
            return Err(Violation(
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                "too many QoS 1 messages waiting for their acknowledgement",
            ));
        }
        if qos == QoS::ExactlyOnce {
            let id = packet_id.map_or(0, PacketId::get);
            let mut st = self.session.state();
            let duplicate = st.inbound_qos2.contains(&id);
            if !duplicate && refusal.is_none() {
                if st.inbound_qos2.len() + self.deferred_pubacks >= self.receive_maximum() {
                    return Err(Violation(
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                        "too many QoS 2 messages in flight",
                    ));
                }
                st.inbound_qos2.insert(id);
            }
            drop(st);
            if !duplicate && refusal.is_none() {
                refusal = self.route(topic, p);
                if refusal.is_some() {
                    // Refused: the exchange ends with the PUBREC, so a
                    // retry with the same id is a new message.
                    self.session.state().inbound_qos2.remove(&id);
                }
            }
        } else if refusal.is_none() {
            refusal = self.route(topic, p);
        }

        if let Some(id) = packet_id {
            // SPEC: a denied publish is refused with 0x87 in MQTT 5 and
            // acknowledged silently in 3.1.1 (which has no way to say no).
            let mut ack = Ack::new(id);
            if let Some(refusal) = refusal {
                ack.reason_code = refusal.reason_code();
                // A reason string is optional: leave it out rather than
                // risk exceeding a small client maximum packet size.
                if self.client_max_packet.is_none_or(|max| max >= 512) {
                    ack.properties.reason_string = refusal
                        .reason_string()
                        .and_then(|w| MqttStr::new(truncate(&w, 256)).ok());
                }
            }
            let packet = if qos == QoS::ExactlyOnce {
                Packet::PubRec(ack)
            } else {
                Packet::PubAck(ack)
            };
            self.acknowledge(wbuf, packet, self.durable_after);
        }
        Ok(())
    }

    /// Our Receive Maximum, as told in CONNACK.
    fn receive_maximum(&self) -> usize {
        usize::from(self.broker.config.receive_maximum)
    }

    /// QoS 1 and 2 messages from the client we have not finished with: the
    /// PUBACKs still waiting for a durable commit, and the QoS 2 messages
    /// not yet released. The client counts both against our Receive
    /// Maximum (MQTT 5 §3.3.4), so more is a protocol error (0x93) — and
    /// without that bound a pipelining client would grow our ack queue.
    fn in_flight_from_client(&self) -> usize {
        self.session.state().inbound_qos2.len() + self.deferred_pubacks
    }

    /// Sends an acknowledgement now, or once the store has committed
    /// `after`: a PUBACK means the message is durable. Acknowledgements
    /// keep the order of their PUBLISHes (MQTT 5 §4.6).
    fn acknowledge(&mut self, wbuf: &mut BytesMut, packet: Packet, after: Ticket) {
        // Only a publish kept in storage looks at the commit ticket: the
        // common path takes no lock.
        let wait = !after.is_none()
            && !self
                .broker
                .router
                .durability()
                .covers(&self.committed.borrow(), after);
        if !wait && self.deferred_acks.is_empty() {
            self.send(wbuf, packet);
            return;
        }
        // A later acknowledgement also waits for the earlier ones.
        let previous = self.deferred_acks.back().map_or(Ticket::NONE, |(t, _)| *t);
        if matches!(packet, Packet::PubAck(_)) {
            self.deferred_pubacks += 1;
        }
        self.deferred_acks.push_back((after.join(previous), packet));
    }

    /// Sends the deferred acknowledgements whose changes are now committed.
    fn release_acks(&mut self, wbuf: &mut BytesMut) {
        if self.deferred_acks.is_empty() {
            return;
        }
        let committed = *self.committed.borrow();
        let durability = self.broker.router.durability().clone();
        while self
            .deferred_acks
            .front()
            .is_some_and(|(t, _)| durability.covers(&committed, *t))
        {
            if let Some((_, packet)) = self.deferred_acks.pop_front() {
                if matches!(packet, Packet::PubAck(_)) {
                    self.deferred_pubacks -= 1;
                }
                self.send(wbuf, packet);
            }
        }
    }

    /// Hands a client's message to the router; returns the refusal when the
    /// router's intake refused it (an invalid telemetry payload).
    fn route(&mut self, topic: MqttStr, p: Publish) -> Option<PublishRefusal> {
        let props = &p.properties;
        let message = Message {
            tenant: self.tenant.clone(),
            topic: byte_string(&topic),
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: application_properties(props),
            expires_at: props
                .message_expiry_interval
                .map(|s| monotonic_now() + Duration::from_secs(u64::from(s))),
            origin: Origin::Mqtt {
                client_id: self.client_id.clone(),
                session: self.session.subscriber_id,
            },
            received_at_ms: ferrule_core::message::now_ms(),
        };
        let published = self.broker.router.publish_in(&self.bus, Arc::new(message));
        if published.backpressure.is_some() {
            self.backpressure = published.backpressure;
        }
        self.durable_after = published.durable_after;
        published.refused.map(PublishRefusal::Intake)
    }

    fn on_pubrec(&self, wbuf: &mut BytesMut, a: Ack) {
        let id = a.packet_id.get();
        let mut st = self.session.state();
        let known = st.inflight.iter_mut().find(|(i, _)| *i == id);
        let mut rel = Ack::new(a.packet_id);
        match known {
            // A PUBREC with an error code ends the exchange (MQTT 5 §4.3.3).
            Some(_) if a.reason_code.is_error() => {
                st.take_inflight(id);
                return;
            }
            Some((_, f)) => {
                if let Inflight::Publish(out) = f {
                    *f = Inflight::Release(out.clone());
                }
            }
            None => rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        }
        drop(st);
        self.send(wbuf, Packet::PubRel(rel));
    }

    fn on_pubrel(&self, wbuf: &mut BytesMut, a: Ack) {
        let known = self.session.state().inbound_qos2.remove(&a.packet_id.get());
        let mut comp = Ack::new(a.packet_id);
        if !known {
            comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        self.send(wbuf, Packet::PubComp(comp));
    }

    fn on_subscribe(&mut self, wbuf: &mut BytesMut, s: Subscribe) -> Result<(), Violation> {
        let subscription_id = s.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let bus = self.bus.clone();
        for sub in &s.subscriptions {
            let raw = sub.topic_filter.as_str();
            let parsed = match parse_subscription(raw) {
                Ok(p) => p,
                Err(_) => {
                    codes.push(if self.v5 {
                        ReasonCode::TOPIC_FILTER_INVALID
                    } else {
                        ReasonCode::UNSPECIFIED_ERROR
                    });
                    continue;
                }
            };
            if parsed.share_group.is_some() && sub.options.no_local {
                return Err(Violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "no local on a shared subscription",
                ));
            }
            // SPEC: a denied filter gets 0x80 in both versions, revealing nothing.
            if !self
                .broker
                .gate
                .allows(&self.principal, Access::Subscribe, parsed.filter)
            {
                observe::Denied {
                    access: DeniedAccess::Subscribe,
                    tenant: &self.tenant,
                    n: 1,
                }
                .emit();
                codes.push(ReasonCode::UNSPECIFIED_ERROR);
                continue;
            }
            let options = SubscriptionOptions {
                qos: sub.options.qos,
                no_local: sub.options.no_local,
                retain_as_published: sub.options.retain_as_published,
                subscription_id,
            };
            let entry = Entry {
                id: self.session.subscriber_id,
                subscriber: self.session.clone(),
                options,
            };
            let is_new = self.broker.router.subscribe(&self.tenant, raw, entry);
            self.session
                .state()
                .subscriptions
                .insert(raw.to_owned(), options);
            codes.push(ReasonCode(sub.options.qos as u8));

            let send_retained = parsed.share_group.is_none()
                && match sub.options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendAtSubscribeIfNew => is_new,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                for message in bus.retained_matching(parsed.filter) {
                    let qos = message.qos.min(options.qos);
                    // Our own queue: no one to wait for.
                    let _ = self.session.enqueue(Outgoing {
                        message,
                        qos,
                        retain: true,
                        subscription_ids: subscription_id.into_iter().collect(),
                    });
                }
            }
        }
        self.send(
            wbuf,
            Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: Properties::default(),
                reason_codes: codes,
            }),
        );
        Ok(())
    }

    fn on_unsubscribe(&self, wbuf: &mut BytesMut, u: Unsubscribe) {
        let codes = u
            .topic_filters
            .iter()
            .map(|f| {
                let f = f.as_str();
                let existed = self.session.state().subscriptions.remove(f).is_some();
                self.broker
                    .router
                    .unsubscribe(&self.tenant, f, self.session.subscriber_id);
                if existed {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.send(
            wbuf,
            Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Properties::default(),
                reason_codes: codes,
            }),
        );
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Result<End, Violation> {
        if let Some(secs) = d.properties.session_expiry_interval {
            let mut st = self.session.state();
            // MQTT 5 §3.14.2.2.2: a session that was to end at disconnect
            // cannot be revived by the DISCONNECT.
            if st.expiry.is_zero() && secs > 0 {
                return Err(Violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "session expiry set on DISCONNECT after 0 in CONNECT",
                ));
            }
            st.expiry =
                Duration::from_secs(u64::from(secs)).min(self.broker.config.max_session_expiry);
        }
        Ok(
            if d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
                End::WithWill
            } else {
                End::Normal
            },
        )
    }

    /// Resends what was in flight when the session's last connection ended,
    /// except what the client may no longer receive.
    fn redeliver(&mut self, wbuf: &mut BytesMut) {
        let pending: Vec<(u16, Inflight)> = {
            let mut st = self.session.state();
            let mut denied = 0;
            let st = &mut *st;
            // Taken out for the while: `retain_inflight` (which keeps the
            // session's byte count) borrows the whole state.
            if let Some(mut reader) = st.reader.take() {
                st.retain_inflight(|f| match f {
                    Inflight::Publish(out) if !reader.allows(&out.message.topic) => {
                        denied += 1;
                        false
                    }
                    _ => true,
                });
                st.reader = Some(reader);
            }
            if denied > 0 {
                self.denied_receive(denied);
                self.session.mark_dirty();
            }
            st.inflight.iter().cloned().collect()
        };
        for (id, f) in pending {
            let Some(pid) = PacketId::new(id) else {
                continue;
            };
            match f {
                Inflight::Publish(out) => {
                    if let Some(p) = self.publish_packet(&out, Some(pid), true) {
                        self.send(wbuf, p);
                    }
                }
                Inflight::Release(_) => self.send(wbuf, Packet::PubRel(Ack::new(pid))),
            }
        }
    }

    /// Counts `n` messages the client's read rules kept from it.
    fn denied_receive(&self, n: u64) {
        observe::Denied {
            access: DeniedAccess::Receive,
            tenant: &self.tenant,
            n,
        }
        .emit();
    }

    /// Moves queued messages into the socket buffer, within the window.
    fn drain(&mut self, wbuf: &mut BytesMut) {
        let mut sent = 0u64;
        let mut expired = 0u64;
        let mut denied = 0u64;
        let now = monotonic_now();
        loop {
            let (out, packet_id) = {
                let mut st = self.session.state();
                if st.connection != Some(self.connection_id) {
                    break;
                }
                let Some(front) = st.queue.front() else { break };
                if front.qos != QoS::AtMostOnce && st.inflight.len() >= self.window {
                    break;
                }
                let out = st.pop_queued().expect("front exists");
                if out.message.is_expired(now) {
                    expired += 1;
                    continue;
                }
                // Queued under rules that may have changed since.
                if let Some(reader) = st.reader.as_mut()
                    && !reader.allows(&out.message.topic)
                {
                    denied += 1;
                    continue;
                }
                let packet_id = (out.qos != QoS::AtMostOnce).then(|| {
                    let id = st.next_packet_id();
                    st.push_inflight(id, Inflight::Publish(out.clone()));
                    id
                });
                (out, packet_id)
            };
            let pid = packet_id.and_then(PacketId::new);
            if let Some(p) = self.publish_packet(&out, pid, false) {
                self.send(wbuf, p);
                sent += 1;
            } else if let Some(id) = packet_id {
                // Too large for the client: it can never be delivered.
                self.session.state().take_inflight(id);
            }
            if wbuf.len() >= WRITE_HIGH_WATER {
                // Let the caller write; the rest waits for the next turn.
                self.session.wake.notify_one();
                break;
            }
        }
        if sent > 0 {
            observe::messages_out(sent);
        }
        if expired > 0 {
            observe::MessagesDropped {
                reason: DropReason::Expired,
                n: expired,
            }
            .emit();
        }
        if denied > 0 {
            self.denied_receive(denied);
        }
        let left = self.session.state().queue.len();
        self.session.relieve_if_drained(left);
    }

    /// The PUBLISH for an outgoing message; `None` when it exceeds the
    /// client's Maximum Packet Size (MQTT 5 §3.1.2.11.4: discard it).
    fn publish_packet(
        &mut self,
        out: &Outgoing,
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> Option<Packet> {
        let m = &out.message;
        let mut properties = Properties::default();
        let mut topic = mqtt_str(&m.topic);
        let mut new_alias = None;
        if self.v5 {
            if let Some(app) = &m.properties {
                properties.payload_format_indicator = app.payload_format_indicator;
                properties.content_type = app.content_type.as_ref().map(mqtt_str);
                properties.response_topic = app.response_topic.as_ref().map(mqtt_str);
                properties.correlation_data = app.correlation_data.clone();
                properties.user_properties = app
                    .user_properties
                    .iter()
                    .map(|(k, v)| (mqtt_str(k), mqtt_str(v)))
                    .collect();
            }
            if let Some(at) = m.expires_at {
                let left = at
                    .saturating_duration_since(monotonic_now())
                    .as_secs()
                    .max(1);
                properties.message_expiry_interval = Some(u32::try_from(left).unwrap_or(u32::MAX));
            }
            properties.subscription_identifiers = out.subscription_ids.to_vec();
            if self.client_alias_max > 0 && !dup {
                match self.aliases_out.get(&m.topic) {
                    Some(&alias) => {
                        properties.topic_alias = NonZeroU16::new(alias);
                        topic = MqttStr::default();
                    }
                    None if self.aliases_out.len() < usize::from(self.client_alias_max) => {
                        let alias = self.aliases_out.len() as u16 + 1;
                        self.aliases_out.insert(m.topic.clone(), alias);
                        properties.topic_alias = NonZeroU16::new(alias);
                        new_alias = Some(alias);
                    }
                    None => {}
                }
            }
        }
        let packet = Packet::Publish(Publish {
            dup,
            qos: out.qos,
            retain: out.retain,
            topic,
            packet_id,
            properties,
            payload: m.payload.clone(),
        });
        if let Some(max) = self.client_max_packet {
            let fits = codec::encoded_len(&packet, self.version).is_ok_and(|n| n <= max);
            if !fits {
                // The client never sees this packet, so it must not learn an
                // alias from it either.
                if let Some(alias) = new_alias
                    && self.aliases_out.get(&m.topic) == Some(&alias)
                {
                    self.aliases_out.remove(&m.topic);
                }
                observe::MessagesDropped {
                    reason: DropReason::TooLarge,
                    n: 1,
                }
                .emit();
                return None;
            }
        }
        Some(packet)
    }

    /// After the connection: the will, and the session's fate.
    fn finish(self, end: End) {
        self.announce(ConnectivityChange::Disconnected, Some(end.reason()));
        let broker = self.broker.clone();
        let session = self.session.clone();
        let (detached, expiry, generation, ended) = {
            let mut st = session.state();
            let mine = st.connection == Some(self.connection_id);
            if mine {
                st.connection = None;
                st.kick = None;
                st.detached_at_ms = ferrule_core::message::now_ms();
            }
            (mine, st.expiry, st.generation, st.ended)
        };
        // Nobody drains an offline session: let waiting publishers go.
        session.relieve_if_drained(0);
        let will = match end {
            End::Lost(_) | End::WithWill => self.will.as_deref().cloned(),
            // Taken over (MQTT 5 §3.1.4 step 2, §3.1.3.2.2): a clean start
            // ended the session, so the will goes now, delay or not; a resume
            // continues the session, which cancels a delayed will.
            End::TakenOver(_) if ended => self.will.as_deref().cloned(),
            End::TakenOver(_) => self
                .will
                .as_deref()
                .cloned()
                .filter(|w| w.properties.will_delay_interval.unwrap_or(0) == 0),
            End::Normal | End::Shutdown => None,
        };
        if let Some(will) = will {
            // An ended session has no time left to delay the will by.
            let expiry = if ended { Duration::ZERO } else { expiry };
            self.publish_will(will, expiry, generation);
        }
        if !detached || end == End::Shutdown {
            return;
        }
        session.mark_dirty();
        // A client may resume the session between our detaching and its
        // end: `end_if_idle` decides and ends in one step.
        if expiry.is_zero() {
            broker
                .sessions
                .end_if_idle(&broker.router, &session, generation);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(expiry).await;
                broker
                    .sessions
                    .end_if_idle(&broker.router, &session, generation);
            });
        }
    }

    /// Publishes the will now, or after its delay unless the session resumes.
    fn publish_will(&self, will: Will, session_expiry: Duration, generation: u64) {
        let mut message = Message::new(
            self.tenant.clone(),
            byte_string(&will.topic),
            will.payload.clone(),
            will.qos,
            Origin::Mqtt {
                client_id: self.client_id.clone(),
                session: self.session.subscriber_id,
            },
        );
        message.retain = will.retain;
        // The will obeys the same rules as any publish from this client:
        // no `$` topics, and the ACL.
        if message.topic.starts_with('$')
            || !self
                .broker
                .gate
                .allows(&self.principal, Access::Publish, &message.topic)
        {
            observe::Denied {
                access: DeniedAccess::Will,
                tenant: &self.tenant,
                n: 1,
            }
            .emit();
            return;
        }
        let props = &will.properties;
        message.properties = application_properties(props);
        message.expires_at = props
            .message_expiry_interval
            .map(|s| monotonic_now() + Duration::from_secs(u64::from(s)));
        let delay = Duration::from_secs(u64::from(props.will_delay_interval.unwrap_or(0)))
            .min(session_expiry);
        let router = self.broker.router.clone();
        if delay.is_zero() {
            router.publish(Arc::new(message));
            return;
        }
        // Kept in the session: its end publishes the will early, a resume
        // cancels it.
        let session = self.session.clone();
        session.state().pending_will = Some(Arc::new(message));
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let due = {
                let mut st = session.state();
                if st.connection.is_none() && st.generation == generation {
                    st.pending_will.take()
                } else {
                    None
                }
            };
            if let Some(will) = due {
                router.publish(will);
            }
        });
    }
}

/// The MQTT 5 properties a message carries from publisher to subscriber;
/// `None` when there are none, which is the common case.
fn application_properties(props: &Properties) -> Option<Box<MessageProperties>> {
    let app = MessageProperties {
        payload_format_indicator: props.payload_format_indicator,
        content_type: props.content_type.as_ref().map(byte_string),
        response_topic: props.response_topic.as_ref().map(byte_string),
        correlation_data: props.correlation_data.clone(),
        user_properties: props
            .user_properties
            .iter()
            .map(|(k, v)| (byte_string(k), byte_string(v)))
            .collect(),
    };
    (!app.is_empty()).then(|| Box::new(app))
}

fn decode_violation(e: &DecodeError) -> Violation {
    // The codec's reason code is the one MQTT prescribes for the error.
    Violation(e.reason_code(), "malformed packet")
}
