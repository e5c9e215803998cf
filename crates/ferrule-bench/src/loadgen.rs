//! The MQTT load generator: a minimal MQTT 3.1.1 client on
//! `ferrule_mqtt::codec`, built so that it is never the bottleneck, and
//! [`DevicePublisher`], a device that logs in and publishes generated
//! payloads in MQTT 3.1.1 or 5.
//!
//! Every role pipelines: publishers encode many packets into one buffer and
//! write it with one `write_all`; readers read into a large buffer and handle
//! every complete packet per read (QoS 0 PUBLISHes by their fixed header
//! alone), answering with one write per read. The
//! throughput roles are async tasks meant for one current-thread runtime;
//! the latency roles are blocking threads so that sends can be paced to the
//! microsecond (tokio's timer has millisecond granularity).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrule_mqtt::codec::{
    self, Ack, Connect, MqttStr, Packet, PacketId, PacketType, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::bytes::{Buf, Bytes, BytesMut};

/// Both brokers speak MQTT 3.1.1 equally well; the throughput and latency
/// scenarios use it.
pub const VERSION: ProtocolVersion = ProtocolVersion::V311;

/// Keep alive of the traffic scenarios' clients, in seconds: long enough
/// that no PINGREQ falls due during a run, and not 0 (no keep alive), which
/// rumqttd refuses.
pub const RUN_KEEPALIVE: u16 = 600;
/// Largest packet we accept from a broker.
const MAX_PACKET: usize = 1 << 20;
/// Spare room kept in a read buffer before each read.
const READ_SPARE: usize = 64 * 1024;
/// QoS 0 publishes encoded once and written again and again per `write_all`.
const QOS0_BATCH: u64 = 512;

/// Reads once into `rbuf`, keeping `spare` bytes of room; false at EOF.
pub(crate) async fn fill(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    spare: usize,
) -> anyhow::Result<bool> {
    if rbuf.capacity() - rbuf.len() < spare {
        rbuf.reserve(spare);
    }
    Ok(stream.read_buf(rbuf).await? > 0)
}

pub(crate) fn decode(rbuf: &mut BytesMut) -> anyhow::Result<Option<Packet>> {
    codec::decode(rbuf, VERSION, MAX_PACKET).context("decoding a packet from the broker")
}

fn publish_packet(topic: &str, payload: Bytes, qos: QoS) -> anyhow::Result<Packet> {
    let mut publish = Publish::new(MqttStr::new(topic)?, payload);
    publish.qos = qos;
    if qos != QoS::AtMostOnce {
        publish.packet_id = PacketId::new(1);
    }
    Ok(Packet::Publish(publish))
}

/// The next packet id after `id`, skipping 0. Publishers keep far fewer
/// than 65,535 messages in flight and brokers acknowledge in order, so an id
/// is always free again by the time the counter wraps round to it.
fn next_packet_id(id: &mut u16) -> PacketId {
    *id = id.wrapping_add(1);
    if *id == 0 {
        *id = 1;
    }
    PacketId::new(*id).expect("non-zero")
}

fn subscribe_packet(filter: &str, qos: QoS) -> anyhow::Result<Packet> {
    Ok(Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            topic_filter: MqttStr::new(filter)?,
            options: SubscriptionOptions::new(qos),
        }],
    }))
}

pub(crate) fn check_suback(packet: Packet) -> anyhow::Result<()> {
    match packet {
        Packet::SubAck(s) if s.reason_codes.iter().all(|c| !c.is_error()) => Ok(()),
        other => bail!("expected a granting SUBACK, got {other:?}"),
    }
}

pub(crate) fn check_connack(packet: Packet) -> anyhow::Result<()> {
    match packet {
        Packet::ConnAck(a) if a.reason_code == ReasonCode::SUCCESS => Ok(()),
        other => bail!("expected a successful CONNACK, got {other:?}"),
    }
}

