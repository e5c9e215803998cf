//! Telemetry survives crashes: a PUBACK or a 2xx means the points are on
//! disk. The server is killed (`kill -9`) at random moments under a
//! pipelined QoS 1 load, again and again; every acknowledged point is there
//! afterwards, exactly once. Data also survives graceful restarts, whether
//! it sat in memory or in sealed chunks.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use ferrule_mqtt::codec::{self, Packet, QoS, ReasonCode};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::Rng;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::bytes::BytesMut;

use crate::mqtt_util::{V5, World, connect_packet, publish_packet};
use crate::telemetry_util::{
    all_points, chunks_sealed, history, ingest_event, ingest_ok, now_ms, restart, sealing_quickly,
    wait_sealed,
};
use crate::util::{Api, ServerBuilder};

/// Rounds that end in `kill -9`.
const KILL_ROUNDS: usize = 24;
/// QoS 1 publishes the client keeps in flight.
const WINDOW: usize = 32;
/// Readings per HTTP request.
const HTTP_BATCH: usize = 10;

/// The HTTP twin of [`publish_round`]: one request at a time of HTTP_BATCH
/// readings; a 204 acknowledges them all.
async fn http_round(
    base: &str,
    token: &str,
    ledger: &mut Ledger,
    new: bool,
    mut first_ack: FirstAck,
) -> Vec<u64> {
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/ingest/telemetry");
    let mut queue: VecDeque<u64> = ledger.pending.iter().copied().collect();
    let mut acked_now = Vec::new();
    loop {
        let batch: Vec<u64> = std::iter::from_fn(|| ledger.take(&mut queue, new))
            .take(HTTP_BATCH)
            .collect();
        if batch.is_empty() {
            return acked_now;
        }
        let body = Value::Array(batch.iter().map(|q| ledger.reading(*q)).collect());
        let sent = client
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 204 => {
                for seq in batch {
                    ledger.ack(seq);
                    acked_now.push(seq);
                }
                first_ack.arrived();
            }
            Ok(r) => panic!(
                "ingest answered {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) if e.is_timeout() => panic!("ingest hung: {e}"),
            // The server is gone.
            Err(_) => return acked_now,
        }
    }
}

/// Tells the killer that a round has had its first acknowledgement, so
/// that every round kills a server that was acknowledging (not one still
/// starting or accepting the connection).
struct FirstAck(Option<oneshot::Sender<()>>);

