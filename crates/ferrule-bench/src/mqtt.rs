//! `ferrule bench mqtt`: the MQTT broker against mosquitto, side by side.
//!
//! The bench starts both brokers as child processes pinned to CPU 0 and runs
//! its load generator (this process, every thread of it) on CPU 1, so each
//! broker gets one core to itself and the load never competes with it. Every
//! scenario runs against Ferrule, then against mosquitto, in a fixed order
//! with fixed durations; the figures are measured after a warm-up, and the
//! CPU use of both sides over the same interval is reported next to them so
//! a reader can see which side was the bottleneck.
//!
//! The machine may be shared: before each run the bench waits for both
//! cores to go quiet, and a run during which other work took a noticeable
//! share of a core is repeated (up to three times; the least disturbed one
//! counts). Latency runs alternate between the brokers for several rounds
//! and pool the samples, so that a spell of outside noise does not land on
//! one broker only. The idle-connection scenario starts fresh brokers, so
//! that memory freed by earlier scenarios does not hide the new connections'
//! cost.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ferrule_mqtt::codec::QoS;
use tokio::process::Child;
use tokio::task::JoinSet;
use tokio_util::bytes::Bytes;

use super::loadgen::{self, Client};
use super::process::{
    LIMITS_OFF, START_WITHIN, cpu_busy_seconds, cpu_seconds, cpus_allowed, free_port,
    own_cpu_seconds, pin_current_thread, raise_nofile_limit, rss_kib, spawn_ferrule_with,
    spawn_on_cpu, tcp_ext_counter, terminate, thread_count,
};
use super::thousands;

/// The baseline broker (Debian's mosquitto package).
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// Payload size of every message.
pub const PAYLOAD_LEN: usize = 64;
/// The brokers' core.
pub(super) const BROKER_CPU: usize = 0;
/// The load generator's core.
pub(super) const LOADGEN_CPU: usize = 1;
/// Load before the measurement window opens.
pub(super) const WARMUP: Duration = Duration::from_secs(2);
/// Pause after a run so the broker is idle when the next one starts.
pub(super) const SETTLE: Duration = Duration::from_secs(1);
/// Keep alive of the idle connections: a typical device's, and long enough
/// that no PINGREQ is due during the run.
const IDLE_KEEPALIVE: u16 = 600;
/// Runs of one scenario on one broker, at most, to get one that other
/// load on the machine did not disturb.
pub(super) const ATTEMPTS: usize = 3;
/// Share of a core used by others above which a run counts as disturbed.
pub(super) const DISTURBED: f64 = 0.15;
/// Busy fraction of a core, over one second, below which it counts as quiet.
const QUIET_BELOW: f64 = 0.10;
/// Idle connections per loopback source address (see `idle_source`).
const IDLE_PER_SOURCE: usize = 100;
/// How long idle connections sit before the broker's RSS is read.
const IDLE_WAIT: Duration = Duration::from_secs(2);
/// File descriptors kept free besides the idle connections, in the bench
/// and in each broker (listeners, store files, pipes, the other scenarios).
const FD_HEADROOM: u64 = 256;

#[derive(Debug, Args)]
pub struct MqttArgs {
    /// Length of each measurement window, in seconds (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Run one scenario only.
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Idle connections to open (lowered to fit the open-files limit).
    #[arg(long, default_value_t = 19_000)]
    pub connections: usize,
    /// QoS 1 messages each fan-in publisher keeps unacknowledged (same for
    /// both brokers).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=32_768))]
    pub window: u16,
    /// Connection handshakes in flight at once while opening idle
    /// connections. Kept below both brokers' listen backlog (mosquitto 100,
    /// Ferrule 128) so that SYNs are not dropped and retried a second later.
    #[arg(long, default_value_t = 64)]
    pub connect_pipeline: usize,
    /// Messages per second of the latency scenario.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Latency rounds per broker (alternating between the brokers); the
    /// percentiles are over the samples of all rounds.
    #[arg(long, default_value_t = 3)]
    pub latency_rounds: usize,
    /// Longest wait, in seconds, for both cores to go quiet before each run
    /// (a run that others disturbed is repeated up to three times anyway).
    #[arg(long, default_value_t = 120)]
    pub quiet_wait_secs: u64,
    /// Write each latency sample (send time, latency; µs) to
    /// FILE.BROKER.ROUND.csv.
    #[arg(long, value_name = "FILE")]
    pub latency_trace: Option<std::path::PathBuf>,
    /// Extra mosquitto.conf line, e.g. "set_tcp_nodelay true" (repeatable;
    /// a later line overrides the bench's own settings).
    #[arg(long, value_name = "LINE")]
    pub mosquitto_option: Vec<String>,
    /// Baseline brokers, run in the same session on the same core. A
    /// baseline that is not installed is left out with a note (mosquitto:
    /// `apt-get install mosquitto`; rumqttd: `cargo install rumqttd
    /// --locked`).
    #[arg(long = "baseline", value_enum, value_delimiter = ',', default_values_t = [Baseline::Mosquitto, Baseline::Rumqttd])]
    pub baselines: Vec<Baseline>,
    /// ACL rules in force in Ferrule's tenant during the traffic scenarios:
    /// a realistic mix of allows and denies, some applying to the bench's
    /// (anonymous) clients, none denying the benched topics. Every message
    /// is then checked on its way in and out.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1_000))]
    pub acl_rules: u16,
}

