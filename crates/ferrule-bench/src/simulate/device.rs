//! One simulated device: an MQTT 5 connection logged in with the device's
//! access token, the way a real sensor would use it.
//!
//! - It takes a reading every period ([`Sensors`]) and publishes it at
//!   QoS 1 on `devices/{id}/telemetry` as `{"ts", "values"}`, with an
//!   alert on `devices/{id}/events/alert` now and then; at most `window`
//!   messages await their PUBACK, the rest wait in a bounded buffer.
//! - It reports its state (`devices/{id}/state/reported`: firmware,
//!   interval, boot count) when it connects and when it changes.
//! - It answers commands on `devices/{id}/commands/+` (`reboot`, `ping`;
//!   anything else fails with a reason), on the MQTT 5 response topic with
//!   the correlation data, and adopts desired state from its delta (a
//!   desired `interval_ms` changes how often it reads).
//! - Now and then it drops off the network (after its messages in flight
//!   are acknowledged, it closes the socket without a DISCONNECT), stays
//!   away a few seconds while it keeps measuring into its buffer, then
//!   reconnects and catches up: every reading carries the time it was
//!   taken, so history has no gap.
//!
//! A connection lost for any other reason is an error; the device
//! reconnects with backoff and sends again what was not acknowledged.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ferrule_mqtt::codec::{
    self, Ack, Connect, Disconnect, MqttStr, Packet, PacketId, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_util::bytes::{Bytes, BytesMut};
use tokio_util::sync::CancellationToken;

use super::sensors::Sensors;
use super::tally::{Kind, Tally};
use crate::signal::Rng;

const VERSION: ProtocolVersion = ProtocolVersion::V5;
/// The firmware version the devices report.
pub const FIRMWARE: &str = "sim-1.4.2";
/// Keep alive asked for, in seconds (the server may lower it).
const KEEP_ALIVE: u16 = 60;
/// Largest packet accepted from the server.
const MAX_PACKET: usize = 256 * 1024;
/// Readings kept while offline or behind; older ones are discarded
/// (counted) beyond it, as a real device's ring buffer would.
const BUFFER: usize = 10_000;
/// Longest wait for a CONNACK or SUBACK.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait, when dropping off on purpose, for the messages in flight
/// to be acknowledged.
const DROP_DRAIN: Duration = Duration::from_secs(5);
/// Time offline after a drop: between these.
const OFFLINE_MIN: Duration = Duration::from_secs(2);
const OFFLINE_MAX: Duration = Duration::from_secs(10);
/// Reconnect backoff after a failure: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A desired `interval_ms` outside this range is not adopted.
const INTERVAL_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400_000;

/// What one device is to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub token: String,
    pub mqtt: SocketAddr,
    /// When to connect the first time (connects are spread out).
    pub connect_at: Instant,
    /// Time between readings.
    pub period: Duration,
    /// Readings to take; `None`: until stopped.
    pub readings: Option<u64>,
    /// QoS 1 messages awaiting their PUBACK, at most.
    pub window: usize,
    /// Chance per minute that the device drops off for a while.
    pub drop_per_minute: f64,
    pub seed: u64,
}

/// A message to publish, kept until its PUBACK.
#[derive(Debug, Clone)]
struct Outgoing {
    kind: Kind,
    topic: String,
    payload: Bytes,
    /// MQTT 5 correlation data of a command reply.
    correlation: Option<Bytes>,
    /// Whether it went out before, on a connection that ended before its
    /// PUBACK: counted as sent once, and as a retransmission again.
    retry: bool,
}

/// An open connection.
struct Link {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The server's Receive Maximum bounds our window.
    window: usize,
    keep_alive: Option<Duration>,
    last_write: Instant,
}

/// What woke the device up.
enum Wake {
    Read(std::io::Result<usize>),
    Reading,
    Ping,
    Drop,
    DropDrained,
    Stop,
}

/// Why a connection ended.
enum Ended {
    /// On purpose: back after this long.
    Dropped(Duration),
    /// Lost: an error was counted; reconnect with backoff.
    Lost,
    /// Everything was read, sent and acknowledged.
    Finished,
    /// The run was stopped.
    Stopped,
}