/// Removes the complete QoS 0 PUBLISH frames at the front of `rbuf` and
/// returns how many there were. It reads only each fixed header (type,
/// flags, Remaining Length), which keeps a subscriber receiving millions of
/// messages a second cheap; it stops at any other packet, or at a frame that
/// is incomplete or odd, for [`codec::decode`] to handle (and judge).
fn skip_qos0_publishes(rbuf: &mut BytesMut) -> u64 {
    let (mut pos, mut count) = (0, 0);
    // Flags 0b000x: DUP 0, QoS 0, any retain.
    while let Ok(Some((PacketType::Publish, flags, len))) = codec::peek_frame(&rbuf[pos..], VERSION)
        && flags & 0b1110 == 0
        && rbuf.len() - pos >= len
    {
        pos += len;
        count += 1;
    }
    rbuf.advance(pos);
    count
}

/// One MQTT connection of the async load generator.
pub struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Client {
    /// Connects, sends CONNECT (clean session) and waits for CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
    ) -> anyhow::Result<Self> {
        Self::connect_from(None, addr, client_id, keep_alive).await
    }

    /// [`Client::connect`] from a given local address (any 127.x.y.z is
    /// loopback). Thousands of connections from one address to one port
    /// make the kernel's ephemeral-port search in connect(2) quadratic
    /// (`__inet_hash_connect`), which would make the load generator the
    /// bottleneck of a connection ramp; spreading the source addresses, as
    /// real devices are spread, avoids it.
    pub async fn connect_from(
        source: Option<IpAddr>,
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
    ) -> anyhow::Result<Self> {
        Self::open(source, addr, client_id, keep_alive, None).await
    }

    /// [`Client::connect`] with a user name and password (e.g. an API
    /// key's `key:ID` and secret), for a tenant other than the anonymous
    /// clients' one.
    pub async fn connect_as(
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        Self::open(
            None,
            addr,
            client_id,
            keep_alive,
            Some((username, password)),
        )
        .await
    }

    async fn open(
        source: Option<IpAddr>,
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
        login: Option<(&str, &str)>,
    ) -> anyhow::Result<Self> {
        let stream = match source {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await
            }
        }
        .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
        };
        let mut connect = Connect::new(VERSION, MqttStr::new(client_id)?, keep_alive);
        if let Some((username, password)) = login {
            connect.username = Some(MqttStr::new(username)?);
            connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
        }
        client.send(&connect.into()).await?;
        check_connack(client.recv().await?)?;
        Ok(client)
    }

    /// The connection without its buffers, for holding many idle ones.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        codec::encode(packet, VERSION, &mut self.wbuf)?;
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.rbuf)? {
                return Ok(packet);
            }
            if !fill(&mut self.stream, &mut self.rbuf, 4096).await? {
                bail!("the broker closed the connection");
            }
        }
    }

    /// Subscribes to one filter and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        self.send(&subscribe_packet(filter, qos)?).await?;
        check_suback(self.recv().await?)
    }

    /// Receives forever, adding each PUBLISH to `received` and acknowledging
    /// QoS 1 ones: one read, every complete packet handled, one write. QoS 0
    /// PUBLISHes are counted from their fixed header alone
    /// ([`skip_qos0_publishes`]); everything else goes through the codec.
    pub async fn run_subscriber(mut self, received: Arc<AtomicU64>) -> anyhow::Result<()> {
        loop {
            let mut got = 0;
            loop {
                got += skip_qos0_publishes(&mut self.rbuf);
                let Some(packet) = decode(&mut self.rbuf)? else {
                    break;
                };
                match packet {
                    Packet::Publish(p) => {
                        got += 1;
                        if let Some(id) = p.packet_id {
                            codec::encode(&Packet::PubAck(Ack::new(id)), VERSION, &mut self.wbuf)?;
                        }
                    }
                    other => bail!("subscriber got an unexpected {other:?}"),
                }
            }
            received.fetch_add(got, Ordering::Relaxed);
            if !self.wbuf.is_empty() {
                self.stream.write_all(&self.wbuf).await?;
                self.wbuf.clear();
            }
            if !fill(&mut self.stream, &mut self.rbuf, READ_SPARE).await? {
                bail!("the broker closed a subscriber connection");
            }
        }
    }

    /// Publishes QoS 0 as fast as TCP takes it: the same batch of
    /// pre-encoded packets, written with one `write_all` each time.
    pub async fn run_publisher_qos0(
        self,
        topic: &str,
        payload: Bytes,
        sent: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let batch = vec![payload; QOS0_BATCH as usize];
        self.run_publisher_qos0_cycle(topic, &batch, sent).await
    }

    /// [`Client::run_publisher_qos0`] with payloads that differ: one
    /// PUBLISH of each, in order, per `write_all`, again and again.
    pub async fn run_publisher_qos0_cycle(
        mut self,
        topic: &str,
        payloads: &[Bytes],
        sent: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        if payloads.is_empty() {
            bail!("a QoS 0 publisher needs at least one payload");
        }
        let mut batch = BytesMut::new();
        for payload in payloads {
            let packet = publish_packet(topic, payload.clone(), QoS::AtMostOnce)?;
            codec::encode(&packet, VERSION, &mut batch)?;
        }
        let batch = batch.freeze();
        let n = payloads.len() as u64;
        loop {
            self.stream.write_all(&batch).await?;
            sent.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// [`Client::run_publisher_qos0_cycle`] at `rate` messages per second
    /// on average: every millisecond it writes, in one `write_all`, the
    /// messages due since the start (the next ones of the cycle), so that
    /// a late tick catches up and the rate holds over any window.
    pub async fn run_publisher_qos0_paced(
        mut self,
        topic: &str,
        payloads: &[Bytes],
        rate: f64,
        sent: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        if payloads.is_empty() || rate <= 0.0 {
            bail!("a paced QoS 0 publisher needs payloads and a positive rate");
        }
        let packets = payloads
            .iter()
            .map(|p| {
                let mut encoded = BytesMut::new();
                codec::encode(
                    &publish_packet(topic, p.clone(), QoS::AtMostOnce)?,
                    VERSION,
                    &mut encoded,
                )?;
                Ok(encoded.freeze())
            })
            .collect::<anyhow::Result<Vec<Bytes>>>()?;
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let (mut done, mut next) = (0u64, 0usize);
        let mut batch = BytesMut::new();
        loop {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            let count = due.saturating_sub(done);
            for _ in 0..count {
                batch.extend_from_slice(&packets[next]);
                next = (next + 1) % packets.len();
            }
            if count > 0 {
                self.stream.write_all(&batch).await?;
                done = due;
                sent.fetch_add(count, Ordering::Relaxed);
                batch.clear();
            }
        }
    }

    /// Publishes QoS 1 keeping `window` messages unacknowledged: tops the
    /// window up in one write, then reads and counts every PUBACK that has
    /// arrived.
    pub async fn run_publisher_qos1(
        mut self,
        topic: &str,
        payload: Bytes,
        window: usize,
        sent: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let mut packet = publish_packet(topic, payload, QoS::AtLeastOnce)?;
        let mut id = 0u16;
        let mut inflight = 0usize;
        // Top up as soon as any PUBLISH is acknowledged. Waiting for several
        // acks to batch writes would save us CPU, but it stalls a broker that
        // leaves Nagle's algorithm on (mosquitto by default): its second
        // PUBACK waits for our TCP ACK, which our kernel delays up to 40 ms
        // when we have nothing to send.
        loop {
            let mut n = 0;
            while inflight < window {
                if let Packet::Publish(p) = &mut packet {
                    p.packet_id = Some(next_packet_id(&mut id));
                }
                codec::encode(&packet, VERSION, &mut self.wbuf)?;
                inflight += 1;
                n += 1;
            }
            if n > 0 {
                self.stream.write_all(&self.wbuf).await?;
                self.wbuf.clear();
                sent.fetch_add(n, Ordering::Relaxed);
            }
            if !fill(&mut self.stream, &mut self.rbuf, READ_SPARE).await? {
                bail!("the broker closed a publisher connection");
            }
            while let Some(packet) = decode(&mut self.rbuf)? {
                match packet {
                    Packet::PubAck(_) => inflight = inflight.saturating_sub(1),
                    other => bail!("publisher got an unexpected {other:?}"),
                }
            }
        }
    }
}

/// What one device's QoS 1 publisher has done so far; the bench reads it
/// while the publisher runs.
#[derive(Debug, Default)]
pub struct PublishCounts {
    /// PUBLISHes written.
    pub sent: AtomicU64,
    /// PUBACKs with a success reason code (in MQTT 3.1.1, every PUBACK).
    pub acked: AtomicU64,
    /// PUBACKs with a failure reason code (0x80 and above), by code. Only
    /// MQTT 5 can refuse a message; a 3.1.1 broker acknowledges silently.
    pub refused: Mutex<BTreeMap<u8, u64>>,
}

impl PublishCounts {
    fn refuse(&self, reason: ReasonCode) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        *refused.entry(reason.0).or_default() += 1;
    }
}