/// A broker Ferrule is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    /// Eclipse mosquitto 2 (Debian's package), the reference broker.
    Mosquitto,
    /// rumqttd 0.20, a broker written in Rust.
    Rumqttd,
}

impl Baseline {
    fn name(self) -> &'static str {
        match self {
            Baseline::Mosquitto => "mosquitto",
            Baseline::Rumqttd => "rumqttd",
        }
    }

    /// The baseline's executable, if it is installed.
    fn executable(self) -> Option<std::path::PathBuf> {
        let candidates: Vec<std::path::PathBuf> = match self {
            Baseline::Mosquitto => vec![MOSQUITTO.into()],
            Baseline::Rumqttd => {
                let mut paths: Vec<_> = std::env::var_os("PATH")
                    .map(|p| {
                        std::env::split_paths(&p)
                            .map(|d| d.join("rumqttd"))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(home) = std::env::var_os("HOME") {
                    paths.push(std::path::Path::new(&home).join(".cargo/bin/rumqttd"));
                }
                paths
            }
        };
        candidates.into_iter().find(|p| p.is_file())
    }

    /// Starts this baseline with the bench's configuration.
    async fn start(self, args: &MqttArgs, connections: usize) -> anyhow::Result<Broker> {
        match self {
            Baseline::Mosquitto => {
                // Its users lift the outgoing window for throughput: with a
                // limit (20 by default, or Ferrule's 256) it acknowledges
                // publishers faster than it can deliver to a QoS 1
                // subscriber and drops the rest at its queue limit, spending
                // its core on messages nobody gets (30k of 105k msgs/s
                // delivered against 78k of 78k without the limit). Ferrule
                // slows its publishers instead.
                let mut lines = vec!["max_inflight_messages 0".to_owned()];
                lines.extend(args.mosquitto_option.iter().cloned());
                Broker::mosquitto(&lines).await
            }
            Baseline::Rumqttd => Broker::rumqttd(connections).await,
        }
    }

    /// Its version line, for the report.
    fn version(self) -> String {
        let (flag, fallback) = match self {
            Baseline::Mosquitto => ("-h", "mosquitto (version unknown)"),
            Baseline::Rumqttd => ("--version", "rumqttd (version unknown)"),
        };
        self.executable()
            .and_then(|exe| std::process::Command::new(exe).arg(flag).output().ok())
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.lines().next().map(str::to_owned)
            })
            .unwrap_or_else(|| fallback.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    Fanin0,
    Fanin1,
    Fanout0,
    Latency,
    Idle,
}

/// Pins this process to the load generator's core, then runs the scenarios
/// on a current-thread runtime.
pub fn main(args: MqttArgs) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism()?.get();
    if cpus < 2 {
        bail!("the MQTT bench needs two CPUs (one per side); this process may use {cpus}");
    }
    let nofile = raise_nofile_limit()?;
    pin_current_thread(LOADGEN_CPU)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(args, nofile))
}

/// A broker under test, running as a child process.
pub(super) struct Broker {
    pub(super) name: &'static str,
    child: Child,
    pub(super) pid: u32,
    pub(super) addr: SocketAddr,
    /// Ferrule's HTTP address (for /metrics).
    pub(super) http: Option<String>,
    _dir: tempfile::TempDir,
}

impl Broker {
    async fn ferrule(acl_rules: u16) -> anyhow::Result<Self> {
        Self::ferrule_with_env(acl_rules, &[]).await
    }

    /// Ferrule with `acl_rules` ACL rules in force, rate limits off, and
    /// extra `FERRULE_*` settings.
    pub(super) async fn ferrule_with_env(
        acl_rules: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let env: Vec<(&str, &str)> = LIMITS_OFF.iter().chain(env).copied().collect();
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let data = data.to_str().context("temp path is not UTF-8")?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let listen = addr.to_string();
        let starting = spawn_on_cpu(BROKER_CPU, || {
            spawn_ferrule_with(
                &[
                    "--data-dir",
                    data,
                    "--http-listen",
                    "127.0.0.1:0",
                    "--mqtt-listen",
                    &listen,
                    "--mqtt-allow-anonymous=true",
                ],
                &env,
            )
        })?;
        let server = starting.ready(START_WITHIN).await?;
        let (child, http) = (server.child, server.http);
        let pid = child.id().context("ferrule pid")?;
        let client = reqwest::Client::new();
        if acl_rules > 0 {
            create_acl_rules(&client, &http, acl_rules).await?;
            eprintln!("ferrule: {acl_rules} ACL rules in force");
        }
        Ok(Broker {
            name: "ferrule",
            child,
            pid,
            addr,
            http: Some(http),
            _dir: dir,
        })
    }

