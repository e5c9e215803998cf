//! `ferrule bench slow-http`: many half-sent HTTP requests from one address
//! (slowloris: each drips a header byte now and then, never finishing its
//! head) while a client at another address measures the API's latency and
//! MQTT connects. Once with the HTTP limits off (timeouts of an hour, caps
//! out of reach), once with the defaults. The server runs with a small
//! file-descriptor limit, as many hosts give by default, so that "off"
//! shows what the attack did.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::loadgen::Client;
use super::process::{START_WITHIN, raise_nofile_limit, terminate};
use crate::launch::{Starting, server_binary};

#[derive(Debug, Args)]
pub struct SlowHttpArgs {
    /// Half-sent connections the attacker keeps open (it reopens those
    /// the server closes).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// How long to measure, in seconds, once the attack is under way.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// The server's limit on open files.
    #[arg(long, default_value_t = 1024)]
    pub server_nofile: u64,
}

/// The attacker's and the measuring client's source addresses.
const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
/// A probe that takes longer than this counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

struct Figures {
    open_attack: u64,
    api: Vec<Duration>,
    api_failed: u64,
    mqtt: Vec<Duration>,
    mqtt_failed: u64,
}

pub async fn run(args: SlowHttpArgs) -> anyhow::Result<()> {
    raise_nofile_limit()?;
    println!(
        "{} half-sent connections from {ATTACKER}; probes from {CLIENT}; server nofile {}; {} s each",
        args.connections, args.server_nofile, args.secs
    );
    println!(
        "| HTTP limits | attack conns open | API ok | API failed | API p50 | API p99 | MQTT connects ok | failed | MQTT connect p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let off: &[(&str, &str)] = &[
        ("FERRULE_HTTP_HEADER_TIMEOUT", "1h"),
        ("FERRULE_HTTP_IDLE_TIMEOUT", "1h"),
        ("FERRULE_HTTP_MAX_CONNECTIONS", "1000000"),
        ("FERRULE_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "1000000"),
    ];
    for (name, env) in [("off", off), ("on (defaults)", &[][..])] {
        let f = scenario(&args, env).await?;
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f.open_attack,
            f.api.len(),
            f.api_failed,
            ms(percentile(&f.api, 0.50)),
            ms(percentile(&f.api, 0.99)),
            f.mqtt.len(),
            f.mqtt_failed,
            ms(percentile(&f.mqtt, 0.99)),
        );
    }
    Ok(())
}

async fn scenario(args: &SlowHttpArgs, env: &[(&str, &str)]) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = spawn(
        args.server_nofile,
        data.to_str().context("UTF-8 path")?,
        env,
    )?
    .ready(START_WITHIN)
    .await?;
    let (mut child, http, mqtt) = (server.child, server.http, server.mqtt);
    let (http, mqtt): (SocketAddr, SocketAddr) = (http.parse()?, mqtt.parse()?);
    let stop = CancellationToken::new();
    let open = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for _ in 0..args.connections {
        attackers.push(tokio::spawn(attacker(http, open.clone(), stop.clone())));
    }
    // Let the attack build up before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut f = Figures {
        open_attack: 0,
        api: Vec::new(),
        api_failed: 0,
        mqtt: Vec::new(),
        mqtt_failed: 0,
    };
    let end = Instant::now() + Duration::from_secs(args.secs);
    let mut n = 0u64;
    while Instant::now() < end {
        match tokio::time::timeout(PROBE_TIMEOUT, api_probe(http)).await {
            Ok(Ok(t)) => f.api.push(t),
            _ => f.api_failed += 1,
        }
        n += 1;
        let start = Instant::now();
        let id = format!("probe-{n}");
        match tokio::time::timeout(
            PROBE_TIMEOUT,
            Client::connect_from(Some(CLIENT), mqtt, &id, 30),
        )
        .await
        {
            Ok(Ok(_)) => f.mqtt.push(start.elapsed()),
            _ => f.mqtt_failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.open_attack = open.load(Ordering::Relaxed);
    stop.cancel();
    for a in attackers {
        let _ = a.await;
    }
    terminate(&mut child).await?;
    Ok(f)
}

/// Starts `serve` under `ulimit -n nofile` (a shell sets it: no unsafe
/// pre-exec hook), anonymous MQTT allowed for the probes.
fn spawn(nofile: u64, data: &str, env: &[(&str, &str)]) -> anyhow::Result<Starting> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(server_binary()?)
        .args([
            "serve",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", data, "--mqtt-allow-anonymous", "true"])
        .env("FERRULE_ADMIN_PASSWORD", "bench-password")
        .env("FERRULE_LOG", "error")
        // Probes connect at a steady pace; do not let MQTT's own per-IP
        // rate limit decide.
        .env("FERRULE_MQTT_MAX_CONNECT_RATE_PER_IP", "100000")
        .envs(env.iter().copied());
    Starting::spawn(&mut command, true)
}

/// Keeps one half-sent request open: a partial head, then a header byte
/// every few seconds; reopens when the server closes it.
async fn attacker(http: SocketAddr, open: Arc<AtomicU64>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let Ok(mut s) = connect_from(ATTACKER, http).await else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
            }
        };
        if s.write_all(b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nX-a: ")
            .await
            .is_err()
        {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    open.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                r = s.read(&mut buf) => match r {
                    Ok(n) if n > 0 => continue,
                    _ => break,
                },
                _ = tokio::time::sleep(Duration::from_secs(3)) => {
                    if s.write_all(b"a").await.is_err() {
                        break;
                    }
                }
            }
        }
        open.fetch_sub(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// `GET /healthz` on a new connection (an attacker's victim must be able
/// to connect, not only to reuse a connection); time to the whole answer.
async fn api_probe(http: SocketAddr) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut s = connect_from(CLIENT, http).await?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).await?;
    anyhow::ensure!(got.starts_with(b"HTTP/1.1 200"), "not a 200");
    Ok(start.elapsed())
}

fn percentile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut s = samples.to_vec();
    s.sort();
    let i = ((s.len() as f64 * q).ceil() as usize).checked_sub(1)?;
    s.get(i).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "–".to_owned())
}