/// A device's connection that publishes QoS 1 messages whose payloads it
/// generates one by one (each with its own timestamp and values), in
/// either protocol version, logged in with a user name. Unlike [`Client`]
/// it can speak MQTT 5, so that a broker's refusal of a message (a PUBACK
/// reason code) is seen rather than lost.
pub struct DevicePublisher {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    version: ProtocolVersion,
}

impl DevicePublisher {
    /// Connects, sends CONNECT (clean start, keep alive 0, `username` and
    /// no password) and waits for a successful CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
        username: &str,
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut publisher = DevicePublisher {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            version,
        };
        let mut connect = Connect::new(version, MqttStr::new(client_id)?, 0);
        connect.username = Some(MqttStr::new(username)?);
        codec::encode(&connect.into(), version, &mut publisher.wbuf)?;
        publisher.flush().await?;
        loop {
            if let Some(packet) = publisher.decode()? {
                return check_connack(packet).map(|()| publisher);
            }
            if !fill(&mut publisher.stream, &mut publisher.rbuf, 4096).await? {
                bail!("the broker closed the connection before CONNACK");
            }
        }
    }

    fn decode(&mut self) -> anyhow::Result<Option<Packet>> {
        codec::decode(&mut self.rbuf, self.version, MAX_PACKET)
            .context("decoding a packet from the broker")
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Publishes QoS 1 to `topic`, keeping `window` messages unacknowledged,
    /// each payload written by `next_payload` into an empty buffer. Tops the
    /// window up in one write whenever PUBACKs arrive, as
    /// [`Client::run_publisher_qos1`] does. Once `stop` is set it sends
    /// nothing more and returns when every message in flight is
    /// acknowledged, so that the counts are final.
    pub async fn run_qos1(
        mut self,
        topic: &str,
        window: usize,
        mut next_payload: impl FnMut(&mut Vec<u8>) -> anyhow::Result<()>,
        counts: Arc<PublishCounts>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<()> {
        let topic = MqttStr::new(topic)?;
        let mut payload = Vec::new();
        let mut id = 0u16;
        let mut inflight = 0usize;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let mut n = 0;
            while !stopping && inflight < window {
                payload.clear();
                next_payload(&mut payload)?;
                let mut publish = Publish::new(topic.clone(), Bytes::copy_from_slice(&payload));
                publish.qos = QoS::AtLeastOnce;
                publish.packet_id = Some(next_packet_id(&mut id));
                codec::encode(&Packet::Publish(publish), self.version, &mut self.wbuf)?;
                inflight += 1;
                n += 1;
            }
            if n > 0 {
                self.flush().await?;
                counts.sent.fetch_add(n, Ordering::Relaxed);
            }
            if stopping && inflight == 0 {
                return Ok(());
            }
            if !fill(&mut self.stream, &mut self.rbuf, READ_SPARE).await? {
                bail!("the broker closed the connection of {topic}");
            }
            let mut acked = 0;
            while let Some(packet) = self.decode()? {
                match packet {
                    Packet::PubAck(ack) => {
                        inflight = inflight.saturating_sub(1);
                        if ack.reason_code.is_error() {
                            counts.refuse(ack.reason_code);
                        } else {
                            acked += 1;
                        }
                    }
                    Packet::Disconnect(d) => {
                        bail!(
                            "the broker disconnected {topic} with reason 0x{:02x}",
                            d.reason_code.0
                        )
                    }
                    other => bail!("publisher of {topic} got an unexpected {other:?}"),
                }
            }
            counts.acked.fetch_add(acked, Ordering::Relaxed);
        }
    }
}