    pub(super) async fn mosquitto(extra: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, mosquitto_conf(addr.port(), extra))?;
        let conf = conf.to_str().context("temp path is not UTF-8")?;
        let child = spawn_on_cpu(BROKER_CPU, || {
            tokio::process::Command::new(MOSQUITTO)
                .args(["-c", conf])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting mosquitto (apt-get install mosquitto)")
        })?;
        Self::baseline_accepting("mosquitto", child, addr, dir).await
    }

    /// rumqttd with [`rumqttd_conf`], on the broker core.
    async fn rumqttd(connections: usize) -> anyhow::Result<Self> {
        let exe = Baseline::Rumqttd
            .executable()
            .context("rumqttd is not installed (cargo install rumqttd --locked)")?;
        let dir = tempfile::tempdir()?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let conf = dir.path().join("rumqttd.toml");
        std::fs::write(&conf, rumqttd_conf(addr.port(), connections))?;
        let child = spawn_on_cpu(BROKER_CPU, || {
            tokio::process::Command::new(&exe)
                .arg("--config")
                .arg(&conf)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting rumqttd")
        })?;
        Self::baseline_accepting("rumqttd", child, addr, dir).await
    }

    /// A baseline broker, once its port accepts connections.
    async fn baseline_accepting(
        name: &'static str,
        child: Child,
        addr: SocketAddr,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        let pid = child.id().with_context(|| format!("{name} pid"))?;
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("{name} not accepting after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Broker {
            name,
            child,
            pid,
            addr,
            http: None,
            _dir: dir,
        })
    }

    /// Checks and reports that every thread of the broker is on its core.
    pub(super) fn check_pinned(&self) -> anyhow::Result<()> {
        let cpus = cpus_allowed(self.pid)?;
        eprintln!(
            "{}: pid {}, {} threads, CPUs allowed {:?}",
            self.name,
            self.pid,
            thread_count(self.pid)?,
            cpus
        );
        if cpus != [BROKER_CPU.to_string()] {
            bail!("{} is not pinned to CPU {BROKER_CPU}: {cpus:?}", self.name);
        }
        Ok(())
    }

    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        let status = terminate(&mut self.child).await?;
        if !status.success() {
            eprintln!("{} exited with {status} on SIGTERM", self.name);
        }
        Ok(())
    }
}

/// The `i`th rule of `--acl-rules`: what tenants write (per-device subtrees,
/// fleet topics, a few denied corners), none of it matching `bench/…`, and
/// some rules (subject `all` or `anonymous`) applying to the bench's clients
/// so that their messages take the checked path, not the fast one.
fn bench_acl_rule(i: u16) -> serde_json::Value {
    let (effect, action, topic, subject) = match i % 6 {
        0 => ("deny", "subscribe", format!("restricted/{i}/#"), "all"),
        1 => (
            "allow",
            "all",
            format!("devices/{{device_id}}/shadow/{i}/#"),
            "devices",
        ),
        2 => ("deny", "publish", format!("commands/{i}/+"), "anonymous"),
        3 => ("allow", "subscribe", format!("fleet/+/status/{i}"), "users"),
        4 => ("deny", "all", format!("private/site{i}/+/#"), "all"),
        _ => (
            "allow",
            "publish",
            format!("devices/+/telemetry/{i}"),
            "devices",
        ),
    };
    serde_json::json!({
        "effect": effect, "action": action, "topic": topic, "subject": subject,
        "priority": i % 3,
    })
}

/// Creates `n` rules of [`bench_acl_rule`] in tenant `default`, as the admin.
async fn create_acl_rules(client: &reqwest::Client, http: &str, n: u16) -> anyhow::Result<()> {
    let login: serde_json::Value = client
        .post(format!("http://{http}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "admin@localhost", "password": "bench-password"}))
        .send()
        .await?
        .error_for_status()
        .context("logging in as the admin to create ACL rules")?
        .json()
        .await?;
    let token = login["token"].as_str().context("login returned no token")?;
    for i in 0..n {
        client
            .post(format!("http://{http}/api/v1/acl-rules"))
            .bearer_auth(token)
            .json(&bench_acl_rule(i))
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("creating ACL rule {i}"))?;
    }
    Ok(())
}

/// The mosquitto configuration: its defaults except what a fair comparison
/// needs, then `extra` lines (which override); docs/BENCHMARKS.md lists
/// each line.
fn mosquitto_conf(port: u16, extra: &[String]) -> String {
    let mut conf = format!(
        "# written by ferrule bench mqtt\n\
         listener {port} 127.0.0.1\n\
         # Ferrule runs with --mqtt-allow-anonymous\n\
         allow_anonymous true\n\
         # the default; stated because it matters\n\
         persistence false\n\
         # the default (unlimited); the open-files limit is raised by the bench\n\
         max_connections -1\n\
         # Ferrule's per-session queue limit (mosquitto: 1000)\n\
         max_queued_messages 10000\n\
         # Ferrule's outgoing QoS 1/2 window (mosquitto: 20)\n\
         max_inflight_messages 256\n\
         # FERRULE_LOG=warn (mosquitto also logs notice and information)\n\
         log_type error\n\
         log_type warning\n"
    );
    for line in extra {
        let _ = writeln!(conf, "{line}");
    }
    conf
}

/// The rumqttd configuration: its example configuration (rumqttd.toml of
/// the crate) except what the comparison needs; docs/BENCHMARKS.md lists
/// each setting.
fn rumqttd_conf(port: u16, connections: usize) -> String {
    format!(
        "# written by ferrule bench mqtt\n\
         id = 0\n\
         [router]\n\
         id = 0\n\
         # the idle scenario's connections and the bench's own (example: 10010)\n\
         max_connections = {max_connections}\n\
         # Ferrule's outgoing QoS 1/2 window (example: 200)\n\
         max_outgoing_packet_count = 256\n\
         max_segment_size = 104857600\n\
         max_segment_count = 10\n\
         [v4.1]\n\
         name = \"v4-1\"\n\
         listen = \"127.0.0.1:{port}\"\n\
         # accept as fast as clients come (example: 1 ms between accepts)\n\
         next_connection_delay_ms = 0\n\
         [v4.1.connections]\n\
         connection_timeout_ms = 60000\n\
         max_payload_size = 20480\n\
         # Ferrule's outgoing QoS 1/2 window (example: 100)\n\
         max_inflight_count = 256\n\
         dynamic_filters = true\n",
        max_connections = connections + 1_000
    )
}

/// CPU time of both sides and the message counters at one instant.
pub(super) struct Snapshot {
    pub(super) at: Instant,
    broker_cpu: f64,
    own_cpu: f64,
    /// Busy seconds of the broker's and the load generator's cores.
    core_busy: [f64; 2],
    received: u64,
    sent: u64,
}

impl Snapshot {
    pub(super) fn take(pid: u32, received: &AtomicU64, sent: &AtomicU64) -> anyhow::Result<Self> {
        let busy = cpu_busy_seconds()?;
        let core = |i: usize| busy.get(i).copied().unwrap_or_default();
        Ok(Snapshot {
            at: Instant::now(),
            broker_cpu: cpu_seconds(pid)?,
            own_cpu: own_cpu_seconds()?,
            core_busy: [core(BROKER_CPU), core(LOADGEN_CPU)],
            received: received.load(Ordering::Relaxed),
            sent: sent.load(Ordering::Relaxed),
        })
    }

    pub(super) fn until(&self, end: &Snapshot) -> Measured {
        let secs = end.at.duration_since(self.at).as_secs_f64();
        Measured {
            offered: (end.sent - self.sent) as f64 / secs,
            delivered: (end.received - self.received) as f64 / secs,
            broker_cpu: (end.broker_cpu - self.broker_cpu) / secs,
            loadgen_cpu: (end.own_cpu - self.own_cpu) / secs,
            broker_core_busy: (end.core_busy[0] - self.core_busy[0]) / secs,
            loadgen_core_busy: (end.core_busy[1] - self.core_busy[1]) / secs,
        }
    }
}

/// Rates over a measurement window; CPU as a fraction of one core.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Measured {
    pub(super) offered: f64,
    pub(super) delivered: f64,
    pub(super) broker_cpu: f64,
    pub(super) loadgen_cpu: f64,
    /// All use of the broker's core, the broker's own included.
    pub(super) broker_core_busy: f64,
    /// All use of the load generator's core, its own included.
    pub(super) loadgen_core_busy: f64,
}

