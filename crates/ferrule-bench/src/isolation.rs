//! `ferrule bench isolation`: does one tenant's flood slow another tenant?
//!
//! Two tenants, made through the API like a user would: `quiet` with one
//! device that publishes QoS 1 telemetry at a steady rate and subscribes to
//! its own topic, and `noisy` with several devices that publish QoS 0
//! telemetry as fast as TCP takes it. For each server configuration (rate
//! limits off, on with their defaults, or both side by side) the quiet
//! device runs once alone and once under the flood; the table gives its
//! publish→deliver and PUBACK latencies, and the flood's achieved rate as
//! the server counted it.
//!
//! Every client is a blocking thread (like the latency roles of the MQTT
//! bench): the flood cannot delay the quiet device's sends or reads inside
//! this process, only inside the server.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ferrule_mqtt::broker::observe;
use ferrule_mqtt::codec::{
    self, Connect, MqttStr, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe,
    Subscription, SubscriptionOptions,
};
use tokio_util::bytes::BytesMut;

use super::process::{start_ferrule_with, terminate};
use super::thousands;

const VERSION: ProtocolVersion = ProtocolVersion::V5;
const ADMIN_EMAIL: &str = "admin@localhost";
const ADMIN_PASSWORD: &str = "bench-password";
/// Load before the measurement window opens.
const WARMUP: Duration = Duration::from_secs(2);
/// How long the quiet device waits for its last acknowledgements.
const DRAIN: Duration = Duration::from_secs(5);
/// QoS 0 publishes encoded once and written again and again.
const FLOOD_BATCH: usize = 256;
/// The PUBACK target of the issue.
const PUBACK_TARGET: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct IsolationArgs {
    /// Length of each measurement window, in seconds (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rate limits of the server: off, on (the defaults of `[limits]`), or
    /// both, one after the other, for a side-by-side table.
    #[arg(long, value_enum, default_value_t = LimitsSwitch::Both)]
    pub limits: LimitsSwitch,
    /// Flooding clients (devices) of the noisy tenant.
    #[arg(long, default_value_t = 4)]
    pub flooders: usize,
    /// QoS 1 messages per second of the quiet tenant's device.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LimitsSwitch {
    Off,
    On,
    Both,
}

