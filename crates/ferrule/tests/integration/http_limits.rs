//! HTTP connection limits: header, idle and body timeouts, a bound on the
//! request head, and connection caps in all and per address, each counted
//! in /metrics. Raw sockets, since no client library misbehaves on purpose.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mqtt_util::{Raw, V5, connect_packet};
use crate::util::{Server, ServerBuilder};

fn addr(s: &Server) -> String {
    s.http.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes; how long that took, or `None` when it did
/// not close within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one response head and `Content-Length` body; returns the head.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response")
            .expect("read");
        assert!(n > 0, "closed before a response: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return head;
            }
        }
    }
}

fn metric(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// The issue's attack: many half-sent requests from one address. Each is
/// closed after the header timeout, and meanwhile the API and MQTT's
/// accept keep serving everyone else.
#[tokio::test]
async fn half_sent_requests_are_closed_and_others_are_still_served() {
    let s = ServerBuilder::new()
        .env("FERRULE_HTTP_HEADER_TIMEOUT", "1s")
        .env("FERRULE_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "200")
        .start()
        .await;
    let mut half_sent = Vec::new();
    for _ in 0..100 {
        let mut c = TcpStream::connect(addr(&s)).await.unwrap();
        c.write_all(b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        half_sent.push(c);
    }
    // Others are served meanwhile: the API, and MQTT's accept.
    let r = s.anon().get("/healthz").await;
    assert_eq!(r.status, 200);
    let (_mqtt, ack, _) = Raw::connect(&s.mqtt, connect_packet(V5, "probe", None, None)).await;
    assert!(
        ack.reason_code.is_error(),
        "anonymous must be refused, by a CONNACK"
    );

    for c in &mut half_sent {
        let took = closed_within(c, Duration::from_secs(5))
            .await
            .expect("a half-sent request must be closed after the header timeout");
        assert!(took < Duration::from_secs(4), "closed after {took:?}");
    }
    let metrics = s.anon().get("/metrics").await.text;
    assert!(
        metric(&metrics, r#"ferrule_http_timeouts_total{kind="header"} "#) >= 100,
        "{metrics}"
    );
    s.stop().await;
}

/// Above `http.max_connections_per_address`, a connection is closed as
/// soon as accepted and counted; places come back when connections close.
#[tokio::test]
async fn the_per_address_cap_refuses_the_excess_and_counts_it() {
    let s = ServerBuilder::new()
        .env("FERRULE_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "5")
        .start()
        .await;
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(TcpStream::connect(addr(&s)).await.unwrap());
        // The accept loop takes them in order.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut open = 0;
    for c in &mut conns {
        if closed_within(c, Duration::from_millis(300)).await.is_none() {
            open += 1;
        }
    }
    // The test client's pooled connection (from the readiness check) may
    // hold one place.
    assert!((4..=5).contains(&open), "{open} of 8 stayed open");
    drop(conns);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = s.anon().get("/metrics").await.text;
    let refused = metric(
        &metrics,
        r#"ferrule_http_connections_refused_total{reason="per_address"} "#,
    );
    assert_eq!(refused, 8 - open, "{metrics}");
    s.stop().await;
}

/// A keep-alive connection at rest is closed after the idle timeout, and
/// the idle timeout is not the (longer, here) header timeout.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = ServerBuilder::new()
        .env("FERRULE_HTTP_IDLE_TIMEOUT", "1s")
        .env("FERRULE_HTTP_HEADER_TIMEOUT", "10s")
        .start()
        .await;
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let took = closed_within(&mut c, Duration::from_secs(8))
        .await
        .expect("an idle connection must be closed");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    let metrics = s.anon().get("/metrics").await.text;
    assert!(
        metric(&metrics, r#"ferrule_http_timeouts_total{kind="idle"} "#) >= 1,
        "{metrics}"
    );
    s.stop().await;
}

/// A body that does not arrive within the body timeout is answered 408
/// and the connection closed; a body that arrives is served.
#[tokio::test]
async fn a_slow_body_times_out_with_408() {
    let s = ServerBuilder::new()
        .env("FERRULE_HTTP_BODY_TIMEOUT", "1s")
        .start()
        .await;
    // Logging in reads a body: it still works.
    s.admin().await;
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    c.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    let start = Instant::now();
    let head = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(
        closed_within(&mut c, Duration::from_secs(3))
            .await
            .is_some(),
        "closed after a 408"
    );
    let metrics = s.anon().get("/metrics").await.text;
    assert_eq!(
        metric(&metrics, r#"ferrule_http_timeouts_total{kind="body"} "#),
        1,
        "{metrics}"
    );
    s.stop().await;
}

/// A request head above `http.max_header_bytes` gets 431.
#[tokio::test]
async fn a_request_head_above_the_limit_gets_431() {
    let s = ServerBuilder::new()
        .env("FERRULE_HTTP_MAX_HEADER_BYTES", "8192")
        .start()
        .await;
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    let big = "a".repeat(10_000);
    c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    s.stop().await;
}