impl Measured {
    /// The largest share of a core that something besides the bench's own
    /// processes used during the run (other work on a shared machine, or
    /// interrupts). /proc/stat samples cores at the 250 Hz tick, so this is
    /// an estimate, reliable only when the load is steady.
    pub(super) fn disturbance(&self) -> f64 {
        (self.broker_core_busy - self.broker_cpu).max(self.loadgen_core_busy - self.loadgen_cpu)
    }
}

/// Runs a scenario until it is not disturbed by other load (at most
/// `ATTEMPTS` times, each after waiting for the machine to go quiet) and
/// keeps the least disturbed result.
async fn least_disturbed<T>(
    quiet_wait: Duration,
    what: &str,
    run: impl AsyncFnMut() -> anyhow::Result<T>,
    cpu: impl Fn(&T) -> Measured,
) -> anyhow::Result<T> {
    least_disturbed_of(ATTEMPTS, quiet_wait, what, run, cpu).await
}

/// [`least_disturbed`] with at most `attempts` runs (at least one).
pub(super) async fn least_disturbed_of<T>(
    attempts: usize,
    quiet_wait: Duration,
    what: &str,
    mut run: impl AsyncFnMut() -> anyhow::Result<T>,
    cpu: impl Fn(&T) -> Measured,
) -> anyhow::Result<T> {
    let mut best: Option<(f64, T)> = None;
    for attempt in 1..=attempts.max(1) {
        wait_for_quiet(quiet_wait).await?;
        eprintln!("{what} (attempt {attempt})…");
        let result = run().await?;
        let disturbance = cpu(&result).disturbance();
        eprintln!("  {:?}", cpu(&result));
        let quiet = disturbance <= DISTURBED;
        if best.as_ref().is_none_or(|(d, _)| disturbance < *d) {
            best = Some((disturbance, result));
        }
        if quiet {
            break;
        }
        eprintln!(
            "  warning: a core was {:.0} % busy beyond the bench's own processes",
            disturbance * 100.0
        );
    }
    let (disturbance, result) = best.expect("at least one attempt");
    if disturbance > DISTURBED {
        eprintln!("warning: {what}: every attempt was disturbed by other load; figures suspect");
    }
    Ok(result)
}

/// Waits (up to `quiet_wait`) until neither core is busier than
/// `QUIET_BELOW` over a second, so that a run does not start while other
/// work shares the machine; the brokers idle meanwhile.
async fn wait_for_quiet(quiet_wait: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let before = cpu_busy_seconds()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = cpu_busy_seconds()?;
        let busiest = [BROKER_CPU, LOADGEN_CPU]
            .iter()
            .map(|&c| after.get(c).unwrap_or(&0.0) - before.get(c).unwrap_or(&0.0))
            .fold(0.0, f64::max);
        if busiest < QUIET_BELOW {
            return Ok(());
        }
        if start.elapsed() > quiet_wait {
            eprintln!(
                "warning: the machine is still busy ({:.0} % on a core); running anyway",
                busiest * 100.0
            );
            return Ok(());
        }
    }
}

/// A throughput scenario's shape.
pub(super) struct Flow {
    pub(super) tag: &'static str,
    pub(super) topic: &'static str,
    pub(super) qos: QoS,
    pub(super) publishers: usize,
    pub(super) subscribers: usize,
}