pub async fn run(args: IsolationArgs) -> anyhow::Result<()> {
    let configs: &[bool] = match args.limits {
        LimitsSwitch::Off => &[false],
        LimitsSwitch::On => &[true],
        LimitsSwitch::Both => &[false, true],
    };
    let mut rows = Vec::new();
    for &limits in configs {
        let server = Server::start(limits, args.flooders).await?;
        for flood in [false, true] {
            eprintln!(
                "isolation: limits {}, {}",
                on_off(limits),
                if flood { "under flood" } else { "alone" }
            );
            let row = server.measure(&args, flood).await;
            match row {
                Ok(r) => rows.push(r),
                Err(e) => {
                    let _ = server.stop().await;
                    return Err(e);
                }
            }
        }
        server.stop().await?;
    }
    print!("{}", report(&args, &rows));
    Ok(())
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Ferrule with the two tenants and their devices.
struct Server {
    child: tokio::process::Child,
    base: String,
    mqtt: SocketAddr,
    client: reqwest::Client,
    limits: bool,
    quiet: String,
    noisy: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(limits: bool, flooders: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let data = data.to_str().context("temp path is not UTF-8")?;
        let args = ["--data-dir", data, "--http-listen", "127.0.0.1:0"];
        // Off: every limit 0. On: the server's defaults.
        let env: &[(&str, &str)] = if limits {
            &[]
        } else {
            super::process::LIMITS_OFF
        };
        let server = start_ferrule_with(&args, env).await?;
        let (child, http, mqtt) = (server.child, server.http, server.mqtt);
        let base = format!("http://{http}");
        let client = reqwest::Client::new();
        let mut server = Server {
            child,
            base,
            mqtt: mqtt.parse().context("ferrule's MQTT address")?,
            client,
            limits,
            quiet: String::new(),
            noisy: Vec::new(),
            _dir: dir,
        };
        let admin = server.login().await?;
        server
            .post(
                &admin,
                None,
                "/api/v1/tenants",
                r#"{"id":"quiet","name":"Quiet"}"#,
            )
            .await?;
        server
            .post(
                &admin,
                None,
                "/api/v1/tenants",
                r#"{"id":"noisy","name":"Noisy"}"#,
            )
            .await?;
        server.quiet = server.device(&admin, "quiet", "a1").await?;
        for i in 0..flooders {
            let id = format!("b{i}");
            let token = server.device(&admin, "noisy", &id).await?;
            server.noisy.push((id, token));
        }
        Ok(server)
    }

    async fn login(&self) -> anyhow::Result<String> {
        let body = serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
        let v = self
            .post("", None, "/api/v1/auth/login", &body.to_string())
            .await?;
        v["token"].as_str().map(str::to_owned).context("no token")
    }

    /// Creates a device in `tenant`; returns its access token.
    async fn device(&self, admin: &str, tenant: &str, id: &str) -> anyhow::Result<String> {
        let body = serde_json::json!({ "id": id }).to_string();
        let v = self
            .post(admin, Some(tenant), "/api/v1/devices", &body)
            .await?;
        v["token"].as_str().map(str::to_owned).context("no token")
    }

    async fn post(
        &self,
        token: &str,
        tenant: Option<&str>,
        path: &str,
        body: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(t) = tenant {
            req = req.header("X-Tenant", t);
        }
        let r = req.send().await.with_context(|| format!("POST {path}"))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }

    /// One `/metrics` value: the sum of the series whose name and labels
    /// start with `prefix` and contain every one of `labels`.
    async fn metric(&self, prefix: &str, labels: &[&str]) -> anyhow::Result<f64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            // An empty sum is -0.0.
            .fold(0.0, |a, b| a + b))
    }

    async fn measure(&self, args: &IsolationArgs, flood: bool) -> anyhow::Result<Row> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut flooders = Vec::new();
        if flood {
            for (id, token) in &self.noisy {
                flooders.push(Flooder::start(self.mqtt, id, token, stop.clone())?);
            }
        }
        let window = Duration::from_secs(args.seconds);
        let (mqtt, token, rate) = (self.mqtt, self.quiet.clone(), args.rate);
        let quiet = std::thread::spawn(move || quiet_device(mqtt, &token, rate, window));
        tokio::time::sleep(WARMUP).await;
        let received = observe::MESSAGES_IN;
        let before = self.metric(received, &[]).await?;
        let opened = Instant::now();
        tokio::time::sleep(window).await;
        let after = self.metric(received, &[]).await?;
        let seconds = opened.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for f in flooders {
            f.stop();
        }
        let quiet = tokio::task::spawn_blocking(move || quiet.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the quiet device's thread panicked"))??;
        let limited = self
            .metric(observe::RATE_LIMITED, &[r#"tenant="noisy""#])
            .await?;
        // Everything the server read in the window, less the quiet device's.
        let noisy_rate = ((after - before) / seconds - f64::from(args.rate)).max(0.0);
        Ok(Row {
            limits: self.limits,
            flood,
            quiet,
            noisy_rate: if flood { Some(noisy_rate) } else { None },
            limited,
        })
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.child).await?;
        Ok(())
    }
}

/// One device of the noisy tenant writing QoS 0 telemetry as fast as TCP
/// takes it, on its own thread.
struct Flooder {
    /// A handle on the socket: shutting it down ends a blocked write.
    socket: TcpStream,
    thread: std::thread::JoinHandle<()>,
}

impl Flooder {
    fn start(
        addr: SocketAddr,
        id: &str,
        token: &str,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        let mut stream = connect(addr, id, token)?;
        let topic = format!("devices/{id}/telemetry");
        let mut publish = Publish::new(MqttStr::new(&topic)?, &br#"{"temp":21.5,"rpm":1200}"#[..]);
        publish.qos = QoS::AtMostOnce;
        let mut batch = BytesMut::new();
        for _ in 0..FLOOD_BATCH {
            codec::encode(&Packet::Publish(publish.clone()), VERSION, &mut batch)?;
        }
        let socket = stream.try_clone()?;
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if stream.write_all(&batch).is_err() {
                    break;
                }
            }
        });
        Ok(Flooder { socket, thread })
    }

    fn stop(self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        let _ = self.thread.join();
    }
}

/// Connects a device (its token as user name) and waits for CONNACK.
fn connect(addr: SocketAddr, client_id: &str, token: &str) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut c = Connect::new(VERSION, MqttStr::new(client_id)?, 0);
    c.username = Some(MqttStr::new(token)?);
    let mut wbuf = BytesMut::new();
    codec::encode(&Packet::Connect(Box::new(c)), VERSION, &mut wbuf)?;
    stream.write_all(&wbuf)?;
    let mut rbuf = BytesMut::new();
    match recv(&mut stream, &mut rbuf)? {
        Packet::ConnAck(a) if !a.reason_code.is_error() => Ok(stream),
        other => bail!("{client_id}: expected a successful CONNACK, got {other:?}"),
    }
}