impl FirstAck {
    fn new() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (FirstAck(Some(tx)), rx)
    }

    /// For a round that nothing waits on.
    fn none() -> Self {
        FirstAck(None)
    }

    fn arrived(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Readings one query reads back at most (the API's raw limit is 100 000).
const PAGE: u64 = 50_000;

/// What a client knows across rounds.
struct Ledger {
    /// The key it sends.
    key: &'static str,
    /// `ts = t0 + seq`; the reading is `key` = seq.
    t0: i64,
    /// The next new seq.
    next: u64,
    /// Sent but not acknowledged: sent again in the next round, as a QoS 1
    /// client does after reconnecting.
    pending: BTreeSet<u64>,
    /// Acknowledged with PUBACK success.
    acked: BTreeSet<u64>,
}

impl Ledger {
    fn new(key: &'static str, t0: i64) -> Self {
        Ledger {
            key,
            t0,
            next: 0,
            pending: BTreeSet::new(),
            acked: BTreeSet::new(),
        }
    }

    fn reading(&self, seq: u64) -> Value {
        json!({"ts": self.t0 + seq as i64, "values": {self.key: seq}})
    }

    fn payload(&self, seq: u64) -> Vec<u8> {
        self.reading(seq).to_string().into_bytes()
    }

    /// The next seq to send: a pending one first, else (if `new`) a new one.
    fn take(&mut self, queue: &mut VecDeque<u64>, new: bool) -> Option<u64> {
        if let Some(seq) = queue.pop_front() {
            return Some(seq);
        }
        if !new {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        self.pending.insert(seq);
        Some(seq)
    }

    fn ack(&mut self, seq: u64) {
        self.pending.remove(&seq);
        self.acked.insert(seq);
    }
}

/// One MQTT 5 connection's life: resends what is pending, then (if `new`)
/// publishes new readings, WINDOW in flight, until the server goes away —
/// or, without `new`, until everything pending is acknowledged. Returns the
/// seqs acknowledged in this round.
async fn publish_round(
    addr: &str,
    token: &str,
    ledger: &mut Ledger,
    new: bool,
    mut first_ack: FirstAck,
) -> Vec<u64> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    let mut out = BytesMut::new();
    let connect = connect_packet(V5, "crash-client", Some(token), None);
    codec::encode(&Packet::Connect(Box::new(connect)), V5, &mut out).expect("encode");
    stream.write_all(&out).await.expect("send CONNECT");
    out.clear();
    let (mut rd, mut wr) = stream.into_split();
    let mut rbuf = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut connected = false;
    let mut queue: VecDeque<u64> = ledger.pending.iter().copied().collect();
    let mut inflight: HashMap<u16, u64> = HashMap::new();
    let mut next_id: u16 = 1;
    let mut acked_now = Vec::new();
    loop {
        if connected {
            while inflight.len() < WINDOW {
                let Some(seq) = ledger.take(&mut queue, new) else {
                    break;
                };
                let id = next_id;
                next_id = next_id.checked_add(1).unwrap_or(1);
                assert!(
                    !inflight.contains_key(&id),
                    "packet id {id} reused in flight"
                );
                let p = publish_packet(
                    "devices/pump/telemetry",
                    &ledger.payload(seq),
                    QoS::AtLeastOnce,
                    Some(id),
                );
                codec::encode(&Packet::Publish(p), V5, &mut out).expect("encode");
                inflight.insert(id, seq);
            }
            if inflight.is_empty() {
                // Nothing left to send or wait for (the final round).
                return acked_now;
            }
            if !out.is_empty() {
                if wr.write_all(&out).await.is_err() {
                    return acked_now;
                }
                out.clear();
            }
        }
        let n = match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut chunk)).await {
            Err(_) => panic!(
                "no acknowledgement for 10 s with {} in flight (connected: {connected})",
                inflight.len()
            ),
            Ok(Ok(0) | Err(_)) => return acked_now,
            Ok(Ok(n)) => n,
        };
        rbuf.extend_from_slice(&chunk[..n]);
        // A packet cut off by the kill stays incomplete in the buffer.
        while let Ok(Some(packet)) = codec::decode(&mut rbuf, V5, 1 << 20) {
            match packet {
                Packet::ConnAck(ack) => {
                    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{ack:?}");
                    connected = true;
                }
                Packet::PubAck(ack) => {
                    let seq = inflight
                        .remove(&ack.packet_id.get())
                        .unwrap_or_else(|| panic!("PUBACK for nothing in flight: {ack:?}"));
                    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "seq {seq}: {ack:?}");
                    ledger.ack(seq);
                    acked_now.push(seq);
                    first_ack.arrived();
                }
                // A server going down in an orderly way says so; not here.
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// The stored readings of the ledger's key with ts in `[t0 + lo, t0 + hi]`,
/// checked to be distinct and to carry the value their ts says; returns
/// their seqs.
async fn stored_seqs(api: &Api, ledger: &Ledger, lo: u64, hi: u64) -> Vec<u64> {
    let (key, t0) = (ledger.key, ledger.t0);
    let mut seqs: Vec<u64> = Vec::new();
    let mut from = lo;
    while from <= hi {
        let to = (from + PAGE).min(hi + 1);
        let answer = history(
            api,
            "pump",
            &format!(
                "keys={key}&limit=100000&from={}&to={}",
                t0 + from as i64,
                t0 + to as i64
            ),
        )
        .await;
        let points = answer[key].as_array().expect("points");
        assert!(
            points.len() as u64 <= PAGE,
            "a ts holds more than one point"
        );
        for p in points {
            let ts = p["ts"].as_i64().unwrap();
            let seq = (ts - t0) as u64;
            assert_eq!(p["value"], json!(seq), "{key}: the value stored at ts {ts}");
            if let Some(last) = seqs.last() {
                assert!(
                    seq > *last,
                    "{key}: seq {seq} stored twice (or out of order)"
                );
            }
            seqs.push(seq);
        }
        from = to;
    }
    seqs
}

/// Checks that the round acknowledged something and that every seq it
/// acknowledged is stored.
async fn assert_acked_stored(api: &Api, ledger: &Ledger, acked: &[u64], what: &str) {
    let (Some(lo), Some(hi)) = (acked.iter().min(), acked.iter().max()) else {
        panic!("{what}: nothing of {} was acknowledged", ledger.key);
    };
    let stored: BTreeSet<u64> = stored_seqs(api, ledger, *lo, *hi)
        .await
        .into_iter()
        .collect();
    let lost: Vec<&u64> = acked.iter().filter(|q| !stored.contains(q)).collect();
    assert!(
        lost.is_empty(),
        "{what}: {} acknowledged {} readings lost after kill -9, first {:?}",
        lost.len(),
        ledger.key,
        &lost[..lost.len().min(20)]
    );
}

/// Checks the end state: everything sent was acknowledged (the last round
/// resent what was pending) and is stored exactly once.
async fn assert_all_stored_once(api: &Api, ledger: &Ledger) {
    assert!(ledger.pending.is_empty(), "{}: still pending", ledger.key);
    let all: Vec<u64> = (0..ledger.next).collect();
    assert_eq!(ledger.acked.iter().copied().collect::<Vec<_>>(), all);
    let stored = stored_seqs(api, ledger, 0, ledger.next - 1).await;
    assert_eq!(
        stored.len(),
        all.len(),
        "{}: every reading stored once",
        ledger.key
    );
    assert_eq!(stored, all);
}

#[tokio::test]
async fn every_acknowledged_point_survives_kill_9_exactly_once() {
    // Two clients at once: MQTT 5 QoS 1 (PUBACK) on key `seq` and HTTP
    // ingest (204) on key `hseq`. Each round the server is killed 0–300 ms
    // after both clients had their first acknowledgement and restarted on
    // the same data directory; the clients reconnect and send again what
    // was not acknowledged.
    let started = std::time::Instant::now();
    let w = World::start().await;
    let (admin_token, pump) = (w.admin.token.clone().unwrap(), w.pump.clone());
    let mut s = w.s;
    // The first server's temp dir holds the data directory.
    let mut first_dir = None;
    let t0 = now_ms() - 3_600_000;
    let (mut mqtt, mut http) = (Ledger::new("seq", t0), Ledger::new("hseq", t0));
    let mut rng = rand::rng();
    let mut delays = Vec::new();
    let mut per_round = Vec::new();
    for round in 0..KILL_ROUNDS {
        let delay = rng.random_range(0..=300);
        delays.push(delay);
        let pid = Pid::from_raw(s.pid());
        let (mqtt_acked, mqtt_first) = FirstAck::new();
        let (http_acked, http_first) = FirstAck::new();
        let killer = async move {
            // A round that fails before its first acknowledgement drops
            // its sender; it reports why itself.
            let first = async { tokio::join!(mqtt_first, http_first) };
            if tokio::time::timeout(Duration::from_secs(10), first)
                .await
                .is_err()
            {
                panic!("round {round}: no first acknowledgement within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(delay)).await;
            kill(pid, Signal::SIGKILL).expect("kill -9");
        };
        let (by_mqtt, by_http, ()) = tokio::join!(
            publish_round(&s.mqtt, &pump, &mut mqtt, true, mqtt_acked),
            http_round(&s.http, &pump, &mut http, true, http_acked),
            killer
        );
        per_round.push((by_mqtt.len(), by_http.len()));
        let (again, dir) = restart(s, Signal::SIGKILL, ServerBuilder::new()).await;
        s = again;
        first_dir.get_or_insert(dir);
        // What this round acknowledged is there — read before anything is
        // sent again.
        let api = s.api(&admin_token);
        let what = format!(
            "round {round} (killed {delay} ms after acknowledging; delays so far {delays:?})"
        );
        assert_acked_stored(&api, &mqtt, &by_mqtt, &what).await;
        assert_acked_stored(&api, &http, &by_http, &what).await;
    }
    // A last round without a kill sends what is pending until acknowledged.
    tokio::join!(
        publish_round(&s.mqtt, &pump, &mut mqtt, false, FirstAck::none()),
        http_round(&s.http, &pump, &mut http, false, FirstAck::none())
    );
    let api = s.api(&admin_token);
    assert_all_stored_once(&api, &mqtt).await;
    assert_all_stored_once(&api, &http).await;
    eprintln!(
        "{KILL_ROUNDS} kills after {delays:?} ms; acknowledged per round (mqtt, http) {per_round:?}; {} + {} readings in {:.1} s",
        mqtt.next,
        http.next,
        started.elapsed().as_secs_f64()
    );
    let busy = |f: fn(&(usize, usize)) -> usize| per_round.iter().filter(|r| f(r) > 0).count();
    assert!(
        busy(|r| r.0) >= KILL_ROUNDS / 2 && busy(|r| r.1) >= KILL_ROUNDS / 2,
        "most rounds got readings acknowledged before the kill: {per_round:?}"
    );
    s.stop().await;
    drop(first_dir);
}

/// Everything readable about the tenant's data: the whole export, sorted.
async fn snapshot(api: &Api) -> Vec<String> {
    let r = api.get("/api/v1/export").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut lines: Vec<String> = r.text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn data_in_memory_and_in_chunks_survives_restarts() {
    let w = World::with(sealing_quickly()).await;
    let t0 = now_ms() - 3_600_000;
    let batch = |from: i64, n: i64| -> String {
        let objs: Vec<Value> = (from..from + n)
            .map(|i| json!({"ts": t0 + i * 1000, "values": {"n": i, "f": i as f64 / 8.0, "b": i % 2 == 0, "s": format!("v{i}")}}))
            .collect();
        Value::Array(objs).to_string()
    };
    // Sealed into chunks: the first 200 readings of each key.
    ingest_ok(&w.s, &w.pump, batch(0, 200)).await;
    wait_sealed(&w.s, chunks_sealed(&w.s).await + 4.0).await;
    // In memory (and in the log): overlapping the chunks, with rewrites.
    ingest_ok(&w.s, &w.pump, batch(150, 100)).await;
    ingest_ok(
        &w.s,
        &w.pump,
        json!({"ts": t0, "values": {"n": -1}}).to_string(),
    )
    .await;
    assert_eq!(
        ingest_event(&w.s, &w.pump, "boot", b"{\"n\": 1}")
            .await
            .status,
        204
    );
    let before = snapshot(&w.admin).await;
    assert_eq!(
        before.len(),
        250 * 4 + 1,
        "250 distinct timestamps per key (the rewrite replaced one), one event"
    );
    let n = all_points(&w.admin, "pump", "n").await;
    assert_eq!(n.len(), 250);
    assert_eq!(n[0], (t0, json!(-1)), "the later write wins");
    let admin_token = w.admin.token.clone().unwrap();

    // kill -9 right after the acknowledgements: from the log.
    let (s, dir1) = restart(w.s, Signal::SIGKILL, sealing_quickly()).await;
    assert_eq!(
        snapshot(&s.api(&admin_token)).await,
        before,
        "after kill -9"
    );
    // More data, then a graceful stop (which seals what is in memory).
    ingest_ok(&s, &w.pump, batch(250, 10)).await;
    let before = snapshot(&s.api(&admin_token)).await;
    let (s2, dir2) = restart(s, Signal::SIGTERM, sealing_quickly()).await;
    let api = s2.api(&admin_token);
    assert_eq!(snapshot(&api).await, before, "after SIGTERM");
    let latest = api
        .get("/api/v1/devices/pump/telemetry/latest?keys=s")
        .await;
    assert_eq!(
        latest.json,
        json!({"s": {"ts": t0 + 259_000, "value": "v259"}})
    );
    // And kill -9 once what came last has been sealed (the log trimmed).
    let sealed = chunks_sealed(&s2).await;
    ingest_ok(&s2, &w.pump, batch(260, 10)).await;
    let before = snapshot(&api).await;
    wait_sealed(&s2, sealed + 4.0).await;
    let (s3, dir3) = restart(s2, Signal::SIGKILL, sealing_quickly()).await;
    assert_eq!(
        snapshot(&s3.api(&admin_token)).await,
        before,
        "after sealing and kill -9"
    );
    s3.stop().await;
    drop((dir1, dir2, dir3));
}