pub(super) const FANIN0: Flow = Flow {
    tag: "in0",
    topic: "bench/fanin",
    qos: QoS::AtMostOnce,
    publishers: 4,
    subscribers: 1,
};
const FANIN1: Flow = Flow {
    tag: "in1",
    topic: "bench/fanin",
    qos: QoS::AtLeastOnce,
    publishers: 4,
    subscribers: 1,
};
const FANOUT0: Flow = Flow {
    tag: "out0",
    topic: "bench/fanout",
    qos: QoS::AtMostOnce,
    publishers: 1,
    subscribers: 20,
};

/// Subscribers first (each confirmed by SUBACK), then publishers; warm-up,
/// then the measurement window; then everything is torn down.
async fn throughput(
    broker: &Broker,
    flow: &Flow,
    window: u16,
    measure: Duration,
    prefix: &str,
) -> anyhow::Result<Measured> {
    let received = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for i in 0..flow.subscribers {
        let id = format!("{prefix}-{}-s{i}", flow.tag);
        let mut client = Client::connect(broker.addr, &id, loadgen::RUN_KEEPALIVE).await?;
        client.subscribe(flow.topic, flow.qos).await?;
        tasks.spawn(client.run_subscriber(received.clone()));
    }
    let payload = Bytes::from(vec![0x5a; PAYLOAD_LEN]);
    for i in 0..flow.publishers {
        let id = format!("{prefix}-{}-p{i}", flow.tag);
        let client = Client::connect(broker.addr, &id, loadgen::RUN_KEEPALIVE).await?;
        let (payload, sent) = (payload.clone(), sent.clone());
        if flow.qos == QoS::AtMostOnce {
            tasks.spawn(client.run_publisher_qos0(flow.topic, payload, sent));
        } else {
            tasks.spawn(client.run_publisher_qos1(flow.topic, payload, usize::from(window), sent));
        }
    }
    tokio::time::sleep(WARMUP).await;
    let start = Snapshot::take(broker.pid, &received, &sent)?;
    tokio::time::sleep(measure).await;
    let end = Snapshot::take(broker.pid, &received, &sent)?;
    // Every task runs until aborted: one that ended, failed.
    let ended = tasks.try_join_next();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    tokio::time::sleep(SETTLE).await;
    match ended {
        None => Ok(start.until(&end)),
        Some(Ok(Err(e))) => Err(e.context(format!("{} against {}", flow.tag, broker.name))),
        Some(Ok(Ok(()))) => bail!("a load generator task of {} ended early", flow.tag),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("a load generator task panicked")),
    }
}

/// Latency percentiles in microseconds over all rounds, plus the CPU use
/// (mean over the rounds).
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    samples: usize,
    lost: u64,
    cpu: Measured,
}

/// One latency round on one broker.
struct LatencyRound {
    /// Latencies in nanoseconds, sorted.
    samples: Vec<u64>,
    lost: u64,
    cpu: Measured,
}

impl Latency {
    /// Percentiles of the pooled samples of every round.
    fn pooled(rounds: &[LatencyRound]) -> Self {
        let mut all: Vec<u64> = rounds
            .iter()
            .flat_map(|r| r.samples.iter().copied())
            .collect();
        all.sort_unstable();
        let at = |q: f64| {
            all.get(((all.len().max(1) - 1) as f64 * q).round() as usize)
                .map_or(f64::NAN, |&ns| ns as f64 / 1e3)
        };
        let mut cpu = Measured::default();
        let n = rounds.len().max(1) as f64;
        for r in rounds {
            cpu.offered += r.cpu.offered / n;
            cpu.delivered += r.cpu.delivered / n;
            cpu.broker_cpu += r.cpu.broker_cpu / n;
            cpu.loadgen_cpu += r.cpu.loadgen_cpu / n;
            cpu.broker_core_busy += r.cpu.broker_core_busy / n;
            cpu.loadgen_core_busy += r.cpu.loadgen_core_busy / n;
        }
        Latency {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
            samples: all.len(),
            lost: rounds.iter().map(|r| r.lost).sum(),
            cpu,
        }
    }
}

