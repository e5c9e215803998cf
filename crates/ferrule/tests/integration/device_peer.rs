//! A real paho-mqtt device (tests/peers/device.py) driven from a test:
//! it answers commands by their name and reports what it receives.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::util::Server;

pub struct DevicePeer {
    device: String,
    backlog: std::collections::VecDeque<Value>,
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
}

/// How a device peer connects.
pub struct Connect<'a> {
    pub device: &'a str,
    pub token: &'a str,
    /// 3 or 5.
    pub version: u8,
    pub client_id: &'a str,
    pub clean: bool,
}

impl DevicePeer {
    /// Starts the device and waits until it is subscribed.
    pub async fn start(server: &Server, c: Connect<'_>) -> DevicePeer {
        let (host, port) = server.mqtt.rsplit_once(':').expect("host:port");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/device.py");
        let mut child = Command::new("python3")
            .arg(script)
            .env("MQTT_HOST", host)
            .env("MQTT_PORT", port)
            .env("PROTO", c.version.to_string())
            .env("DEVICE", c.device)
            .env("TOKEN", c.token)
            .env("CLIENT_ID", c.client_id)
            .env("CLEAN", if c.clean { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with paho-mqtt");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("device peer: {line}"),
                }
            }
        });
        let mut peer = DevicePeer {
            device: c.device.to_owned(),
            backlog: Default::default(),
            child,
            stdin,
            events,
        };
        peer.expect("ready", |_| true).await;
        peer
    }

    /// The next event named `event` for which `pred` holds (others are
    /// skipped), within 10 s.
    pub async fn expect(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let wanted = |got: &Value| got["event"] == event && pred(got);
        // Events waited past stay for later waits: a delta may overtake
        // the PUBACK of the report that caused it.
        if let Some(i) = self.backlog.iter().position(wanted) {
            return self.backlog.remove(i).expect("found");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "device peer: no such {event} event within 10 s; got {:?}",
                        self.backlog
                    )
                })
                .unwrap_or_else(|| {
                    panic!(
                        "device peer exited before a {event} event; got {:?}",
                        self.backlog
                    )
                });
            if wanted(&got) {
                return got;
            }
            self.backlog.push_back(got);
        }
    }

    /// Asserts that no event named `event` arrives for `within`.
    pub async fn expect_none(&mut self, event: &str, within: Duration) {
        assert!(
            !self.backlog.iter().any(|got| got["event"] == event),
            "unexpected {:?}",
            self.backlog
        );
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(got)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert_ne!(got["event"], event, "unexpected {got}");
        }
    }

    /// Publishes reported state at QoS 1; returns the PUBACK reason code.
    pub async fn report(&mut self, state: &Value) -> i64 {
        self.publish("state/reported", &state.to_string()).await
    }

    /// Publishes on `devices/{id}/{suffix}` at QoS 1 (one line of payload);
    /// returns the PUBACK reason code (always 0 in 3.1.1).
    pub async fn publish(&mut self, suffix: &str, payload: &str) -> i64 {
        self.stdin
            .write_all(format!("publish devices/{}/{suffix} {payload}\n", self.device).as_bytes())
            .await
            .unwrap();
        self.expect("published", |_| true).await["rc"]
            .as_i64()
            .unwrap()
    }

    /// Disconnects cleanly and waits for the process to end.
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Kills the process: the connection drops without DISCONNECT.
    #[allow(dead_code)]
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A device peer on a clean session, client id `{id}-v{version}`.
pub async fn device(server: &Server, token: &str, id: &str, version: u8) -> DevicePeer {
    DevicePeer::start(
        server,
        Connect {
            device: id,
            token,
            version,
            client_id: &format!("{id}-v{version}"),
            clean: true,
        },
    )
    .await
}
