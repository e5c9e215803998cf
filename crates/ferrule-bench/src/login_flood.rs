//! A login flood: wrong-password logins over HTTP and MQTT (`user:`
//! CONNECTs) at a fixed concurrency, while another client measures the
//! API's latency; the server's peak RSS and that latency, with the login
//! limits (`[auth]`) on and off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ferrule_mqtt::codec::{self, Connect, MqttStr, Packet, ProtocolVersion, ReasonCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::bytes::BytesMut;

use super::process::{rss_kib, start_ferrule_with, terminate};
use super::thousands;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Limits {
    On,
    Off,
    Both,
}

#[derive(Debug, Args)]
pub struct LoginFloodArgs {
    /// Wrong-password logins in all, half over HTTP, half over MQTT.
    #[arg(long, default_value_t = 1000)]
    pub logins: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The `[auth]` limits: the defaults (`on`), none (`off`: hashing on
    /// tokio's blocking threads, no backoff), or one run of each.
    #[arg(long, value_enum, default_value_t = Limits::Both)]
    pub limits: Limits,
    /// Accounts the flood guesses at (the first half exist).
    #[arg(long, default_value_t = 16)]
    pub accounts: usize,
}

const ADMIN_PASSWORD: &str = "bench-password";

#[derive(Debug, Default)]
struct Outcomes {
    wrong: AtomicU64,
    throttled: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
}

struct Figures {
    limits: &'static str,
    outcomes: Outcomes,
    took: Duration,
    idle_rss_kib: u64,
    peak_rss_kib: u64,
    after_rss_kib: u64,
    probe: Vec<Duration>,
}

pub fn main(args: LoginFloodArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    runtime.block_on(async {
        let mut all = Vec::new();
        if args.limits != Limits::Off {
            all.push(once(&args, true).await?);
        }
        if args.limits != Limits::On {
            all.push(once(&args, false).await?);
        }
        report(&args, &all);
        Ok(())
    })
}

async fn once(args: &LoginFloodArgs, limits: bool) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data = data.to_str().context("temp path is not UTF-8")?;
    let env: &[(&str, &str)] = if limits {
        &[]
    } else {
        &[
            ("FERRULE_AUTH_HASH_WORKERS", "0"),
            ("FERRULE_AUTH_FAILURES_BEFORE_BACKOFF", "0"),
            ("FERRULE_AUTH_SOURCE_FAILURES_BEFORE_BACKOFF", "0"),
        ]
    };
    let server =
        start_ferrule_with(&["--data-dir", data, "--http-listen", "127.0.0.1:0"], env).await?;
    let mut child = server.child;
    let pid = child.id().context("pid")?;
    let (http, mqtt) = (server.http, server.mqtt);
    let base = format!("http://{http}/api/v1");
    let client = reqwest::Client::new();
    let token = ready_and_login(&client, &base).await?;
    for i in 0..args.accounts / 2 {
        let r = client
            .post(format!("{base}/users"))
            .bearer_auth(&token)
            .json(&json!({"email": account(i), "password": "right-password-1", "role": "viewer"}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating a user: {}", r.status());
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = rss_kib(pid)?;

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle_rss_kib));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Another client: a read of the API, one after another, all along.
    let probe = {
        let (done, client, base, token) = (done.clone(), client.clone(), base.clone(), token);
        tokio::spawn(async move {
            let mut took = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = client
                    .get(format!("{base}/devices"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    took.push(t.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            took
        })
    };

    let outcomes = Arc::new(Outcomes::default());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, base, mqtt, outcomes, next) = (
            client.clone(),
            base.clone(),
            mqtt.clone(),
            outcomes.clone(),
            next.clone(),
        );
        let (logins, accounts) = (args.logins, args.accounts.max(1));
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= logins {
                    return;
                }
                let email = account(i % accounts);
                let counter = if i % 2 == 0 {
                    http_login(&client, &base, &email, &outcomes).await
                } else {
                    mqtt_login(&mqtt, &email, &outcomes).await
                };
                if counter.is_err() {
                    outcomes.other.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let took = start.elapsed();
    // The API keeps being measured briefly after the flood, as a client
    // would see the server recover.
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let probe = probe.await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_rss_kib = rss_kib(pid)?;
    terminate(&mut child).await?;
    let outcomes = Arc::try_unwrap(outcomes).unwrap_or_default();
    Ok(Figures {
        limits: if limits { "on (defaults)" } else { "off" },
        outcomes,
        took,
        idle_rss_kib,
        peak_rss_kib: peak.load(Ordering::Relaxed),
        after_rss_kib,
        probe,
    })
}

fn account(i: usize) -> String {
    format!("user{i}@bench.example")
}

async fn ready_and_login(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .post(format!("{base}/auth/login"))
            .json(&json!({"email": "admin@localhost", "password": ADMIN_PASSWORD}))
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            let body: serde_json::Value = r.json().await?;
            return body["token"]
                .as_str()
                .map(str::to_owned)
                .context("login without a token");
        }
        if Instant::now() > deadline {
            bail!("ferrule did not let the admin log in within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn http_login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    outcomes: &Outcomes,
) -> anyhow::Result<()> {
    let r = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": "wrong-password"}))
        .send()
        .await?;
    let counter = match r.status().as_u16() {
        401 => &outcomes.wrong,
        429 => &outcomes.throttled,
        503 => &outcomes.busy,
        _ => &outcomes.other,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn mqtt_login(addr: &str, email: &str, outcomes: &Outcomes) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut connect = Connect::new(ProtocolVersion::V5, MqttStr::new("flood")?, 30);
    connect.username = Some(MqttStr::new(&format!("user:{email}"))?);
    connect.password = Some(b"wrong-password".to_vec().into());
    let mut out = BytesMut::new();
    codec::encode(
        &Packet::Connect(Box::new(connect)),
        ProtocolVersion::V5,
        &mut out,
    )?;
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(256);
    let code = loop {
        if let Some(Packet::ConnAck(ack)) = codec::decode(&mut buf, ProtocolVersion::V5, 1 << 16)? {
            break ack.reason_code;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("closed without CONNACK");
        }
    };
    let counter = match code {
        ReasonCode::BAD_USER_NAME_OR_PASSWORD => &outcomes.wrong,
        ReasonCode::CONNECTION_RATE_EXCEEDED => &outcomes.throttled,
        ReasonCode::SERVER_BUSY => &outcomes.busy,
        _ => &outcomes.other,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(args: &LoginFloodArgs, all: &[Figures]) {
    println!(
        "{} wrong-password logins ({} HTTP, {} MQTT `user:` CONNECT) at concurrency {}, \
         over {} accounts ({} existing), while another client reads the API:\n",
        thousands(args.logins as f64),
        args.logins.div_ceil(2),
        args.logins / 2,
        args.concurrency,
        args.accounts,
        args.accounts / 2,
    );
    println!(
        "| limits | flood took | 401 / 0x86 | 429 / 0x9F | 503 / 0x89 | other | \
         RSS idle | RSS peak | RSS 2 s after | API p50 | API p99 | API max | API reads |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in all {
        let mut probe = f.probe.clone();
        probe.sort();
        let o = &f.outcomes;
        println!(
            "| {} | {:.2} s | {} | {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            f.limits,
            f.took.as_secs_f64(),
            o.wrong.load(Ordering::Relaxed),
            o.throttled.load(Ordering::Relaxed),
            o.busy.load(Ordering::Relaxed),
            o.other.load(Ordering::Relaxed),
            f.idle_rss_kib as f64 / 1024.0,
            f.peak_rss_kib as f64 / 1024.0,
            f.after_rss_kib as f64 / 1024.0,
            percentile(&probe, 0.5).as_secs_f64() * 1e3,
            percentile(&probe, 0.99).as_secs_f64() * 1e3,
            probe.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            probe.len(),
        );
    }
}