async fn latency(
    broker: &Broker,
    rate: u32,
    measure: Duration,
    prefix: &str,
    trace: Option<std::path::PathBuf>,
) -> anyhow::Result<LatencyRound> {
    let none = AtomicU64::new(0);
    let start = Snapshot::take(broker.pid, &none, &none)?;
    let (addr, prefix) = (broker.addr, prefix.to_owned());
    let run = tokio::task::spawn_blocking(move || {
        loadgen::latency(addr, &prefix, "bench/latency", rate, WARMUP, measure)
    })
    .await??;
    let end = Snapshot::take(broker.pid, &none, &none)?;
    tokio::time::sleep(SETTLE).await;
    if let Some(path) = trace {
        let mut csv = String::from("send_us,latency_us\n");
        for (sent, latency) in &run.trace {
            let (sent, latency) = (*sent as f64 / 1e3, *latency as f64 / 1e3);
            let _ = writeln!(csv, "{sent:.1},{latency:.1}");
        }
        std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    if run.latencies_ns.is_empty() {
        bail!("no latency samples from {}", broker.name);
    }
    let mut cpu = start.until(&end);
    cpu.offered = f64::from(rate);
    cpu.delivered = run.latencies_ns.len() as f64 / measure.as_secs_f64();
    Ok(LatencyRound {
        lost: run
            .sent_in_window
            .saturating_sub(run.latencies_ns.len() as u64),
        samples: run.latencies_ns,
        cpu,
    })
}

#[derive(Debug, Clone, Copy, Default)]
struct Idle {
    connects_per_sec: f64,
    kib_per_connection: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// SYNs dropped on a full listen backlog during the ramp (system-wide).
    listen_overflows: u64,
    cpu: Measured,
}

/// The local address of idle connection `i`: one loopback address per
/// `IDLE_PER_SOURCE` connections, from 127.1.0.1 up.
fn idle_source(i: usize) -> IpAddr {
    let block = u32::try_from(i / IDLE_PER_SOURCE).unwrap_or(u32::MAX);
    let [_, b, c, d] = (0x7f01_0001_u32 + block).to_be_bytes();
    IpAddr::V4(std::net::Ipv4Addr::new(127, b, c, d))
}

/// Opens `n` connections, `CONNECT_PIPELINE` handshakes at a time, and
/// holds them; RSS is read before the ramp and `IDLE_WAIT` after it.
async fn idle(broker: &Broker, n: usize, pipeline: usize, prefix: &str) -> anyhow::Result<Idle> {
    let rss_before = rss_kib(broker.pid)?;
    let overflows_before = tcp_ext_counter("ListenOverflows")?;
    let none = AtomicU64::new(0);
    let start = Snapshot::take(broker.pid, &none, &none)?;
    let mut pending = JoinSet::new();
    let mut open = Vec::with_capacity(n);
    let mut started = 0;
    while open.len() < n {
        while pending.len() < pipeline.max(1) && started < n {
            let (addr, id) = (broker.addr, format!("{prefix}-i{started}"));
            let source = idle_source(started);
            pending.spawn(async move {
                Client::connect_from(Some(source), addr, &id, IDLE_KEEPALIVE)
                    .await
                    .map(Client::into_stream)
            });
            started += 1;
        }
        let Some(done) = pending.join_next().await else {
            break;
        };
        let stream = done
            .context("a connect task panicked")?
            .with_context(|| format!("idle connection {} to {}", open.len(), broker.name))?;
        open.push(stream);
    }
    let end = Snapshot::take(broker.pid, &none, &none)?;
    let overflows = tcp_ext_counter("ListenOverflows")? - overflows_before;
    let ramp = end.at.duration_since(start.at).as_secs_f64();
    tokio::time::sleep(IDLE_WAIT).await;
    let rss_after = rss_kib(broker.pid)?;
    drop(open);
    tokio::time::sleep(SETTLE * 2).await;
    let mut cpu = start.until(&end);
    cpu.offered = n as f64 / ramp;
    cpu.delivered = cpu.offered;
    Ok(Idle {
        connects_per_sec: n as f64 / ramp,
        kib_per_connection: (rss_after as f64 - rss_before as f64) / n as f64,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        listen_overflows: overflows,
        cpu,
    })
}

/// Results of each scenario, one per broker, in [`Results::brokers`] order
/// (Ferrule first, then the baselines).
#[derive(Default)]
struct Results {
    brokers: Vec<&'static str>,
    fanin0: Option<Vec<Measured>>,
    fanin1: Option<Vec<Measured>>,
    fanout0: Option<Vec<Measured>>,
    latency: Option<Vec<Latency>>,
    idle: Option<Vec<Idle>>,
}

/// Ferrule, then each baseline that is installed.
enum Contender {
    Ferrule,
    Baseline(Baseline),
}

impl Contender {
    fn name(&self) -> &'static str {
        match self {
            Contender::Ferrule => "ferrule",
            Contender::Baseline(b) => b.name(),
        }
    }

    async fn start(
        &self,
        args: &MqttArgs,
        connections: usize,
        acl_rules: u16,
    ) -> anyhow::Result<Broker> {
        match self {
            Contender::Ferrule => Broker::ferrule(acl_rules).await,
            Contender::Baseline(b) => b.start(args, connections).await,
        }
    }
}

async fn run(args: MqttArgs, nofile: u64) -> anyhow::Result<()> {
    let wanted = |s: Only| args.only.is_none_or(|o| o == s);
    let connections = {
        let fit = usize::try_from(nofile.saturating_sub(FD_HEADROOM))?;
        if args.connections > fit {
            eprintln!(
                "note: the open-files limit is {nofile}; opening {fit} idle connections \
                 instead of {}",
                args.connections
            );
        }
        args.connections.min(fit)
    };
    let prefix = {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        format!(
            "fb{:06x}",
            (u64::from(std::process::id()) * 1_000_003 + millis) & 0xff_ffff
        )
    };
    eprintln!(
        "load generator: pid {}, CPUs allowed {:?}; open-files limit {nofile}",
        std::process::id(),
        cpus_allowed(std::process::id())?
    );
    let mut contenders = vec![Contender::Ferrule];
    for &b in &args.baselines {
        if b.executable().is_some() {
            contenders.push(Contender::Baseline(b));
        } else {
            eprintln!("note: {} is not installed; it is left out", b.name());
        }
    }

    let mut results = Results {
        brokers: contenders.iter().map(Contender::name).collect(),
        ..Results::default()
    };
    let traffic = [Only::Fanin0, Only::Fanin1, Only::Fanout0, Only::Latency];
    if traffic.into_iter().any(wanted) {
        let mut brokers = Vec::new();
        for c in &contenders {
            let broker = c.start(&args, connections, args.acl_rules).await?;
            broker.check_pinned()?;
            brokers.push(broker);
        }
        traffic_scenarios(&args, &brokers, &prefix, &mut results).await?;
        for broker in brokers {
            broker.stop().await?;
        }
    }
    if wanted(Only::Idle) {
        // Fresh brokers for each attempt: memory that earlier scenarios (or
        // attempts) freed would otherwise be reused by the new connections
        // and hide their cost.
        let mut all = Vec::new();
        for (c, name) in contenders.iter().zip(&results.brokers) {
            let measured = least_disturbed(
                Duration::from_secs(args.quiet_wait_secs),
                &format!("{name}: {connections} idle connections, fresh broker"),
                async || {
                    let broker = c.start(&args, connections, 0).await?;
                    broker.check_pinned()?;
                    tokio::time::sleep(IDLE_WAIT).await;
                    let measured = idle(&broker, connections, args.connect_pipeline, &prefix).await;
                    broker.stop().await?;
                    measured
                },
                |i| i.cpu,
            )
            .await?;
            eprintln!("  {measured:?}");
            all.push(measured);
        }
        results.idle = Some(all);
    }
    let versions: Vec<String> = contenders
        .iter()
        .filter_map(|c| match c {
            Contender::Ferrule => None,
            Contender::Baseline(b) => Some(b.version()),
        })
        .collect();
    print!("{}", report(&results, &args, connections, &versions));
    Ok(())
}

