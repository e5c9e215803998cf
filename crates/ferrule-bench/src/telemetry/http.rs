//! The HTTP ingest section: workers post batches of readings to
//! `POST /api/v1/ingest/telemetry`, each device's requests one after
//! another; points/s counts only requests Ferrule answered 2xx (once
//! durable).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use tokio::task::JoinSet;

use super::report::{Measure, SectionReport, System, thousands};
use super::server::{Device, Region, Server, excerpt};
use super::signal::DeviceSignal;
use super::verify::verify_stored;
use super::window::{Window, drain, measure_window, wait_for_quiet};
use super::{HTTP_READINGS, KEYS, TelemetryArgs};

/// What the HTTP workers have seen.
#[derive(Default)]
struct HttpCounts {
    /// 2xx responses.
    ok: AtomicU64,
    /// Other responses, by status.
    refused: Mutex<BTreeMap<u16, u64>>,
    /// Requests that got no response (connection errors, timeouts).
    unanswered: AtomicU64,
    /// The first refusal or error, quoted in the report.
    first_error: Mutex<Option<String>>,
}

impl HttpCounts {
    fn refuse(&self, status: reqwest::StatusCode, body: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        *refused.entry(status.as_u16()).or_default() += 1;
        self.first_error(|| format!("{status}: {}", excerpt(body)));
    }

    fn unanswered(&self, error: &reqwest::Error) {
        self.unanswered.fetch_add(1, Ordering::Relaxed);
        self.first_error(|| format!("no response: {error}"));
    }

    fn first_error(&self, describe: impl FnOnce() -> String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert_with(describe);
    }
}

/// One device as an HTTP worker drives it.
struct HttpDevice {
    index: usize,
    token: String,
    signal: DeviceSignal,
}

/// Durable ingest over HTTP: `concurrency` workers, each owning a share of
/// the devices (so one device's requests never overlap and its timestamps
/// arrive in order), each with one request in flight at a time over a
/// keep-alive connection; points/s is 2xx responses × 100 over the window.
pub(super) async fn section(
    server: &Server,
    devices: &[Device],
    args: &TelemetryArgs,
    region: Region,
) -> anyhow::Result<SectionReport> {
    wait_for_quiet().await?;
    let counts = Arc::new(HttpCounts::default());
    // 2xx answers per device, for the check of what was stored.
    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new(devices.iter().map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{}/api/v1/ingest/telemetry", server.base);
    let workers = usize::try_from(args.concurrency)?.min(devices.len());
    let tasks = start_http_workers(&url, devices, region, workers, &counts, &accepted, &stop)?;
    eprintln!("http: posting…");
    let ok = counts.clone();
    let measured = measure_window(server.pid, args.measure(), move || {
        ok.ok.load(Ordering::Relaxed)
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    let errors = drain(tasks).await;

    let mut report = SectionReport::default();
    let points = measured.per_sec() * (HTTP_READINGS * KEYS) as f64;
    http_outcome(&counts, &measured, points, &mut report);
    report.failures.extend(errors);
    if args.no_verify {
        report
            .notes
            .push("stored counts not checked (--no-verify)".into());
    } else if measured.count > 0 {
        // Each accepted request stored HTTP_READINGS readings per key.
        let expected: Vec<u64> = accepted
            .iter()
            .map(|n| n.load(Ordering::Relaxed) * HTTP_READINGS as u64)
            .collect();
        verify_stored(
            server,
            devices,
            &expected,
            region,
            args.verify_devices,
            &mut report,
        )
        .await;
    }
    Ok(report)
}

/// Starts `workers` HTTP workers over one keep-alive client, dealing the
/// devices out among them in turn.
fn start_http_workers(
    url: &str,
    devices: &[Device],
    region: Region,
    workers: usize,
    counts: &Arc<HttpCounts>,
    accepted: &Arc<Vec<AtomicU64>>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<JoinSet<anyhow::Result<()>>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()
        .context("HTTP client")?;
    let mut shares: Vec<Vec<HttpDevice>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, device) in devices.iter().enumerate() {
        shares[i % workers].push(HttpDevice {
            index: i,
            token: device.token.clone(),
            signal: DeviceSignal::new(i as u64, region.start_ms, region.end_ms),
        });
    }
    let mut tasks = JoinSet::new();
    for share in shares {
        let worker = HttpWorker {
            client: client.clone(),
            url: url.to_owned(),
            counts: counts.clone(),
            accepted: accepted.clone(),
            stop: stop.clone(),
        };
        tasks.spawn(worker.run(share));
    }
    Ok(tasks)
}

/// The figure and notes of the HTTP section; a run in which Ferrule
/// accepted nothing is a failure that names what it answered instead.
fn http_outcome(counts: &HttpCounts, window: &Window, points: f64, report: &mut SectionReport) {
    let refused = counts
        .refused
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let unanswered = counts.unanswered.load(Ordering::Relaxed);
    let first = counts
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default();
    let mut bad: Vec<String> = refused
        .iter()
        .map(|(status, n)| format!("{status} × {}", thousands(*n as f64)))
        .collect();
    if unanswered > 0 {
        bad.push(format!("no response × {}", thousands(unanswered as f64)));
    }
    if window.count == 0 {
        report.failures.push(format!(
            "POST /api/v1/ingest/telemetry accepted no request in the window; \
             answers over the run: {}; first: {first}",
            bad.join(", ")
        ));
        return;
    }
    report.figure(Measure::IngestHttp, System::Ferrule, points);
    report.notes.push(format!(
        "{} requests answered 2xx in the window ({} points/s)",
        thousands(window.count as f64),
        thousands(points)
    ));
    report.notes.push(window.cpu_note());
    if !bad.is_empty() {
        report.failures.push(format!(
            "requests not accepted over the run: {}; first: {first}",
            bad.join(", ")
        ));
    }
}

/// What an HTTP worker shares with the bench.
struct HttpWorker {
    client: reqwest::Client,
    url: String,
    counts: Arc<HttpCounts>,
    accepted: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
}

impl HttpWorker {
    /// Posts readings of its devices in turn, one request at a time, until
    /// `stop`.
    async fn run(self, mut devices: Vec<HttpDevice>) -> anyhow::Result<()> {
        let mut body = Vec::with_capacity(4096);
        let n = devices.len();
        for turn in 0.. {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let device = &mut devices[turn % n];
            body.clear();
            body.push(b'[');
            for r in 0..HTTP_READINGS {
                if r > 0 {
                    body.push(b',');
                }
                device.signal.write_json(&mut body)?;
            }
            body.push(b']');
            let sent = self
                .client
                .post(&self.url)
                .bearer_auth(&device.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) => {
                    let status = response.status();
                    // Read the body to the end so the connection is reused.
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        self.accepted[device.index].fetch_add(1, Ordering::Relaxed);
                        self.counts.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.counts.refuse(status, &text);
                    }
                }
                Err(e) => self.counts.unanswered(&e),
            }
        }
        Ok(())
    }
}
