//! `ferrule bench slow-subscriber`: what a subscriber that stops reading
//! costs the broker. One client subscribes at QoS 1 and never reads again
//! (nor acknowledges); publishers go on publishing QoS 1 to its topic. The
//! broker's RSS is sampled throughout; its peak and the messages it dropped
//! are reported. Each broker runs twice, with the byte bound off and on:
//! Ferrule with `mqtt.max_queued_bytes` at 1 TiB, then at its default
//! (8 MiB); mosquitto with its default (no byte bound), then with
//! `max_queued_bytes 8388608`, as a user who wants the memory bounded would
//! set it. Both keep the message-count bound and window of `bench mqtt`
//! (10,000 messages, 256 in flight).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ferrule_mqtt::broker::observe;
use ferrule_mqtt::codec::QoS;
use tokio::task::JoinSet;
use tokio_util::bytes::Bytes;

use super::loadgen::Client;
use super::mqtt::Broker;
use super::process::rss_kib;
use super::thousands;

const TOPIC: &str = "bench/slow";
/// QoS 1 messages each publisher keeps unacknowledged.
const WINDOW: usize = 64;
/// How often the broker's RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// mosquitto's byte bound, Ferrule's default.
const QUEUED_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct SlowSubscriberArgs {
    /// How long the publishers run, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Publishers, each keeping 64 QoS 1 messages unacknowledged.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Payload bytes of each message.
    #[arg(long, default_value_t = 16 * 1024)]
    pub payload: usize,
    /// Run against Ferrule only (no mosquitto baseline).
    #[arg(long)]
    pub ferrule_only: bool,
}

/// `mqtt.max_queued_bytes` for Ferrule without a byte bound.
const UNBOUNDED: &str = "1099511627776";

/// One broker's figures.
struct Row {
    broker: &'static str,
    /// The byte bound, as configured.
    bound: &'static str,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_end_kib: u64,
    published: u64,
    /// Messages the broker counted as dropped (`None`: not exposed).
    dropped: Option<u64>,
}

pub async fn run(args: SlowSubscriberArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let off = Broker::ferrule_with_env(0, &[("FERRULE_MQTT_MAX_QUEUED_BYTES", UNBOUNDED)]).await?;
    rows.push(scenario(&off, "off", &args).await?);
    off.stop().await?;
    let on = Broker::ferrule_with_env(0, &[]).await?;
    rows.push(scenario(&on, "8 MiB (default)", &args).await?);
    on.stop().await?;
    if !args.ferrule_only {
        let off = Broker::mosquitto(&[]).await?;
        rows.push(scenario(&off, "off (default)", &args).await?);
        off.stop().await?;
        let on = Broker::mosquitto(&[format!("max_queued_bytes {QUEUED_BYTES}")]).await?;
        rows.push(scenario(&on, "8 MiB", &args).await?);
        on.stop().await?;
    }
    println!(
        "\n### Slow subscriber ({} publishers, QoS 1, {} B payloads, {} s)\n",
        args.publishers, args.payload, args.seconds
    );
    println!(
        "| broker | byte bound | messages published | dropped | RSS before | RSS peak | RSS at end |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.broker,
            r.bound,
            thousands(r.published as f64),
            r.dropped
                .map_or_else(|| "not exposed".to_owned(), |d| thousands(d as f64)),
            mib(r.rss_before_kib),
            mib(r.rss_peak_kib),
            mib(r.rss_end_kib),
        );
    }
    Ok(())
}

async fn scenario(
    broker: &Broker,
    bound: &'static str,
    args: &SlowSubscriberArgs,
) -> anyhow::Result<Row> {
    eprintln!(
        "{} (byte bound {bound}): a subscriber that stops reading…",
        broker.name
    );
    let mut sleeper = Client::connect(broker.addr, "slow-subscriber", 0).await?;
    sleeper.subscribe(TOPIC, QoS::AtLeastOnce).await?;
    // From here on it neither reads nor acknowledges; it stays connected.
    let rss_before_kib = rss_kib(broker.pid)?;
    let sent = Arc::new(AtomicU64::new(0));
    let payload = Bytes::from(vec![0x5a; args.payload]);
    let mut tasks = JoinSet::new();
    for i in 0..args.publishers {
        let client = Client::connect(broker.addr, &format!("slow-pub-{i}"), 0).await?;
        tasks.spawn(client.run_publisher_qos1(TOPIC, payload.clone(), WINDOW, sent.clone()));
    }
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut rss_peak_kib = rss_before_kib;
    while Instant::now() < until {
        tokio::time::sleep(SAMPLE_EVERY).await;
        rss_peak_kib = rss_peak_kib.max(rss_kib(broker.pid)?);
        // Every publisher runs until aborted: one that ended, failed.
        match tasks.try_join_next() {
            None => {}
            Some(Ok(Err(e))) => return Err(e.context(format!("a publisher to {}", broker.name))),
            Some(Ok(Ok(()))) => bail!("a publisher to {} ended early", broker.name),
            Some(Err(e)) => return Err(anyhow::Error::new(e).context("a publisher panicked")),
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let rss_end_kib = rss_kib(broker.pid)?;
    rss_peak_kib = rss_peak_kib.max(rss_end_kib);
    let dropped = match &broker.http {
        Some(http) => Some(dropped(http).await?),
        None => None,
    };
    drop(sleeper);
    Ok(Row {
        broker: broker.name,
        bound,
        rss_before_kib,
        rss_peak_kib,
        rss_end_kib,
        published: sent.load(Ordering::Relaxed),
        dropped,
    })
}

/// Ferrule's `ferrule_mqtt_messages_dropped_total` for full queues, in
/// messages and in bytes.
async fn dropped(http: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await?
        .text()
        .await
        .context("reading /metrics")?;
    Ok(text
        .lines()
        .filter(|l| {
            l.strip_prefix(observe::DROPPED)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .filter(|l| l.contains(r#"reason="queue_bytes""#) || l.contains(r#"reason="queue_full""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}
