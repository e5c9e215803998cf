//! The Ferrule under test in the ingest sections (and in `bench commands`):
//! `ferrule serve` started in a fresh temp data directory ([`Server`]), the
//! admin's login, the bench's devices and their tokens ([`Device`]), the
//! calls to the HTTP API that set them up, and the day of the past
//! ([`Region`]) each section writes into.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::process::Child;
use tokio::task::JoinSet;

use super::report::SectionReport;
use super::{DAY_MS, FERRULE_CPU};
use crate::process::{START_WITHIN, cpus_allowed, rss_kib, spawn_ferrule, spawn_on_cpu, terminate};

/// API requests in flight while creating devices.
const SETUP_PIPELINE: usize = 16;
/// The admin Ferrule creates on first start (its password is set by
/// `spawn_ferrule`).
const ADMIN_EMAIL: &str = "admin@localhost";
const ADMIN_PASSWORD: &str = "bench-password";

pub(super) fn now_ms() -> anyhow::Result<i64> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    Ok(i64::try_from(since.as_millis())?)
}

/// One day of the past that a section's readings fall in, so that its
/// stored points can be counted apart from another section's.
#[derive(Debug, Clone, Copy)]
pub(super) struct Region {
    pub(super) start_ms: i64,
    pub(super) end_ms: i64,
}

impl Region {
    /// The day that ended `days - 1` days before `now`.
    pub(super) fn days_ago(now: i64, days: i64) -> Self {
        let start_ms = now - days * DAY_MS;
        Region {
            start_ms,
            end_ms: start_ms + DAY_MS,
        }
    }
}

/// Ferrule, started as `ferrule serve` in a fresh temp data directory.
pub(crate) struct Server {
    child: Child,
    pub(crate) pid: u32,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    pub(crate) mqtt: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) admin_token: String,
    _dir: tempfile::TempDir,
}

/// A device created for the bench.
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) token: String,
}

impl Server {
    pub(crate) async fn start(pin: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let data = data.to_str().context("temp path is not UTF-8")?;
        let args = ["--data-dir", data, "--http-listen", "127.0.0.1:0"];
        let starting = if pin {
            spawn_on_cpu(FERRULE_CPU, || spawn_ferrule(&args))?
        } else {
            spawn_ferrule(&args)?
        };
        let server = starting.ready(START_WITHIN).await?;
        let (child, http, mqtt) = (server.child, server.http, server.mqtt);
        let pid = child.id().context("ferrule pid")?;
        let base = format!("http://{http}");
        let client = reqwest::Client::new();
        let admin_token = login(&client, &base).await?;
        eprintln!(
            "ferrule: pid {pid}, HTTP {http}, MQTT {mqtt}, CPUs allowed {:?}",
            cpus_allowed(pid)?
        );
        Ok(Server {
            child,
            pid,
            base,
            mqtt: mqtt.parse().context("ferrule's MQTT address")?,
            client,
            admin_token,
            _dir: dir,
        })
    }

    /// Creates devices `bench-0000`… with `SETUP_PIPELINE` requests in flight.
    pub(crate) async fn create_devices(&self, n: u32) -> anyhow::Result<Vec<Device>> {
        let mut pending = JoinSet::new();
        let mut created: Vec<Option<Device>> = (0..n).map(|_| None).collect();
        let mut next = 0;
        loop {
            while pending.len() < SETUP_PIPELINE && next < n {
                let (client, url) = (self.client.clone(), format!("{}/api/v1/devices", self.base));
                let token = self.admin_token.clone();
                let id = format!("bench-{next:04}");
                let index = usize::try_from(next)?;
                pending.spawn(async move {
                    create_device(&client, &url, &token, &id)
                        .await
                        .map(|token| (index, Device { id, token }))
                });
                next += 1;
            }
            let Some(done) = pending.join_next().await else {
                break;
            };
            let (index, device) = done.context("a device creation task panicked")??;
            created[index] = Some(device);
        }
        created
            .into_iter()
            .map(|d| d.context("a device was not created"))
            .collect()
    }

    /// Adds Ferrule's resident memory after a section to its notes.
    pub(super) fn with_rss_note(
        &self,
        result: anyhow::Result<SectionReport>,
    ) -> anyhow::Result<SectionReport> {
        let mut report = result?;
        if let Ok(kib) = rss_kib(self.pid) {
            report.notes.push(format!(
                "Ferrule RSS after the section: {:.1} MiB",
                kib as f64 / 1024.0
            ));
        }
        Ok(report)
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let status = terminate(&mut self.child).await?;
        if !status.success() {
            eprintln!("ferrule exited with {status} on SIGTERM");
        }
        Ok(())
    }
}

async fn login(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .context("logging in as the admin")?;
    let body = json_body(response, "admin login").await?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .context("the login response has no token")
}

/// POST /api/v1/devices → 201 with the device's first access token.
async fn create_device(
    client: &reqwest::Client,
    url: &str,
    admin_token: &str,
    id: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(url)
        .bearer_auth(admin_token)
        .json(&serde_json::json!({ "id": id }))
        .send()
        .await
        .with_context(|| format!("creating device {id}"))?;
    let body = json_body(response, &format!("creating device {id}")).await?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no token in the response creating device {id}"))
}

/// The JSON body of a 2xx response; any other status is an error that
/// quotes the body.
pub(crate) async fn json_body(
    response: reqwest::Response,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{what}: {status}: {}", excerpt(&text));
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: the response is not JSON"))
}

/// The start of a response body, for an error message.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
