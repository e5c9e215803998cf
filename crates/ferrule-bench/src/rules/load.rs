//! One measured run: the publishers (and the fan-in's subscriber), a warm-up,
//! the window, and the engine's counters read from `/metrics` around it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrule_mqtt::codec::QoS;
use tokio::task::JoinSet;
use tokio_util::bytes::Bytes;

use super::api::Login;
use super::metrics::EngineCounters;
use super::report::Rates;
use crate::loadgen::{Client, RUN_KEEPALIVE};
use crate::mqtt::{Broker, FANIN0, PAYLOAD_LEN, SETTLE, Snapshot, WARMUP};

/// Distinct payloads each publisher cycles through, `seq` 0 to 499: a
/// multiple of every likely rule count (1, 2, 4, 5, 10, 20, 25, 50, 100), so
/// that each rule passes its exact share.
pub(super) const SEQ_CYCLE: usize = 500;
/// Longest wait for `/metrics`, which a saturated server answers between
/// its other work.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The payload with this `seq`: `{"temp":93.2,"seq":N,"pad":"xx…"}`, padded
/// to the broker benches' payload size. Every rule's `temp > 90` holds.
pub(super) fn payload(seq: usize) -> Bytes {
    let bare = format!(r#"{{"temp":93.2,"seq":{seq},"pad":""}}"#);
    let pad = "x".repeat(PAYLOAD_LEN.saturating_sub(bare.len()));
    Bytes::from(format!(r#"{{"temp":93.2,"seq":{seq},"pad":"{pad}"}}"#))
}

/// One of each payload, `seq` in order.
pub(super) fn payloads() -> Arc<[Bytes]> {
    (0..SEQ_CYCLE).map(payload).collect()
}

/// An engine-scenario publisher: its tenant's login and its topic.
pub(super) struct Publisher {
    pub(super) login: Login,
    pub(super) topic: String,
}

/// Reads the engine's counters from `/metrics`.
pub(super) struct Scraper {
    client: reqwest::Client,
    url: String,
}

impl Scraper {
    pub(super) fn new(base: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .build()
            .context("the HTTP client")?;
        Ok(Scraper {
            client,
            url: format!("{base}/metrics"),
        })
    }

    /// The counters, and when they were read: the middle of the request, as
    /// the server may take a while to answer under load.
    async fn scrape(&self) -> anyhow::Result<(Instant, EngineCounters)> {
        let asked = Instant::now();
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {}", self.url))?;
        let text = response
            .text()
            .await
            .with_context(|| format!("reading {}", self.url))?;
        let at = asked + asked.elapsed() / 2;
        Ok((at, EngineCounters::parse(&text)))
    }
}

/// Fan-in QoS 0 as in `bench mqtt` (4 anonymous publishers → 1 subscriber
/// on one topic of tenant `default`), with the bench's JSON payloads.
pub(super) async fn fanin(
    broker: &Broker,
    scraper: &Scraper,
    window: Duration,
    tag: &str,
) -> anyhow::Result<Rates> {
    let (received, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = JoinSet::new();
    for i in 0..FANIN0.subscribers {
        let id = format!("rules-{tag}-s{i}");
        let mut client = Client::connect(broker.addr, &id, RUN_KEEPALIVE).await?;
        client.subscribe(FANIN0.topic, QoS::AtMostOnce).await?;
        tasks.spawn(client.run_subscriber(received.clone()));
    }
    let payloads = payloads();
    for i in 0..FANIN0.publishers {
        let id = format!("rules-{tag}-p{i}");
        let client = Client::connect(broker.addr, &id, RUN_KEEPALIVE).await?;
        let (payloads, sent) = (payloads.clone(), sent.clone());
        tasks.spawn(async move {
            client
                .run_publisher_qos0_cycle(FANIN0.topic, &payloads, sent)
                .await
        });
    }
    let rates = measure(broker, scraper, &received, &sent, window).await;
    finish(tasks, "fan-in").await?;
    rates
}

/// The engine scenario: each publisher logs in to its tenant and publishes
/// on its own topic, which nobody subscribes to; as fast as TCP takes it,
/// or together at `rate` messages per second.
pub(super) async fn engine(
    broker: &Broker,
    scraper: &Scraper,
    publishers: &[Publisher],
    rate: Option<f64>,
    window: Duration,
    tag: &str,
) -> anyhow::Result<Rates> {
    let (received, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = JoinSet::new();
    let payloads = payloads();
    for (i, p) in publishers.iter().enumerate() {
        let id = format!("rules-{tag}-p{i}");
        let client = Client::connect_as(
            broker.addr,
            &id,
            RUN_KEEPALIVE,
            &p.login.username,
            &p.login.password,
        )
        .await
        .with_context(|| format!("publisher {i} logging in as {}", p.login.username))?;
        let (payloads, sent, topic) = (payloads.clone(), sent.clone(), p.topic.clone());
        let each = rate.map(|r| r / publishers.len() as f64);
        tasks.spawn(async move {
            match each {
                Some(r) => {
                    client
                        .run_publisher_qos0_paced(&topic, &payloads, r, sent)
                        .await
                }
                None => {
                    client
                        .run_publisher_qos0_cycle(&topic, &payloads, sent)
                        .await
                }
            }
        });
    }
    let rates = measure(broker, scraper, &received, &sent, window).await;
    finish(tasks, "engine").await?;
    rates
}

/// Warm-up, then the window: CPU and message counts of both sides, and the
/// engine's counters.
async fn measure(
    broker: &Broker,
    scraper: &Scraper,
    received: &AtomicU64,
    sent: &AtomicU64,
    window: Duration,
) -> anyhow::Result<Rates> {
    tokio::time::sleep(WARMUP).await;
    let (from, before) = scraper.scrape().await?;
    let start = Snapshot::take(broker.pid, received, sent)?;
    tokio::time::sleep(window).await;
    let end = Snapshot::take(broker.pid, received, sent)?;
    let (to, after) = scraper.scrape().await?;
    let secs = to.duration_since(from).as_secs_f64().max(f64::EPSILON);
    Ok(Rates::new(start.until(&end), before.until(&after), secs))
}

/// Stops the load (every task runs until aborted: one that ended, failed)
/// and lets the server settle.
async fn finish(mut tasks: JoinSet<anyhow::Result<()>>, what: &str) -> anyhow::Result<()> {
    let ended = tasks.try_join_next();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    tokio::time::sleep(SETTLE).await;
    match ended {
        None => Ok(()),
        Some(Ok(Err(e))) => Err(e.context(format!("a load generator task of the {what} run"))),
        Some(Ok(Ok(()))) => bail!("a load generator task of the {what} run ended early"),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("a load generator task panicked")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_of_the_broker_benches_size_with_every_seq_once() {
        let payloads = payloads();
        assert_eq!(payloads.len(), SEQ_CYCLE);
        for (seq, p) in payloads.iter().enumerate() {
            assert_eq!(p.len(), PAYLOAD_LEN, "{p:?}");
            let json: serde_json::Value = serde_json::from_slice(p).unwrap();
            assert_eq!(json["seq"], seq);
            assert!(json["temp"].as_f64().unwrap() > 90.0);
        }
    }
}