/// The process-wide monotonic clock that latency payloads carry: nanoseconds
/// since `epoch`.
fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A blocking MQTT connection for the latency scenario.
struct SyncClient {
    stream: std::net::TcpStream,
    rbuf: BytesMut,
}

impl SyncClient {
    fn connect(addr: SocketAddr, client_id: &str) -> anyhow::Result<Self> {
        let mut stream =
            std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut wbuf = BytesMut::new();
        codec::encode(
            &Connect::new(VERSION, MqttStr::new(client_id)?, RUN_KEEPALIVE).into(),
            VERSION,
            &mut wbuf,
        )?;
        stream.write_all(&wbuf)?;
        let mut client = SyncClient {
            stream,
            rbuf: BytesMut::new(),
        };
        check_connack(client.recv()?)?;
        Ok(client)
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.rbuf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads more bytes, each read waiting at most the socket's read
    /// timeout; `Ok(false)` once `stop` is set and nothing arrived.
    fn fill_until(&mut self, stop: &AtomicBool, who: &str) -> anyhow::Result<bool> {
        loop {
            match self.fill() {
                Ok(0) => bail!("the broker closed the {who}"),
                Ok(_) => return Ok(true),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.rbuf)? {
                return Ok(packet);
            }
            if self.fill()? == 0 {
                bail!("the broker closed the connection");
            }
        }
    }
}

/// What the latency run measured.
pub struct LatencyRun {
    /// End-to-end latencies (publisher's send to subscriber's receive) of
    /// the messages sent during the measurement window, in nanoseconds,
    /// sorted.
    pub latencies_ns: Vec<u64>,
    /// The same samples in arrival order, as (send time since the start of
    /// the window, latency), both in nanoseconds.
    pub trace: Vec<(u64, u64)>,
    /// Messages sent during the measurement window.
    pub sent_in_window: u64,
}

/// Latency at a steady rate: one QoS 1 publisher sending `rate` messages/s
/// for `warmup + measure`, one QoS 1 subscriber. Each payload starts with
/// the send time; the subscriber records receive time minus send time.
/// Blocking: three OS threads (publisher, its PUBACK reader, subscriber),
/// which inherit the caller's CPU pin.
pub fn latency(
    addr: SocketAddr,
    id_prefix: &str,
    topic: &str,
    rate: u32,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<LatencyRun> {
    let epoch = Instant::now();
    let mut subscriber = SyncClient::connect(addr, &format!("{id_prefix}-lat-sub"))?;
    let mut wbuf = BytesMut::new();
    codec::encode(
        &subscribe_packet(topic, QoS::AtLeastOnce)?,
        VERSION,
        &mut wbuf,
    )?;
    subscriber.stream.write_all(&wbuf)?;
    check_suback(subscriber.recv()?)?;
    let publisher = SyncClient::connect(addr, &format!("{id_prefix}-lat-pub"))?;

    let period = Duration::from_secs(1) / rate;
    let total = u64::from(rate) * (warmup + measure).as_secs();
    // Send times are offsets from `epoch`; the window is the part after the
    // warm-up, from the first send.
    let start = nanos_since(epoch) + 1_000_000;
    let window_start = start + u64::try_from(warmup.as_nanos())?;
    let window_end = window_start + u64::try_from(measure.as_nanos())?;
    let stop = AtomicBool::new(false);

    std::thread::scope(|s| -> anyhow::Result<LatencyRun> {
        // Subscriber: read, timestamp, acknowledge.
        subscriber
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        let sub = s.spawn(|| -> anyhow::Result<Vec<(u64, u64)>> {
            let mut latencies = Vec::with_capacity(usize::try_from(total)?);
            let mut acks = BytesMut::new();
            let mut client = subscriber;
            while client.fill_until(&stop, "latency subscriber")? {
                let now = nanos_since(epoch);
                while let Some(packet) = decode(&mut client.rbuf)? {
                    let Packet::Publish(p) = packet else {
                        bail!("latency subscriber got an unexpected {packet:?}");
                    };
                    let sent = u64::from_le_bytes(p.payload[..8].try_into()?);
                    if (window_start..window_end).contains(&sent) {
                        latencies.push((sent - window_start, now.saturating_sub(sent)));
                    }
                    if let Some(id) = p.packet_id {
                        codec::encode(&Packet::PubAck(Ack::new(id)), VERSION, &mut acks)?;
                    }
                }
                if !acks.is_empty() {
                    client.stream.write_all(&acks)?;
                    acks.clear();
                }
            }
            Ok(latencies)
        });

        // The publisher's PUBACKs: read and dropped, so its window never fills.
        let ack_reader = SyncClient {
            stream: publisher.stream.try_clone()?,
            rbuf: BytesMut::new(),
        };
        ack_reader
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        let acks = s.spawn(|| -> anyhow::Result<()> {
            let mut client = ack_reader;
            while client.fill_until(&stop, "latency publisher")? {
                while let Some(packet) = decode(&mut client.rbuf)? {
                    if !matches!(packet, Packet::PubAck(_)) {
                        bail!("latency publisher got an unexpected {packet:?}");
                    }
                }
            }
            Ok(())
        });

        // The publisher, on this thread: absolute deadlines every `period`,
        // so the average rate holds even when one sleep overshoots.
        // Sleeps overshoot by the timer slack (50 µs by default); 1 µs
        // keeps the pacing close. Failure only costs pacing accuracy.
        let _ = nix::sys::prctl::set_timerslack(1_000);
        let mut stream = publisher.stream;
        let mut packet = publish_packet(topic, Bytes::new(), QoS::AtLeastOnce)?;
        let mut payload = vec![0u8; super::mqtt::PAYLOAD_LEN];
        let mut out = BytesMut::new();
        let mut id = 0u16;
        let mut sent_in_window = 0u64;
        let mut result = Ok(());
        for k in 0..total {
            let due = start + k * u64::try_from(period.as_nanos())?;
            let now = nanos_since(epoch);
            if now < due {
                std::thread::sleep(Duration::from_nanos(due - now));
            }
            let sent = nanos_since(epoch);
            if (window_start..window_end).contains(&sent) {
                sent_in_window += 1;
            }
            payload[..8].copy_from_slice(&sent.to_le_bytes());
            if let Packet::Publish(p) = &mut packet {
                p.packet_id = Some(next_packet_id(&mut id));
                p.payload = Bytes::copy_from_slice(&payload);
            }
            codec::encode(&packet, VERSION, &mut out)?;
            if let Err(e) = stream.write_all(&out) {
                result = Err(e);
                break;
            }
            out.clear();
        }
        // Let the last messages arrive, then stop the readers.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let latencies = sub.join().expect("subscriber thread panicked");
        acks.join().expect("ack reader thread panicked")?;
        result.context("writing a latency publish")?;
        let trace = latencies?;
        let mut latencies_ns: Vec<u64> = trace.iter().map(|&(_, l)| l).collect();
        latencies_ns.sort_unstable();
        Ok(LatencyRun {
            latencies_ns,
            trace,
            sent_in_window,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_exactly_the_complete_qos0_publishes() {
        let payload = Bytes::from(vec![7u8; 200]);
        let qos0 = publish_packet("a/b", payload.clone(), QoS::AtMostOnce).unwrap();
        let qos1 = publish_packet("a/b", payload, QoS::AtLeastOnce).unwrap();
        let mut buf = BytesMut::new();
        for _ in 0..3 {
            codec::encode(&qos0, VERSION, &mut buf).unwrap();
        }
        codec::encode(&qos1, VERSION, &mut buf).unwrap();
        codec::encode(&qos0, VERSION, &mut buf).unwrap();
        let whole = buf.len();
        buf.truncate(whole - 1);
        // Three QoS 0 frames (two-byte Remaining Length), then the QoS 1
        // one stops the scan.
        assert_eq!(skip_qos0_publishes(&mut buf), 3);
        assert!(
            matches!(decode(&mut buf).unwrap(), Some(Packet::Publish(p)) if p.qos == QoS::AtLeastOnce)
        );
        // The last frame is one byte short: nothing is taken.
        let left = buf.len();
        assert_eq!(skip_qos0_publishes(&mut buf), 0);
        assert_eq!(buf.len(), left);
    }
}
