//! Rate limits (`[limits]`): a client over its limit is slowed — its
//! connection is not read until its tokens are there — while another
//! tenant's acknowledgements stay quick; HTTP ingest over the tenant's
//! limit is told to come back (429, `Retry-After`). Both are counted in
//! `ferrule_rate_limited_total{scope,tenant}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrule_mqtt::codec::{Packet, QoS};

use crate::mqtt_util::{Raw, V5, World, create_device, publish_packet};
use crate::telemetry_util::metric;
use crate::util::ServerBuilder;

/// Per-client limit in the flood test: low enough that a debug build on a
/// shared CI machine floods far beyond it.
const CLIENT_RATE: u64 = 200;

#[tokio::test]
async fn a_client_over_its_limit_is_slowed_while_another_tenants_acks_stay_quick() {
    let w = World::with(ServerBuilder::new().config_file(&format!(
        "[limits]\nclient_messages_per_sec = {CLIENT_RATE}\ntenant_messages_per_sec = 0\n"
    )))
    .await;
    let flood_token = create_device(&w.admin, "flood").await;
    let (beta_token, _) = w.beta().await;

    // The admin counts what the broker lets through from the flooder.
    let mut observer = w.observer().await;
    observer
        .subscribe(1, &[("devices/flood/#", QoS::AtMostOnce)])
        .await;
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counting = {
        let (delivered, stop) = (delivered.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let crate::mqtt_util::Event::Packet(Packet::Publish(_), _) =
                    observer.next(Duration::from_millis(100)).await
                {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // The flooder writes QoS 0 as fast as its socket takes it.
    let mut flood = Raw::login(&w.s.mqtt, V5, "flood", &flood_token, None).await;
    // Aborted at the end: its write may be blocked on a full socket.
    let flooding = {
        tokio::spawn(async move {
            let packet = Packet::Publish(publish_packet(
                "devices/flood/load",
                &[b'x'; 64],
                QoS::AtMostOnce,
                None,
            ));
            loop {
                for _ in 0..100 {
                    flood.send(packet.clone()).await;
                }
                tokio::task::yield_now().await;
            }
        })
    };

    // Meanwhile the other tenant's device publishes at QoS 1.
    let mut quiet = Raw::login(&w.s.mqtt, V5, "quiet", &beta_token, None).await;
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for id in 1..=40u16 {
        let sent = Instant::now();
        let code = quiet.publish1(id, "devices/pump/status", b"ok").await;
        assert!(!code.is_error(), "{code:?}");
        slowest = slowest.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    flooding.abort();
    let _ = counting.await;

    let got = delivered.load(Ordering::Relaxed);
    // A second of burst plus the rate for the time the flood ran, with a
    // generous margin; unlimited, a debug build passes thousands a second.
    let bound = CLIENT_RATE * (elapsed.as_secs() + 2) * 3 / 2;
    assert!(
        got <= bound,
        "{got} messages passed in {elapsed:?} (limit {CLIENT_RATE}/s)"
    );
    assert!(
        got >= CLIENT_RATE / 2,
        "the flooder was stopped, not slowed: {got}"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "another tenant's PUBACK took {slowest:?}"
    );
    let limited = metric(
        &w.s,
        r#"ferrule_rate_limited_total{scope="client",tenant="default"}"#,
    )
    .await;
    assert!(limited >= 1.0, "not counted");
    assert_eq!(
        metric(
            &w.s,
            r#"ferrule_rate_limited_total{scope="client",tenant="beta"}"#
        )
        .await,
        0.0
    );
    w.s.stop().await;
}

#[tokio::test]
async fn http_ingest_over_the_tenant_limit_gets_429_with_retry_after() {
    let w =
        World::with(ServerBuilder::new().config_file("[limits]\ntenant_messages_per_sec = 5\n"))
            .await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/ingest/telemetry", w.s.http);
    let post = || {
        client
            .post(&url)
            .bearer_auth(&w.pump)
            .header("content-type", "application/json")
            .body(r#"{"temp": 21.5}"#)
            .send()
    };
    // The burst is a second's worth.
    for i in 0..5 {
        let r = post().await.unwrap();
        assert_eq!(r.status(), 204, "request {i}: {}", r.text().await.unwrap());
    }
    let r = post().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert!(
        metric(
            &w.s,
            r#"ferrule_rate_limited_total{scope="tenant",tenant="default"}"#
        )
        .await
            >= 1.0
    );
    // Another tenant has its own budget.
    let (beta_token, _) = w.beta().await;
    let r = client
        .post(&url)
        .bearer_auth(&beta_token)
        .header("content-type", "application/json")
        .body(r#"{"temp": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // After the wait, it is accepted again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(post().await.unwrap().status(), 204);
    w.s.stop().await;
}

#[tokio::test]
async fn a_slowed_client_is_still_disconnected_at_once_when_its_device_is_deleted() {
    let w =
        World::with(ServerBuilder::new().config_file("[limits]\nclient_messages_per_sec = 1\n"))
            .await;
    let token = create_device(&w.admin, "flood").await;
    let mut flood = Raw::login(&w.s.mqtt, V5, "flood", &token, None).await;
    // 2,000 messages in one write: at 1/s, their tokens take minutes.
    let mut batch = tokio_util::bytes::BytesMut::new();
    for _ in 0..2_000 {
        ferrule_mqtt::codec::encode(
            &Packet::Publish(publish_packet(
                "devices/flood/load",
                b"x",
                QoS::AtMostOnce,
                None,
            )),
            V5,
            &mut batch,
        )
        .unwrap();
    }
    flood.send_raw(&batch).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = w.admin.delete("/api/v1/devices/flood").await;
    assert_eq!(r.status, 204, "{}", r.text);
    let deleted = Instant::now();
    let closed = flood.expect_close().await;
    assert!(
        deleted.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        deleted.elapsed()
    );
    assert!(
        matches!(closed.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ferrule_mqtt::codec::ReasonCode::ADMINISTRATIVE_ACTION),
        "{closed:?}"
    );
    w.s.stop().await;
}