/// The device between connections: sensors, schedule, buffers.
struct Device {
    plan: Plan,
    tally: Arc<Tally>,
    rng: Rng,
    sensors: Sensors,
    /// Readings and events in the order taken.
    buffer: VecDeque<Outgoing>,
    /// State reports and command replies go before readings.
    urgent: VecDeque<Outgoing>,
    inflight: HashMap<u16, Outgoing>,
    next_packet_id: u16,
    next_reading: Instant,
    period: Duration,
    readings_left: Option<u64>,
    /// The wall clock at `clock_base`, to stamp readings with the time
    /// they were due.
    clock_base: (Instant, i64),
    reported: serde_json::Map<String, Value>,
    boot_count: u64,
}

/// Runs one device until it has taken and delivered all its readings, or
/// until `stop`; everything it does is counted in `tally`.
pub async fn run(plan: Plan, tally: Arc<Tally>, stop: CancellationToken) {
    let mut rng = Rng::new(plan.seed);
    let sensors = Sensors::new(Rng::new(rng.next_u64()));
    // The first reading comes at a random point of the first period, so
    // that devices connected together do not publish together.
    let first = plan.connect_at + plan.period.mul_f64(rng.uniform());
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut device = Device {
        period: plan.period,
        readings_left: plan.readings,
        reported: serde_json::Map::new(),
        tally,
        rng,
        sensors,
        buffer: VecDeque::new(),
        urgent: VecDeque::new(),
        inflight: HashMap::new(),
        next_packet_id: 0,
        next_reading: first,
        clock_base: (Instant::now(), wall_ms),
        boot_count: 1,
        plan,
    };
    device.reported = device.initial_state();
    tokio::select! {
        () = sleep_until(device.plan.connect_at) => {}
        () = stop.cancelled() => return,
    }
    device.live(stop).await;
}

impl Device {
    fn initial_state(&self) -> serde_json::Map<String, Value> {
        let mut state = serde_json::Map::new();
        state.insert("firmware".into(), json!(FIRMWARE));
        state.insert("interval_ms".into(), json!(self.period.as_millis() as u64));
        state.insert("boot_count".into(), json!(self.boot_count));
        state
    }

