//! The handshake: from a new stream to an open connection. Reads CONNECT
//! within the connect timeout, checks it (authentication method,
//! credentials, client id, connection limits), takes over the session and
//! answers CONNACK, each step a function of its own; every refusal goes
//! through [`ConnectRefusal`], the one mapping to CONNACK codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use ferrule_bus::Ticket;
use ferrule_core::{Principal, PrincipalKind, TenantId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Connection, Io};
use crate::broker::decisions::Decisions;
use crate::broker::observe::{self, RefusedReason};
use crate::broker::refusal::ConnectRefusal;
use crate::broker::session::Session;
use crate::broker::{Access, Broker, BrokerConfig, ConnectionSlot, Login, Refusal, TlsPeer};
use crate::codec::{
    self, ConnAck, Connect, MqttStr, Packet, Properties, ProtocolVersion, ReasonCode,
};

/// Waits for the first packet, which must be CONNECT.
pub(super) async fn read_connect<S: AsyncRead + AsyncWrite + Unpin>(
    broker: &Broker,
    io: &mut Io<S>,
    shutdown: &CancellationToken,
) -> Option<Box<Connect>> {
    let deadline = tokio::time::sleep(broker.config.connect_timeout);
    tokio::pin!(deadline);
    loop {
        // CONNECT decodes by its own protocol level; the version argument
        // only matters for other packets, which are refused here anyway.
        match codec::decode(
            &mut io.rbuf,
            ProtocolVersion::V5,
            broker.config.max_packet_size,
        ) {
            Ok(Some(Packet::Connect(c))) => return Some(c),
            Ok(Some(other)) => {
                observe::ProtocolViolated {
                    code: ReasonCode::PROTOCOL_ERROR,
                    detail: &format!("first packet was {:?}, not CONNECT", other.packet_type()),
                }
                .emit();
                return None;
            }
            Ok(None) => {}
            Err(e) if e.is_unsupported_protocol() => {
                // MQTT 3.1.1 §3.1.2.2: answer return code 1 and close; an
                // MQTT 5 CONNACK would be unreadable to an older client.
                refuse(
                    &mut io.wbuf,
                    ProtocolVersion::V311,
                    ConnectRefusal::UnsupportedProtocol,
                );
                let _ = io.flush().await;
                return None;
            }
            Err(e) => {
                observe::ProtocolViolated {
                    code: e.reason_code(),
                    detail: &e.to_string(),
                }
                .emit();
                return None;
            }
        }
        tokio::select! {
            _ = &mut deadline => {
                observe::ConnectionRefused {
                    reason: RefusedReason::ConnectTimeout,
                }
                .emit();
                return None;
            }
            _ = shutdown.cancelled() => return None,
            n = io.read() => match n {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// Sends a CONNACK refusal and counts it.
fn refuse(wbuf: &mut BytesMut, version: ProtocolVersion, refusal: ConnectRefusal) {
    observe::ConnectionRefused {
        reason: refusal.observed(),
    }
    .emit();
    let _ = codec::encode(&Packet::ConnAck(refusal.connack(version)), version, wbuf);
}

/// Authenticates the CONNECT, opens the session and answers CONNACK.
pub(super) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    broker: &Arc<Broker>,
    io: &mut Io<S>,
    connect: Connect,
    tls: Option<&TlsPeer>,
    peer: SocketAddr,
) -> Option<Connection> {
    let admitted = match admit(broker, &connect, tls, peer).await {
        Ok(a) => a,
        Err(refusal) => {
            refuse(&mut io.wbuf, connect.protocol_version, refusal);
            return None;
        }
    };
    let terms = Terms::granted(&broker.config, &connect);
    let attached = take_over_session(broker, &connect, &admitted, &terms);
    send_connack(
        &mut io.wbuf,
        &broker.config,
        &connect,
        &admitted,
        &terms,
        attached.present,
    );
    tracing::debug!(
        %peer,
        tenant = %admitted.principal.tenant,
        client_id = %admitted.client_id,
        present = attached.present,
        "MQTT client connected"
    );
    Some(Connection::new(
        broker, connect, admitted, &terms, attached, peer,
    ))
}

/// A CONNECT that passed every check, before its session is opened.
struct Admitted {
    principal: Principal,
    client_id: ByteString,
    /// The id we chose for a client that sent an empty one, to tell it in
    /// CONNACK (MQTT 5 Assigned Client Identifier).
    assigned: Option<String>,
    /// Held for the connection's life, so the limits count it.
    slot: ConnectionSlot,
}

/// Checks a CONNECT in the order the protocol and the cost of each check
/// ask for: what needs no lookup first, the credentials next (their
/// refusal is the one most clients need to read), and the connection slot
/// last, so a refused login never holds one.
async fn admit(
    broker: &Arc<Broker>,
    connect: &Connect,
    tls: Option<&TlsPeer>,
    peer: SocketAddr,
) -> Result<Admitted, ConnectRefusal> {
    // MQTT 5 enhanced authentication: we offer none, and a client asking
    // for one expects an AUTH exchange we would never start.
    if connect.protocol_version == ProtocolVersion::V5
        && connect.properties.authentication_method.is_some()
    {
        return Err(ConnectRefusal::AuthMethod);
    }
    let principal = authenticate(broker, connect, tls, peer)
        .await
        .map_err(|r| {
            tracing::debug!(%peer, ?r, "MQTT login refused");
            ConnectRefusal::Login(r)
        })?;
    // Before the first publish, so the hot path's ACL checks hit memory.
    broker.gate.prepare(&principal.tenant).await;
    let (client_id, assigned) = client_id(connect)?;
    let slot = broker
        .admit(&principal.tenant)
        .map_err(ConnectRefusal::Admission)?;
    Ok(Admitted {
        principal,
        client_id,
        assigned,
        slot,
    })
}

/// Turns the CONNECT's credentials (and the TLS client certificate) into a
/// principal. A client without any is anonymous, which only the broker's
/// configuration may allow: the gatekeeper sees real credentials only.
async fn authenticate(
    broker: &Broker,
    connect: &Connect,
    tls: Option<&TlsPeer>,
    peer: SocketAddr,
) -> Result<Principal, Refusal> {
    // An empty user name without a password is no credential at all.
    let username = connect
        .username
        .as_ref()
        .map(|u| u.as_str())
        .filter(|u| !u.is_empty() || connect.password.is_some());
    let cert_fingerprint = tls.and_then(|t| t.cert_fingerprint.as_deref());
    if username.is_none() && connect.password.is_none() && cert_fingerprint.is_none() {
        return if broker.config.allow_anonymous {
            Ok(Principal {
                tenant: TenantId::default_tenant(),
                kind: PrincipalKind::Anonymous,
            })
        } else {
            Err(Refusal::NotAuthorized)
        };
    }
    let login = Login {
        username,
        password: connect.password.as_deref(),
        cert_fingerprint,
        server_name: tls.and_then(|t| t.server_name.as_deref()),
        peer: peer.ip(),
    };
    broker.gate.authenticate(login).await
}

/// The session's client identifier, and the one we assigned if any. Empty
/// means "assign one" (MQTT 5 §3.1.3.1), which 3.1.1 allows only with a
/// clean session: an assigned id could never be resumed.
fn client_id(connect: &Connect) -> Result<(ByteString, Option<String>), ConnectRefusal> {
    if connect.client_id.is_empty() {
        if connect.protocol_version != ProtocolVersion::V5 && !connect.clean_start {
            return Err(ConnectRefusal::EmptyClientId);
        }
        let id = format!("auto-{:016x}", rand::random::<u64>());
        return Ok((ByteString::from(id.clone()), Some(id)));
    }
    // A copy: a slice would pin the whole CONNECT read buffer for the
    // connection's life.
    Ok((
        ByteString::from(connect.client_id.as_str().to_owned()),
        None,
    ))
}

/// Session expiry and keep alive: what the client asked for, capped by
/// the configuration. Both go into the session and CONNACK.
struct Terms {
    requested_expiry: Duration,
    expiry: Duration,
    keep_alive: u16,
    /// Set when the cap replaced the client's keep alive, to tell an MQTT 5
    /// client (Server Keep Alive); a 3.1.1 client cannot be told, so its
    /// own value stands.
    server_keep_alive: Option<u16>,
}

impl Terms {
    fn granted(config: &BrokerConfig, connect: &Connect) -> Self {
        let v5 = connect.protocol_version == ProtocolVersion::V5;
        // 3.1.1 has no expiry: a clean session ends at disconnect, any
        // other lives until the configured maximum.
        let requested_expiry = if v5 {
            Duration::from_secs(u64::from(
                connect.properties.session_expiry_interval.unwrap_or(0),
            ))
        } else if connect.clean_start {
            Duration::ZERO
        } else {
            Duration::MAX
        };
        let cap = config.max_keepalive;
        let (keep_alive, server_keep_alive) =
            if cap > 0 && v5 && (connect.keep_alive == 0 || connect.keep_alive > cap) {
                (cap, Some(cap))
            } else {
                (connect.keep_alive, None)
            };
        Self {
            requested_expiry,
            expiry: requested_expiry.min(config.max_session_expiry),
            keep_alive,
            server_keep_alive,
        }
    }
}

/// This connection's hold on its session.
struct Attached {
    session: Arc<Session>,
    /// The session existed before (CONNACK Session Present).
    present: bool,
    connection_id: u64,
    /// Where a later connection for the same session, or a revocation,
    /// tells this one to leave.
    kick: oneshot::Receiver<ReasonCode>,
}

/// Opens or resumes the session and makes this connection its only one:
/// a connection already attached is told to leave (MQTT 5 §3.1.4
/// takeover), and a will waiting for its delay is cancelled by the resume.
fn take_over_session(
    broker: &Broker,
    connect: &Connect,
    admitted: &Admitted,
    terms: &Terms,
) -> Attached {
    let principal = &admitted.principal;
    let owner = ByteString::from(principal.session_owner());
    let (kick_tx, kick) = oneshot::channel();
    let connection_id = rand::random::<u64>();
    // The identity as it is now decides what the session may receive, also
    // what it queued before.
    let reader = Decisions::new(broker.gate.clone(), principal.clone(), Access::Receive);
    let expiry = terms.expiry;
    let (session, present) = broker.sessions.open(
        &broker.router,
        (principal.tenant.clone(), owner, admitted.client_id.clone()),
        connect.clean_start,
        broker.config.queue_limits(),
        |st| {
            if let Some(old) = st.kick.take() {
                let _ = old.send(ReasonCode::SESSION_TAKEN_OVER);
            }
            st.connection = Some(connection_id);
            st.kick = Some(kick_tx);
            st.generation += 1;
            st.expiry = expiry;
            st.pending_will = None;
            st.reader = Some(reader);
        },
    );
    session.mark_dirty();
    Attached {
        session,
        present,
        connection_id,
        kick,
    }
}

/// The accepting CONNACK. An MQTT 5 client learns our limits from it, and
/// whatever we granted other than it asked for (expiry, keep alive, id).
fn send_connack(
    wbuf: &mut BytesMut,
    config: &BrokerConfig,
    connect: &Connect,
    admitted: &Admitted,
    terms: &Terms,
    present: bool,
) {
    let version = connect.protocol_version;
    let mut properties = Properties::default();
    if version == ProtocolVersion::V5 {
        properties.receive_maximum = NonZeroU16::new(config.receive_maximum);
        properties.maximum_packet_size = u32::try_from(config.max_packet_size)
            .ok()
            .and_then(NonZeroU32::new);
        properties.topic_alias_maximum = Some(config.topic_alias_maximum);
        properties.assigned_client_identifier = admitted
            .assigned
            .as_deref()
            .and_then(|a| MqttStr::new(a).ok());
        properties.server_keep_alive = terms.server_keep_alive;
        if terms.expiry != terms.requested_expiry {
            properties.session_expiry_interval =
                Some(u32::try_from(terms.expiry.as_secs()).unwrap_or(u32::MAX));
        }
    }
    let ack = ConnAck {
        session_present: present,
        reason_code: ReasonCode::SUCCESS,
        properties,
    };
    let _ = codec::encode(&Packet::ConnAck(ack), version, wbuf);
}

impl Connection {
    /// The connection's state at its start, from what the CONNECT asked
    /// for and what it was granted.
    fn new(
        broker: &Arc<Broker>,
        connect: Connect,
        admitted: Admitted,
        terms: &Terms,
        attached: Attached,
        peer: SocketAddr,
    ) -> Self {
        let version = connect.protocol_version;
        let v5 = version == ProtocolVersion::V5;
        let Admitted {
            principal,
            client_id,
            slot,
            ..
        } = admitted;
        let tenant = principal.tenant.clone();
        let client_receive_max = connect
            .properties
            .receive_maximum
            .map_or(u16::MAX, NonZeroU16::get);
        Connection {
            device: super::connectivity::DeviceLink::of(&principal, peer),
            publishing: Box::new(Decisions::new(
                broker.gate.clone(),
                principal.clone(),
                Access::Publish,
            )),
            rate: broker.rates.client(&tenant),
            bus: broker.router.tenant(&tenant),
            broker: broker.clone(),
            _slot: slot,
            version,
            v5,
            principal,
            tenant,
            client_id,
            session: attached.session,
            connection_id: attached.connection_id,
            kick: Some(attached.kick),
            will: connect.will.map(Box::new),
            keep_alive: Duration::from_secs(u64::from(terms.keep_alive)),
            window: client_receive_max.min(broker.config.max_inflight).max(1) as usize,
            client_max_packet: connect
                .properties
                .maximum_packet_size
                .map(|m| m.get() as usize),
            client_alias_max: if v5 {
                connect.properties.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
            aliases_in: HashMap::new(),
            aliases_out: HashMap::new(),
            resend: attached.present,
            backpressure: None,
            durable_after: Ticket::NONE,
            committed: broker.router.durability().watch(),
            deferred_acks: std::collections::VecDeque::new(),
            deferred_pubacks: 0,
            server_closed: false,
        }
    }
}