fn recv(stream: &mut TcpStream, rbuf: &mut BytesMut) -> anyhow::Result<Packet> {
    loop {
        if let Some(p) = codec::decode(rbuf, VERSION, 1 << 20)? {
            return Ok(p);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            bail!("the broker closed the connection");
        }
        rbuf.extend_from_slice(&chunk[..n]);
    }
}

/// What the quiet device measured in the window, in microseconds.
#[derive(Debug, Default)]
struct Quiet {
    deliver_us: Vec<u64>,
    puback_us: Vec<u64>,
    sent: u64,
    /// PUBACKs with an error reason code.
    refused: u64,
}

/// The quiet device: publishes QoS 1 telemetry `{"seq": N}` at `rate`
/// for the warm-up and `window`, subscribed to its own topic; measures
/// each message's publish→deliver and publish→PUBACK times.
fn quiet_device(
    addr: SocketAddr,
    token: &str,
    rate: u32,
    window: Duration,
) -> anyhow::Result<Quiet> {
    let mut stream = connect(addr, "a1", token)?;
    let topic = "devices/a1/telemetry";
    let mut wbuf = BytesMut::new();
    let subscribe = Subscribe {
        packet_id: PacketId::new(1).context("id")?,
        properties: Default::default(),
        subscriptions: vec![Subscription {
            topic_filter: MqttStr::new(topic)?,
            options: SubscriptionOptions::new(QoS::AtMostOnce),
        }],
    };
    codec::encode(&Packet::Subscribe(subscribe), VERSION, &mut wbuf)?;
    stream.write_all(&wbuf)?;
    let mut rbuf = BytesMut::new();
    if !matches!(recv(&mut stream, &mut rbuf)?, Packet::SubAck(_)) {
        bail!("the quiet device's SUBSCRIBE was not acknowledged");
    }

    let epoch = Instant::now();
    let total = (u64::from(rate) * (WARMUP + window).as_millis() as u64 / 1000) as usize;
    let window_from = (u64::from(rate) * WARMUP.as_millis() as u64 / 1000) as usize;
    // Send time (ns since epoch, +1 so 0 means unsent) per sequence number,
    // and the sequence number of each packet id in use.
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let id_seq: Arc<Vec<AtomicU64>> = Arc::new((0..=65_535).map(|_| AtomicU64::new(0)).collect());
    let mut reader = stream.try_clone()?;
    reader.set_read_timeout(Some(Duration::from_millis(100)))?;
    let done_sending = Arc::new(AtomicBool::new(false));

    let read = {
        let (sent_at, id_seq, done) = (sent_at.clone(), id_seq.clone(), done_sending.clone());
        std::thread::spawn(move || -> anyhow::Result<Quiet> {
            let mut q = Quiet::default();
            let (mut acked, mut delivered) = (0usize, 0usize);
            let mut drain_until = None;
            loop {
                while let Some(p) = codec::decode(&mut rbuf, VERSION, 1 << 20)? {
                    let now = epoch.elapsed().as_nanos() as u64 + 1;
                    match p {
                        Packet::PubAck(a) => {
                            let seq = id_seq[usize::from(a.packet_id.get())].load(Ordering::Acquire)
                                as usize;
                            acked += 1;
                            if a.reason_code.is_error() {
                                q.refused += 1;
                            } else if seq >= window_from {
                                let t = sent_at[seq].load(Ordering::Acquire);
                                q.puback_us.push(now.saturating_sub(t) / 1000);
                            }
                        }
                        Packet::Publish(p) => {
                            delivered += 1;
                            let seq = parse_seq(&p.payload);
                            if let Some(seq) = seq.filter(|s| *s >= window_from && *s < total) {
                                let t = sent_at[seq].load(Ordering::Acquire);
                                q.deliver_us.push(now.saturating_sub(t) / 1000);
                            }
                        }
                        _ => {}
                    }
                }
                if done.load(Ordering::Acquire) {
                    let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN);
                    if (acked >= total && delivered >= total) || Instant::now() > until {
                        return Ok(q);
                    }
                }
                let mut chunk = [0u8; 16 * 1024];
                match reader.read(&mut chunk) {
                    Ok(0) => bail!("the broker closed the quiet device's connection"),
                    Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        })
    };

    // Paced sends: message n goes at n / rate after the start, however late
    // the previous one was (no coordinated omission).
    let period = Duration::from_secs(1) / rate;
    let start = Instant::now();
    let mut wbuf = BytesMut::new();
    for seq in 0..total {
        let due = start + period * seq as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let id = (seq % 65_535) as u16 + 1;
        let payload = format!("{{\"seq\":{seq}}}");
        let mut publish = Publish::new(MqttStr::new(topic)?, payload.into_bytes());
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = PacketId::new(id);
        wbuf.clear();
        codec::encode(&Packet::Publish(publish), VERSION, &mut wbuf)?;
        id_seq[usize::from(id)].store(seq as u64, Ordering::Release);
        sent_at[seq].store(epoch.elapsed().as_nanos() as u64 + 1, Ordering::Release);
        stream.write_all(&wbuf)?;
    }
    done_sending.store(true, Ordering::Release);
    let mut q = read
        .join()
        .map_err(|_| anyhow::anyhow!("the quiet device's reader panicked"))??;
    q.sent = (total - window_from) as u64;
    Ok(q)
}

fn parse_seq(payload: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(payload).ok()?;
    s.strip_prefix("{\"seq\":")?.strip_suffix('}')?.parse().ok()
}

struct Row {
    limits: bool,
    flood: bool,
    quiet: Quiet,
    noisy_rate: Option<f64>,
    limited: f64,
}

/// p in 0..=1 of sorted microseconds, as milliseconds.
fn at(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn report(args: &IsolationArgs, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Tenant isolation: {} QoS 1 msgs/s from tenant `quiet` while {} clients of tenant `noisy` flood QoS 0 telemetry\n",
        thousands(f64::from(args.rate)),
        args.flooders
    );
    let _ = writeln!(
        out,
        "| limits | noisy tenant | quiet: publish→deliver p50 | p99 | max | PUBACK p99 | max | PUBACKs > 100 ms | not acked in 5 s | noisy: msgs/s read | rate-limited pauses |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let mut d = r.quiet.deliver_us.clone();
        d.sort_unstable();
        let mut a = r.quiet.puback_us.clone();
        a.sort_unstable();
        let slow = a
            .iter()
            .filter(|us| **us > PUBACK_TARGET.as_micros() as u64)
            .count();
        let missing = r
            .quiet
            .sent
            .saturating_sub(r.quiet.puback_us.len() as u64 + r.quiet.refused);
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} ms | {:.2} ms | {:.1} ms | {:.2} ms | {:.1} ms | {slow} of {} | {missing} | {} | {} |",
            on_off(r.limits),
            if r.flood { "flooding" } else { "idle" },
            at(&d, 0.5),
            at(&d, 0.99),
            at(&d, 1.0),
            at(&a, 0.99),
            at(&a, 1.0),
            r.quiet.sent,
            r.noisy_rate.map_or("–".into(), thousands),
            thousands(r.limited),
        );
    }
    let _ = writeln!(
        out,
        "\nTargets (issue 8): under the flood, the quiet tenant's publish→deliver p99 < 10 ms and every PUBACK < 100 ms. \
         Each row: {} s measured after a {} s warm-up; \"on\" is the default `[limits]` (client {}/s, tenant {}/s messages), \
         \"off\" sets every limit to 0. PUBACKs are sent once the telemetry is durable. Refused PUBACKs: {}.",
        args.seconds,
        WARMUP.as_secs(),
        thousands(f64::from(
            ferrule_mqtt::broker::rate::RateLimits::default().client_messages
        )),
        thousands(f64::from(
            ferrule_mqtt::broker::rate::RateLimits::default().tenant_messages
        )),
        rows.iter().map(|r| r.quiet.refused).sum::<u64>(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip() {
        assert_eq!(parse_seq(br#"{"seq":42}"#), Some(42));
        assert_eq!(parse_seq(br#"{"temp":1}"#), None);
    }

    #[test]
    fn percentiles_of_microseconds_in_milliseconds() {
        let v = [1000, 2000, 3000, 4000, 100_000];
        assert_eq!(at(&v, 0.5), 3.0);
        assert_eq!(at(&v, 1.0), 100.0);
        assert!(at(&[], 0.5).is_nan());
    }
}