    async fn live(&mut self, stop: CancellationToken) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            if stop.is_cancelled() {
                self.give_up_buffered();
                return;
            }
            let link = match self.connect().await {
                Ok(link) => link,
                Err(Refusal::Fatal(e)) => {
                    self.tally
                        .error("connect refused", format!("{}: {e:#}", self.plan.id));
                    self.give_up_buffered();
                    return;
                }
                Err(Refusal::Retry(e)) => {
                    self.tally
                        .error("connect failed", format!("{}: {e:#}", self.plan.id));
                    if !self.wait_offline(backoff, &stop).await {
                        self.give_up_buffered();
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            self.tally.connected();
            let ended = self.session(link, &stop).await;
            self.tally.disconnected();
            match ended {
                Ended::Finished => return,
                Ended::Stopped => {
                    self.give_up_buffered();
                    return;
                }
                Ended::Dropped(offline) => {
                    self.tally.dropped();
                    backoff = BACKOFF_FIRST;
                    if !self.wait_offline(offline, &stop).await {
                        self.give_up_buffered();
                        return;
                    }
                }
                Ended::Lost => {
                    if !self.wait_offline(backoff, &stop).await {
                        self.give_up_buffered();
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Keeps measuring while offline for `offline`; false when stopped.
    /// Comes back early once the readings are all taken, to deliver them.
    async fn wait_offline(&mut self, offline: Duration, stop: &CancellationToken) -> bool {
        let until = Instant::now() + offline;
        loop {
            let measuring = self.readings_left != Some(0);
            tokio::select! {
                () = stop.cancelled() => return false,
                () = sleep_until(until) => return true,
                () = sleep_until(self.next_reading), if measuring => self.take_readings(),
            }
            if self.readings_left == Some(0) {
                return true;
            }
        }
    }

    /// What is left when the run stops: readings never published.
    fn give_up_buffered(&mut self) {
        let unsent = self.buffer.len() + self.urgent.len() + self.inflight.len();
        self.tally.unsent(unsent as u64);
        self.buffer.clear();
        self.urgent.clear();
        self.inflight.clear();
    }

    /// Takes every reading that is due, into the buffer.
    fn take_readings(&mut self) {
        let now = Instant::now();
        while self.readings_left != Some(0) && self.next_reading <= now {
            let due = self.next_reading;
            let reading = self.sensors.read(self.period.as_secs_f64());
            let ts = self.clock_base.1 + due.duration_since(self.clock_base.0).as_millis() as i64;
            let id = &self.plan.id;
            let payload = json!({"ts": ts, "values": reading.values});
            self.buffer.push_back(Outgoing {
                kind: Kind::Telemetry,
                topic: format!("devices/{id}/telemetry"),
                payload: Bytes::from(payload.to_string()),
                correlation: None,
                retry: false,
            });
            if let Some(mut alert) = reading.alert {
                alert["ts"] = json!(ts);
                self.buffer.push_back(Outgoing {
                    kind: Kind::Event,
                    topic: format!("devices/{id}/events/alert"),
                    payload: Bytes::from(alert.to_string()),
                    correlation: None,
                    retry: false,
                });
            }
            if let Some(left) = &mut self.readings_left {
                *left -= 1;
            }
            self.next_reading += self.period;
        }
        let excess = self.buffer.len().saturating_sub(BUFFER);
        if excess > 0 {
            self.buffer.drain(..excess);
            self.tally.discarded(excess as u64);
        }
    }

    async fn connect(&mut self) -> Result<Link, Refusal> {
        let stream = TcpStream::connect(self.plan.mqtt)
            .await
            .with_context(|| format!("connecting to {}", self.plan.mqtt))
            .map_err(Refusal::Retry)?;
        stream
            .set_nodelay(true)
            .context("TCP_NODELAY")
            .map_err(Refusal::Retry)?;
        let mut link = Link {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::new(),
            window: self.plan.window,
            keep_alive: Some(Duration::from_secs(KEEP_ALIVE.into())),
            last_write: Instant::now(),
        };
        let mut connect = Connect::new(VERSION, str_of(&self.plan.id)?, KEEP_ALIVE);
        connect.username = Some(str_of(&self.plan.token)?);
        encode(&connect.into(), &mut link.wbuf).map_err(Refusal::Retry)?;
        link.flush().await.map_err(Refusal::Retry)?;
        let connack = match tokio::time::timeout(HANDSHAKE_TIMEOUT, link.recv()).await {
            Ok(Ok(Packet::ConnAck(a))) => a,
            Ok(Ok(other)) => {
                return Err(Refusal::Retry(anyhow::anyhow!(
                    "expected CONNACK, got {:?}",
                    other.packet_type()
                )));
            }
            Ok(Err(e)) => return Err(Refusal::Retry(e)),
            Err(_) => return Err(Refusal::Retry(anyhow::anyhow!("no CONNACK within 15 s"))),
        };
        if connack.reason_code != ReasonCode::SUCCESS {
            let code = connack.reason_code.0;
            let reason = connack
                .properties
                .reason_string
                .as_ref()
                .map_or(String::new(), |r| format!(" ({})", r.as_str()));
            let message = anyhow::anyhow!("CONNACK 0x{code:02x}{reason}");
            // Wrong credentials, not authorized, banned: trying again
            // cannot help. Busy, unavailable, quota: it may.
            return Err(if matches!(code, 0x84 | 0x85 | 0x86 | 0x87 | 0x8A | 0x8C) {
                Refusal::Fatal(message)
            } else {
                Refusal::Retry(message)
            });
        }
        if let Some(max) = connack.properties.receive_maximum {
            link.window = link.window.min(usize::from(max.get()));
        }
        if let Some(secs) = connack.properties.server_keep_alive {
            link.keep_alive = (secs > 0).then(|| Duration::from_secs(secs.into()));
        }
        let id = &self.plan.id;
        let subscribe = Subscribe {
            packet_id: PacketId::new(1).expect("non-zero"),
            properties: Default::default(),
            subscriptions: [
                format!("devices/{id}/commands/+"),
                format!("devices/{id}/state/delta"),
            ]
            .iter()
            .map(|f| {
                Ok(Subscription {
                    topic_filter: str_of(f)?,
                    options: SubscriptionOptions::new(QoS::AtLeastOnce),
                })
            })
            .collect::<Result<_, Refusal>>()?,
        };
        encode(&Packet::Subscribe(subscribe), &mut link.wbuf).map_err(Refusal::Retry)?;
        link.flush().await.map_err(Refusal::Retry)?;
        // Packets after the SUBACK (a retained delta, a waiting command)
        // stay in the buffer for the session.
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, link.recv()).await {
            Ok(Ok(Packet::SubAck(s))) if s.reason_codes.iter().all(|c| !c.is_error()) => {}
            Ok(Ok(Packet::SubAck(s))) => {
                let codes: Vec<String> = s
                    .reason_codes
                    .iter()
                    .map(|c| format!("0x{:02x}", c.0))
                    .collect();
                return Err(Refusal::Fatal(anyhow::anyhow!(
                    "subscribing to its commands and delta was refused: {}",
                    codes.join(", ")
                )));
            }
            Ok(Ok(other)) => {
                return Err(Refusal::Retry(anyhow::anyhow!(
                    "expected SUBACK, got {:?}",
                    other.packet_type()
                )));
            }
            Ok(Err(e)) => return Err(Refusal::Retry(e)),
            Err(_) => return Err(Refusal::Retry(anyhow::anyhow!("no SUBACK within 15 s"))),
        }
        // What was in flight on a lost connection goes again, first.
        let mut resend: Vec<(u16, Outgoing)> = self.inflight.drain().collect();
        resend.sort_by_key(|(id, _)| *id);
        for (_, mut message) in resend.into_iter().rev() {
            message.retry = true;
            self.urgent.push_front(message);
        }
        self.report_state(self.reported.clone());
        Ok(link)
    }

    /// One connection, until it ends.
    async fn session(&mut self, mut link: Link, stop: &CancellationToken) -> Ended {
        let mut drop_at = self.next_drop();
        let mut dropping: Option<Instant> = None;
        let mut stopping = false;
        if let Err(e) = self.pump(&mut link, dropping.is_some()).await {
            return self.lost(e);
        }
        loop {
            let measuring = self.readings_left != Some(0) && !stopping;
            let ping_at = link.keep_alive.map(|k| link.last_write + k / 2);
            let wake = tokio::select! {
                r = link.stream.read_buf(&mut link.rbuf) => Wake::Read(r),
                () = sleep_until(self.next_reading), if measuring => Wake::Reading,
                () = sleep_until(ping_at.unwrap_or_else(Instant::now)), if ping_at.is_some() => Wake::Ping,
                () = sleep_until(drop_at.unwrap_or_else(Instant::now)), if drop_at.is_some() && dropping.is_none() && !stopping => Wake::Drop,
                () = sleep_until(dropping.unwrap_or_else(Instant::now)), if dropping.is_some() => Wake::DropDrained,
                () = stop.cancelled(), if !stopping => Wake::Stop,
            };
            match wake {
                Wake::Read(Ok(0)) => {
                    return self.lost(anyhow::anyhow!("the server closed the connection"));
                }
                Wake::Read(Ok(_)) => {
                    if let Err(e) = self.handle_packets(&mut link) {
                        return self.lost(e);
                    }
                }
                Wake::Read(Err(e)) => return self.lost(e.into()),
                Wake::Reading => self.take_readings(),
                Wake::Ping => {
                    if let Err(e) = encode(&Packet::PingReq, &mut link.wbuf) {
                        return self.lost(e);
                    }
                }
                Wake::Drop => {
                    dropping = Some(Instant::now() + DROP_DRAIN);
                    drop_at = None;
                }
                Wake::DropDrained => {
                    // Gone with messages still in flight: they go again
                    // after the reconnect.
                    return Ended::Dropped(self.offline_time());
                }
                Wake::Stop => {
                    // Readings not yet published stay unsent; what is in
                    // flight is waited for (the caller bounds the wait).
                    stopping = true;
                    self.readings_left = Some(0);
                    let unsent = self.buffer.len() as u64;
                    self.buffer.clear();
                    self.tally.unsent(unsent);
                }
            }
            if let Err(e) = self.pump(&mut link, dropping.is_some() || stopping).await {
                return self.lost(e);
            }
            let idle = self.inflight.is_empty() && self.urgent.is_empty();
            if dropping.is_some() && self.inflight.is_empty() {
                // Off the network without a word, as a device losing power
                // or signal would be.
                return Ended::Dropped(self.offline_time());
            }
            if idle && (stopping || (self.readings_left == Some(0) && self.buffer.is_empty())) {
                let _ = encode(
                    &Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
                    &mut link.wbuf,
                );
                let _ = link.flush().await;
                return if stopping {
                    Ended::Stopped
                } else {
                    Ended::Finished
                };
            }
        }
    }

    fn lost(&mut self, e: anyhow::Error) -> Ended {
        self.tally
            .error("connection lost", format!("{}: {e:#}", self.plan.id));
        Ended::Lost
    }

    fn next_drop(&mut self) -> Option<Instant> {
        let per_second = self.plan.drop_per_minute / 60.0;
        if per_second <= 0.0 {
            return None;
        }
        // Exponential waiting time: drops are a Poisson process.
        let wait = -(1.0 - self.rng.uniform()).ln() / per_second;
        Some(Instant::now() + Duration::from_secs_f64(wait.min(1e9)))
    }

    fn offline_time(&mut self) -> Duration {
        OFFLINE_MIN + (OFFLINE_MAX - OFFLINE_MIN).mul_f64(self.rng.uniform())
    }

    /// Handles every complete packet read.
    fn handle_packets(&mut self, link: &mut Link) -> anyhow::Result<()> {
        while let Some(packet) = link.decode()? {
            match packet {
                Packet::PubAck(ack) => self.acknowledged(ack),
                Packet::Publish(p) => {
                    if let Some(id) = p.packet_id {
                        encode(&Packet::PubAck(Ack::new(id)), &mut link.wbuf)?;
                    }
                    self.received(p)?;
                }
                Packet::PingResp => {}
                Packet::Disconnect(d) => {
                    let reason = d
                        .properties
                        .reason_string
                        .as_ref()
                        .map_or(String::new(), |r| format!(" ({})", r.as_str()));
                    bail!(
                        "the server disconnected the device: 0x{:02x}{reason}",
                        d.reason_code.0
                    );
                }
                other => bail!("unexpected {:?} from the server", other.packet_type()),
            }
        }
        Ok(())
    }

    fn acknowledged(&mut self, ack: Ack) {
        let Some(message) = self.inflight.remove(&ack.packet_id.get()) else {
            self.tally.error(
                "unexpected PUBACK",
                format!(
                    "{}: a PUBACK for packet {} that was not in flight",
                    self.plan.id,
                    ack.packet_id.get()
                ),
            );
            return;
        };
        if ack.reason_code.is_error() {
            let reason = ack.properties.reason_string.as_ref().map(|r| r.as_str());
            self.tally
                .refused(ack.reason_code.0, reason, &message.topic);
        } else {
            self.tally.acked(message.kind);
        }
    }

    /// A command or a delta.
    fn received(&mut self, publish: Publish) -> anyhow::Result<()> {
        let topic = publish.topic.as_str();
        if topic.ends_with("/state/delta") {
            self.adopt_desired(&publish.payload);
            return Ok(());
        }
        let Some(name) = topic
            .rsplit('/')
            .next()
            .filter(|_| topic.contains("/commands/"))
        else {
            return Ok(());
        };
        let name = name.to_owned();
        let request: Value = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
        let correlation = publish.properties.correlation_data.clone();
        let Some(command_id) = request["id"].as_str().map(str::to_owned) else {
            if correlation.is_none() {
                self.tally.error(
                    "unreadable command",
                    format!(
                        "{}: a command on {topic} without an id to answer with",
                        self.plan.id
                    ),
                );
                return Ok(());
            }
            return self.answer_command(&name, None, &request, &publish);
        };
        self.answer_command(&name, Some(command_id), &request, &publish)
    }

    fn answer_command(
        &mut self,
        name: &str,
        command_id: Option<String>,
        request: &Value,
        publish: &Publish,
    ) -> anyhow::Result<()> {
        let (outcome, succeeded) = match name {
            "reboot" => {
                self.boot_count += 1;
                let mut changed = serde_json::Map::new();
                changed.insert("boot_count".into(), json!(self.boot_count));
                self.report_state(changed);
                (
                    json!({"result": {"rebooted": true, "boot_count": self.boot_count}}),
                    true,
                )
            }
            "ping" => (
                json!({"result": {"pong": true, "params": request["params"]}}),
                true,
            ),
            other => (
                json!({"error": format!(
                    "unknown command {other:?}: this simulated device answers reboot and ping"
                )}),
                false,
            ),
        };
        let mut reply = outcome;
        if let Some(id) = command_id {
            reply["id"] = json!(id);
        }
        let topic = publish.properties.response_topic.as_ref().map_or_else(
            || format!("{}/response", publish.topic.as_str()),
            |t| t.as_str().to_owned(),
        );
        self.urgent.push_back(Outgoing {
            kind: Kind::Reply,
            topic,
            payload: Bytes::from(reply.to_string()),
            correlation: publish.properties.correlation_data.clone(),
            retry: false,
        });
        self.tally.command(succeeded);
        Ok(())
    }

    /// Takes on the desired state's differences and reports them back.
    fn adopt_desired(&mut self, payload: &[u8]) {
        let Ok(Value::Object(delta)) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        let mut changed = serde_json::Map::new();
        for (key, value) in delta {
            if key == "interval_ms" {
                let Some(ms) = value.as_u64().filter(|ms| INTERVAL_MS_RANGE.contains(ms)) else {
                    continue;
                };
                self.change_period(Duration::from_millis(ms));
            }
            if self.reported.get(&key) != Some(&value) {
                changed.insert(key, value);
            }
        }
        if !changed.is_empty() {
            self.tally.desired_change();
            self.report_state(changed);
        }
    }

    /// A new reading interval: a timed run keeps its end, so the readings
    /// left are what fits in the time left.
    fn change_period(&mut self, period: Duration) {
        if period == self.period {
            return;
        }
        if let Some(left) = self.readings_left.filter(|l| *l > 0) {
            let time_left_s = left as f64 * self.period.as_secs_f64();
            self.readings_left = Some((time_left_s / period.as_secs_f64()).round().max(1.0) as u64);
        }
        self.period = period;
    }

    fn report_state(&mut self, changed: serde_json::Map<String, Value>) {
        for (k, v) in &changed {
            self.reported.insert(k.clone(), v.clone());
        }
        self.urgent.push_back(Outgoing {
            kind: Kind::State,
            topic: format!("devices/{}/state/reported", self.plan.id),
            payload: Bytes::from(Value::Object(changed).to_string()),
            correlation: None,
            retry: false,
        });
    }

    /// Fills the window (state and replies first, then readings unless
    /// `held`) and writes everything pending in one go.
    async fn pump(&mut self, link: &mut Link, held: bool) -> anyhow::Result<()> {
        while self.inflight.len() < link.window {
            let next = match self.urgent.pop_front() {
                Some(m) => m,
                None if held => break,
                None => match self.buffer.pop_front() {
                    Some(m) => m,
                    None => break,
                },
            };
            let id = self.packet_id();
            let mut publish = Publish::new(MqttStr::new(&next.topic)?, next.payload.clone());
            publish.qos = QoS::AtLeastOnce;
            publish.packet_id = Some(id);
            publish.properties.payload_format_indicator = Some(true);
            publish.properties.correlation_data = next.correlation.clone();
            encode(&Packet::Publish(publish), &mut link.wbuf)?;
            if next.retry {
                self.tally.retransmitted();
            } else {
                self.tally.sent(next.kind);
            }
            self.inflight.insert(id.get(), next);
        }
        if !link.wbuf.is_empty() {
            link.flush().await?;
        }
        Ok(())
    }

    /// The next packet id not in flight.
    fn packet_id(&mut self) -> PacketId {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            if self.next_packet_id != 0 && !self.inflight.contains_key(&self.next_packet_id) {
                return PacketId::new(self.next_packet_id).expect("non-zero");
            }
        }
    }
}

/// Why a connect failed.
enum Refusal {
    /// Trying again cannot help (credentials, authorization).
    Fatal(anyhow::Error),
    Retry(anyhow::Error),
}

fn str_of(s: &str) -> Result<MqttStr, Refusal> {
    MqttStr::new(s).map_err(|e| Refusal::Fatal(anyhow::anyhow!("{s:?} is not an MQTT string: {e}")))
}

fn encode(packet: &Packet, wbuf: &mut BytesMut) -> anyhow::Result<()> {
    codec::encode(packet, VERSION, wbuf).context("encoding a packet")
}

impl Link {
    fn decode(&mut self) -> anyhow::Result<Option<Packet>> {
        codec::decode(&mut self.rbuf, VERSION, MAX_PACKET)
            .context("decoding a packet from the server")
    }

    async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = self.decode()? {
                return Ok(packet);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        self.last_write = Instant::now();
        Ok(())
    }
}