/// The throughput and latency scenarios, on brokers that stay up for all
/// of them.
async fn traffic_scenarios(
    args: &MqttArgs,
    brokers: &[Broker],
    prefix: &str,
    results: &mut Results,
) -> anyhow::Result<()> {
    let measure = Duration::from_secs(args.seconds.max(1));
    let wanted = |s: Only| args.only.is_none_or(|o| o == s);
    let flows = [
        (Only::Fanin0, &FANIN0, &mut results.fanin0),
        (Only::Fanin1, &FANIN1, &mut results.fanin1),
        (Only::Fanout0, &FANOUT0, &mut results.fanout0),
    ];
    for (scenario, flow, slot) in flows {
        if !wanted(scenario) {
            continue;
        }
        let mut all = Vec::new();
        for b in brokers {
            all.push(
                least_disturbed(
                    Duration::from_secs(args.quiet_wait_secs),
                    &format!("{}: {}", b.name, flow.tag),
                    async || throughput(b, flow, args.window, measure, prefix).await,
                    |m| *m,
                )
                .await?,
            );
        }
        *slot = Some(all);
    }
    if wanted(Only::Latency) {
        // Rounds alternate between the brokers so that a spell of outside
        // noise (this machine is a shared VM) does not land on one only.
        let mut rounds: Vec<Vec<LatencyRound>> = brokers.iter().map(|_| Vec::new()).collect();
        for round in 1..=args.latency_rounds.max(1) {
            for (k, b) in brokers.iter().enumerate() {
                let trace = args.latency_trace.as_ref().map(|p| {
                    let mut file = p.as_os_str().to_owned();
                    file.push(format!(".{}.{round}.csv", b.name));
                    std::path::PathBuf::from(file)
                });
                let r = least_disturbed(
                    Duration::from_secs(args.quiet_wait_secs),
                    &format!("{}: latency round {round}", b.name),
                    async || latency(b, args.rate, measure, prefix, trace.clone()).await,
                    |r| r.cpu,
                )
                .await?;
                rounds[k].push(r);
            }
        }
        let pooled: Vec<Latency> = rounds.iter().map(|r| Latency::pooled(r)).collect();
        eprintln!("  {pooled:?}");
        results.latency = Some(pooled);
    }
    Ok(())
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

fn percent(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// One row of the main table: Ferrule's figure, each baseline's, Ferrule's
/// ratio to each baseline, and the target (stated against mosquitto).
struct Row<'a> {
    scenario: &'a str,
    values: Vec<f64>,
    /// Decimals of the figures (0 → thousands separators).
    decimals: usize,
    target: &'a str,
    met: Option<bool>,
}

fn figure(x: f64, decimals: usize) -> String {
    if decimals == 0 && x >= 10_000.0 {
        thousands(x)
    } else {
        format!("{x:.decimals$}")
    }
}

fn report(r: &Results, args: &MqttArgs, connections: usize, versions: &[String]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Ferrule {} against {}; {} s measurement windows after a {} s warm-up.\n",
        env!("CARGO_PKG_VERSION"),
        versions.join(" and "),
        args.seconds.max(1),
        WARMUP.as_secs()
    );
    if args.acl_rules > 0 {
        let _ = writeln!(
            t,
            "Ferrule with {} ACL rules in force in the benched tenant (`--acl-rules`); \
             the baselines without an ACL.\n",
            args.acl_rules
        );
    }
    let baselines = &r.brokers[1..];
    let mosquitto = r.brokers.iter().position(|b| *b == "mosquitto");
    let _ = writeln!(
        t,
        "| scenario | {} | {} | target | met |",
        r.brokers.join(" | "),
        baselines
            .iter()
            .map(|b| format!("÷ {b}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(
        t,
        "|---|{}{}---|---|",
        "---:|".repeat(r.brokers.len()),
        "---:|".repeat(baselines.len())
    );
    let mut rows: Vec<Row> = Vec::new();
    let fanin1 = format!(
        "fan-in QoS 1 (4 → 1, window {} per publisher), delivered msgs/s",
        args.window
    );
    let throughput_rows = [
        (
            "fan-in QoS 0 (4 → 1), delivered msgs/s",
            &r.fanin0,
            1.5,
            "≥ 1.5× mosquitto",
        ),
        (fanin1.as_str(), &r.fanin1, 5.0, "≥ 5× mosquitto"),
        (
            "fan-out QoS 0 (1 → 20), delivered msgs/s",
            &r.fanout0,
            5.0,
            "≥ 5× mosquitto",
        ),
    ];
    for (scenario, measured, want, target) in throughput_rows {
        if let Some(measured) = measured {
            let values: Vec<f64> = measured.iter().map(|m| m.delivered).collect();
            rows.push(Row {
                met: mosquitto.map(|i| values[0] / values[i] >= want),
                scenario,
                values,
                decimals: 0,
                target,
            });
        }
    }
    let latency_names: Vec<String> = ["p50", "p99", "p99.9", "max"]
        .iter()
        .map(|q| {
            format!(
                "latency QoS 1 at {} msgs/s ({} × {} s), {q} µs",
                thousands(f64::from(args.rate)),
                args.latency_rounds.max(1),
                args.seconds.max(1)
            )
        })
        .collect();
    if let Some(latency) = &r.latency {
        let quantiles: [fn(&Latency) -> f64; 4] = [|l| l.p50, |l| l.p99, |l| l.p999, |l| l.max];
        for (k, (quantile, scenario)) in quantiles.iter().zip(&latency_names).enumerate() {
            let values: Vec<f64> = latency.iter().map(quantile).collect();
            let p99 = k == 1;
            rows.push(Row {
                met: (p99 && mosquitto.is_some()).then(|| {
                    values[0] <= 1000.0 && mosquitto.is_some_and(|i| values[0] <= values[i])
                }),
                scenario,
                values,
                decimals: 0,
                target: if p99 {
                    "≤ 1,000 µs and ≤ mosquitto"
                } else {
                    ""
                },
            });
        }
    }
    let n = thousands(connections as f64);
    let idle_names = [
        format!("{n} idle connections, broker RSS KiB per connection"),
        format!("{n} idle connections, connects/s over the ramp"),
    ];
    if let Some(idle) = &r.idle {
        let per_connection: Vec<f64> = idle.iter().map(|i| i.kib_per_connection).collect();
        rows.push(Row {
            met: Some(per_connection[0] <= 4.0),
            scenario: &idle_names[0],
            values: per_connection,
            decimals: 2,
            target: "≤ 4 KiB",
        });
        let rate: Vec<f64> = idle.iter().map(|i| i.connects_per_sec).collect();
        rows.push(Row {
            met: Some(rate[0] >= 10_000.0),
            scenario: &idle_names[1],
            values: rate,
            decimals: 0,
            target: "≥ 10,000/s",
        });
    }
    for row in &rows {
        let figures: Vec<String> = row
            .values
            .iter()
            .map(|&v| figure(v, row.decimals))
            .collect();
        let ratios: Vec<String> = row.values[1..]
            .iter()
            .map(|&b| format!("{:.2}×", row.values[0] / b))
            .collect();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            row.scenario,
            figures.join(" | "),
            ratios.join(" | "),
            row.target,
            row.met.map_or("", yes)
        );
    }

    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| scenario | broker | offered/s | delivered/s | broker CPU | core 0 busy | load generator CPU | core 1 busy |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|");
    let mut cpu_rows: Vec<(&str, Vec<Measured>)> = Vec::new();
    if let Some(m) = &r.fanin0 {
        cpu_rows.push(("fan-in QoS 0 (msgs)", m.clone()));
    }
    if let Some(m) = &r.fanin1 {
        cpu_rows.push(("fan-in QoS 1 (msgs)", m.clone()));
    }
    if let Some(m) = &r.fanout0 {
        cpu_rows.push(("fan-out QoS 0 (msgs)", m.clone()));
    }
    if let Some(l) = &r.latency {
        cpu_rows.push(("latency (msgs)", l.iter().map(|l| l.cpu).collect()));
    }
    if let Some(i) = &r.idle {
        cpu_rows.push(("idle ramp (connects)", i.iter().map(|i| i.cpu).collect()));
    }
    for (name, measured) in cpu_rows {
        for (m, broker) in measured.iter().zip(&r.brokers) {
            let _ = writeln!(
                t,
                "| {name} | {broker} | {} | {} | {} | {} | {} | {} |",
                thousands(m.offered),
                thousands(m.delivered),
                percent(m.broker_cpu),
                percent(m.broker_core_busy),
                percent(m.loadgen_cpu),
                percent(m.loadgen_core_busy)
            );
        }
    }
    if let Some(latency) = &r.latency {
        let each: Vec<String> = latency
            .iter()
            .zip(&r.brokers)
            .map(|(l, b)| format!("{b} {} ({} lost)", l.samples, l.lost))
            .collect();
        let _ = writeln!(t, "\nLatency samples: {}.", each.join(", "));
    }
    if let Some(idle) = &r.idle {
        let rss: Vec<String> = idle
            .iter()
            .zip(&r.brokers)
            .map(|(i, b)| {
                format!(
                    "{b} {:.1} → {:.1} MiB",
                    i.rss_before_kib as f64 / 1024.0,
                    i.rss_after_kib as f64 / 1024.0
                )
            })
            .collect();
        let overflows: Vec<String> = idle
            .iter()
            .zip(&r.brokers)
            .map(|(i, b)| format!("{b} {}", i.listen_overflows))
            .collect();
        let _ = writeln!(
            t,
            "Idle RSS before → after: {}. Connects {} at a time; SYNs dropped on a full \
             listen backlog during the ramp: {}.",
            rss.join(", "),
            args.connect_pipeline,
            overflows.join(", ")
        );
    }
    t
}
