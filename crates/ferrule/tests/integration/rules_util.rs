//! Peers for rules tests: `mosquitto_sub` / `mosquitto_pub` logged in as
//! the admin, and a real local HTTP server that receives webhooks.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::util::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Server};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn mosquitto(tool: &str, server: &Server) -> Command {
    let (host, port) = server.mqtt.rsplit_once(':').expect("host:port");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut cmd = Command::new(tool);
    cmd.args(["-h", host, "-p", port, "-V", "mqttv311", "-i"])
        .arg(format!("{tool}-{}-{n}", std::process::id()))
        .args(["-u", &format!("user:{ADMIN_EMAIL}"), "-P", ADMIN_PASSWORD])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Publishes one message as the admin (QoS 1: acknowledged once routed).
pub async fn publish(server: &Server, topic: &str, payload: &str) {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        mosquitto("mosquitto_pub", server)
            .args(["-q", "1", "-t", topic, "-m", payload])
            .output(),
    )
    .await
    .expect("mosquitto_pub hung")
    .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `mosquitto_sub` on some filters of the admin's tenant.
pub struct Watch {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    probe: String,
}

impl Watch {
    /// Subscribed once this returns: a retained probe on its own topic
    /// arrives right after the SUBACK.
    pub async fn start(server: &Server, filters: &[&str]) -> Watch {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let probe = format!("probe/{}/{n}", std::process::id());
        let out = mosquitto("mosquitto_pub", server)
            .args(["-q", "1", "-r", "-t", &probe, "-m", "ready"])
            .output()
            .await
            .expect("probe");
        assert!(out.status.success());
        let mut cmd = mosquitto("mosquitto_sub", server);
        cmd.args(["-q", "1", "-F", "%t|%p", "-t", &probe]);
        for f in filters {
            cmd.args(["-t", f]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut watch = Watch {
            _child: child,
            lines,
            probe: String::new(),
        };
        let first = watch.next(Duration::from_secs(10)).await;
        assert_eq!(first, Some((probe.clone(), "ready".into())));
        // From now on the probe's topic is not reported.
        watch.probe = probe.clone();
        // Clear the probe so that it does not pile up.
        mosquitto("mosquitto_pub", server)
            .args(["-q", "1", "-r", "-n", "-t", &probe])
            .output()
            .await
            .expect("clear probe");
        watch
    }

    /// The next `(topic, payload)` within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .ok()?
                .ok()??;
            let (topic, payload) = line.split_once('|')?;
            if topic != self.probe {
                return Some((topic.to_owned(), payload.to_owned()));
            }
        }
    }

    /// Everything that arrives until `quiet` passes without a message.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<(String, String)> {
        let mut all = Vec::new();
        while let Some(m) = self.next(quiet).await {
            all.push(m);
        }
        all
    }
}

/// A webhook call as the receiving server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub at: Instant,
}

/// A local HTTP server that records every request and answers with the
/// status (after the delay) currently set.
pub struct Hook {
    pub url: String,
    pub received: mpsc::UnboundedReceiver<Received>,
    answer: Arc<Mutex<(u16, Duration)>>,
}

impl Hook {
    pub async fn start() -> Hook {
        let (tx, received) = mpsc::unbounded_channel();
        let answer = Arc::new(Mutex::new((200u16, Duration::ZERO)));
        let a = answer.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (tx, a) = (tx.clone(), a.clone());
                async move {
                    let _ = tx.send(Received {
                        method: method.to_string(),
                        path: uri.path().to_owned(),
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        at: Instant::now(),
                    });
                    let (status, delay) = *a.lock().expect("answer");
                    tokio::time::sleep(delay).await;
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hook {
            url,
            received,
            answer,
        }
    }

    /// From now on, answer `status` after `delay`.
    pub fn answer(&self, status: u16, delay: Duration) {
        *self.answer.lock().expect("answer") = (status, delay);
    }

    pub async fn next(&mut self, within: Duration) -> Option<Received> {
        tokio::time::timeout(within, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Creates a rule; panics unless 201.
pub async fn create_rule(api: &Api, id: &str, sql: &str, actions: Value) -> Value {
    let r = api
        .post(
            "/api/v1/rules",
            json!({"id": id, "name": id, "sql": sql, "actions": actions}),
        )
        .await;
    assert_eq!(r.status, 201, "create rule {id}: {}", r.text);
    r.json
}

/// Polls a rule's view until `check` holds (within 10 s).
pub async fn rule_until(api: &Api, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.get(&format!("/api/v1/rules/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if check(&r.json) {
            return r.json;
        }
        assert!(
            Instant::now() < deadline,
            "rule {id} never {what}: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
