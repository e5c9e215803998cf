//! The command load: `POST /api/v1/devices/{id}/commands/bench` at a fixed
//! rate, open loop. A pacing thread wakes at each command's scheduled time
//! (to the microsecond; tokio's timer has millisecond steps) and hands the
//! command to the runtime, which sends it on one of at most `concurrency`
//! keep-alive connections. A slow server therefore shows as latency, not
//! as a lower rate: every latency counts from the scheduled time, so time
//! spent waiting for a free connection counts too, and a command that finds
//! every connection taken and the hand-over queue full is counted as not
//! sent.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

use super::report::{Errors, Latencies, RoundTrip};
use crate::process::{cpu_seconds, own_cpu_seconds};
use crate::telemetry::server::{Device, excerpt};

/// The command's name (one topic level).
pub(super) const COMMAND: &str = "bench";
/// Commands waiting for a connection at most; more are not sent.
const HANDOVER: usize = 4096;
/// How long after a command's timeout the bench stops waiting for its
/// answer (the server expires it at the timeout and then answers 504).
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// What to send.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// `http://127.0.0.1:PORT`.
    pub(super) base: String,
    /// A token of an editor or owner of the devices' tenant.
    pub(super) token: String,
    pub(super) rate: u32,
    pub(super) warmup: Duration,
    pub(super) measure: Duration,
    pub(super) concurrency: usize,
    /// The `?timeout=` of each command.
    pub(super) timeout: Duration,
    /// Ferrule's pid, for its CPU use (`None`: not ours to watch).
    pub(super) server_pid: Option<u32>,
}

impl Plan {
    fn warmup_commands(&self) -> u64 {
        commands_in(self.rate, self.warmup)
    }

    fn measured_commands(&self) -> u64 {
        commands_in(self.rate, self.measure)
    }

    /// The scheduled send time of command `k`, from the start.
    fn offset(&self, k: u64) -> Duration {
        Duration::from_nanos(k.saturating_mul(1_000_000_000) / u64::from(self.rate.max(1)))
    }
}

fn commands_in(rate: u32, span: Duration) -> u64 {
    (f64::from(rate) * span.as_secs_f64()).round() as u64
}

/// One command to send.
struct Job {
    k: u64,
    due: Instant,
}

/// What the requests of the window found, filled in as they finish.
#[derive(Default)]
struct Tally {
    sent: u64,
    succeeded: u64,
    latencies: Vec<Duration>,
    errors: Errors,
    not_sent: u64,
}

/// The outcome of one command, for the tally.
enum Outcome {
    Succeeded(Duration),
    Failed { kind: String, detail: String },
}

/// Sends the plan's commands and measures their round trips.
pub(super) async fn run(plan: Plan, devices: &[Device]) -> anyhow::Result<RoundTrip> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .tcp_nodelay(true)
        .timeout(plan.timeout + ANSWER_GRACE)
        .build()
        .context("the HTTP client")?;
    let urls: Arc<Vec<String>> = Arc::new(
        devices
            .iter()
            .map(|d| {
                format!(
                    "{}/api/v1/devices/{}/commands/{COMMAND}?timeout={}",
                    plan.base,
                    d.id,
                    plan.timeout.as_secs_f64()
                )
            })
            .collect(),
    );
    let warm = plan.warmup_commands();
    let measured = warm..warm + plan.measured_commands();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (jobs, mut queue) = mpsc::channel::<Job>(HANDOVER);

    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + plan.offset(measured.start);
    let window_end = start + plan.offset(measured.end);
    let pacer = {
        let (plan, tally, measured) = (plan.clone(), tally.clone(), measured.clone());
        std::thread::Builder::new()
            .name("command-pacer".into())
            .spawn(move || pace(&plan, start, measured.end, &jobs, &tally, &measured))
            .context("starting the pacing thread")?
    };
    let cpu = tokio::spawn(cpu_in_window(plan.server_pid, window_start, window_end));

    let slots = Arc::new(Semaphore::new(plan.concurrency));
    while let Some(job) = queue.recv().await {
        let slot = slots.clone().acquire_owned().await?;
        let (client, urls, tally) = (client.clone(), urls.clone(), tally.clone());
        let token = plan.token.clone();
        let counted = measured.contains(&job.k);
        tokio::spawn(async move {
            let url = &urls[usize::try_from(job.k).unwrap_or(0) % urls.len()];
            let outcome = send(&client, url, &token, job.k, job.due).await;
            if counted {
                let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
                t.sent += 1;
                match outcome {
                    Outcome::Succeeded(latency) => {
                        t.succeeded += 1;
                        t.latencies.push(latency);
                    }
                    Outcome::Failed { kind, detail } => t.errors.add(kind, || detail),
                }
            }
            drop(slot);
        });
    }
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    // Every request ends within its timeout and grace (the client's own
    // timeout): wait for the last ones by taking every slot back.
    let all = u32::try_from(plan.concurrency)?;
    tokio::time::timeout(plan.timeout + ANSWER_GRACE * 2, slots.acquire_many(all))
        .await
        .context("the last commands did not finish")??
        .forget();
    let (server_cores, bench_cores) = cpu.await.unwrap_or((None, None));
    let t = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(RoundTrip {
        sent: t.sent,
        succeeded: t.succeeded,
        latencies: Latencies::new(t.latencies),
        errors: t.errors,
        not_sent: t.not_sent,
        window: plan.measure,
        server_cores,
        bench_cores,
    })
}

/// The pacing thread: hands each command over at its scheduled time, up to
/// command `end`.
fn pace(
    plan: &Plan,
    start: Instant,
    end: u64,
    jobs: &mpsc::Sender<Job>,
    tally: &Mutex<Tally>,
    measured: &std::ops::Range<u64>,
) {
    // Sleeps overshoot by the timer slack (50 µs by default); 1 µs keeps
    // the schedule close. Failure only costs accuracy.
    let _ = nix::sys::prctl::set_timerslack(1_000);
    for k in 0..end {
        let due = start + plan.offset(k);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        match jobs.try_send(Job { k, due }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if measured.contains(&k) {
                    let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
                    t.not_sent += 1;
                    t.errors.add("not sent", || {
                        format!(
                            "command {k} not sent: all {} requests in flight were taken",
                            plan.concurrency
                        )
                    });
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// One command, waiting for the device's reply.
async fn send(client: &reqwest::Client, url: &str, token: &str, k: u64, due: Instant) -> Outcome {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(format!(r#"{{"k":{k}}}"#))
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed {
                kind: "no response".into(),
                detail: format!("command {k}: no response: {e}"),
            };
        }
    };
    let status = response.status();
    let text = match response.text().await {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Failed {
                kind: "no response".into(),
                detail: format!("command {k}: reading the response: {e}"),
            };
        }
    };
    let latency = due.elapsed();
    if status != reqwest::StatusCode::OK {
        return Outcome::Failed {
            kind: format!("HTTP {}", status.as_u16()),
            detail: format!("command {k}: {status}: {}", excerpt(&text)),
        };
    }
    let state = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_owned));
    match state.as_deref() {
        Some("succeeded") => Outcome::Succeeded(latency),
        Some(other) => Outcome::Failed {
            kind: format!("state {other}"),
            detail: format!("command {k}: state {other}: {}", excerpt(&text)),
        },
        None => Outcome::Failed {
            kind: "unreadable".into(),
            detail: format!("command {k}: 200 without a state: {}", excerpt(&text)),
        },
    }
}

/// CPU cores Ferrule and this process used between `from` and `to`.
async fn cpu_in_window(
    server_pid: Option<u32>,
    from: Instant,
    to: Instant,
) -> (Option<f64>, Option<f64>) {
    tokio::time::sleep_until(from.into()).await;
    let server_before = server_pid.and_then(|pid| cpu_seconds(pid).ok());
    let own_before = own_cpu_seconds().ok();
    tokio::time::sleep_until(to.into()).await;
    let secs = to
        .saturating_duration_since(from)
        .as_secs_f64()
        .max(f64::EPSILON);
    let server_after = server_pid.and_then(|pid| cpu_seconds(pid).ok());
    let own_after = own_cpu_seconds().ok();
    let cores = |before: Option<f64>, after: Option<f64>| Some((after? - before?) / secs);
    (
        cores(server_before, server_after),
        cores(own_before, own_after),
    )
}

/// One command sent and answered before the load, so that a server that
/// cannot deliver commands (or devices that do not answer) fails fast with
/// the reason instead of a table of timeouts.
pub(super) async fn preflight(
    base: &str,
    token: &str,
    device: &Device,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder()
        .timeout(timeout + ANSWER_GRACE)
        .build()?;
    let url = format!(
        "{base}/api/v1/devices/{}/commands/{COMMAND}?timeout={}",
        device.id,
        timeout.as_secs_f64()
    );
    let started = Instant::now();
    match send(&client, &url, token, 0, started).await {
        Outcome::Succeeded(latency) => Ok(latency),
        Outcome::Failed { detail, .. } => anyhow::bail!(
            "a first command to {} did not succeed ({detail}); is the device online to \
             Ferrule (connectivity)?",
            device.id
        ),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An HTTP server that answers every request `{"state": "succeeded"}`
    /// after `delay`, one request at a time per connection.
    async fn slow_server(delay: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // A request: head, then a body of Content-Length.
                        let complete = |buf: &[u8]| {
                            let text = String::from_utf8_lossy(buf);
                            let (head, body) = text.split_once("\r\n\r\n")?;
                            let length = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            (body.len() >= length).then_some(head.len() + 4 + length)
                        };
                        while let Some(used) = complete(&buf) {
                            buf.drain(..used);
                            tokio::time::sleep(delay).await;
                            let body = r#"{"state":"succeeded"}"#;
                            let response = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if stream.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        base
    }

    /// The load is open loop: a server slower than the rate does not slow
    /// the schedule; the commands wait, and their wait counts as latency.
    #[tokio::test]
    async fn a_slow_server_shows_as_latency_not_as_a_lower_rate() {
        let delay = Duration::from_millis(20);
        let base = slow_server(delay).await;
        let plan = Plan {
            base,
            concurrency: 1,
            ..plan(100, 0, 500)
        };
        let devices = [Device {
            id: "d".into(),
            token: "t".into(),
        }];
        let r = run(plan, &devices).await.unwrap();
        // 50 commands due within 0.5 s, one at a time, 20 ms each: all
        // sent and answered, the last about 0.5 s after its time.
        assert_eq!(r.sent, 50, "{:?}", r.errors);
        assert_eq!(r.succeeded, 50);
        assert_eq!(r.not_sent, 0);
        assert!(r.latencies.quantile(0.5).unwrap() > Duration::from_millis(200));
        assert!(r.latencies.max().unwrap() > Duration::from_millis(400));
        // Closed loop would have measured the server's 20 ms at most.
        assert!(r.latencies.quantile(0.0).unwrap() >= delay);
    }

    fn plan(rate: u32, warmup_ms: u64, measure_ms: u64) -> Plan {
        Plan {
            base: String::new(),
            token: String::new(),
            rate,
            warmup: Duration::from_millis(warmup_ms),
            measure: Duration::from_millis(measure_ms),
            concurrency: 1,
            timeout: Duration::from_secs(1),
            server_pid: None,
        }
    }

    #[test]
    fn the_schedule_is_evenly_spaced_without_drift() {
        let p = plan(1000, 2000, 20_000);
        assert_eq!(p.warmup_commands(), 2000);
        assert_eq!(p.measured_commands(), 20_000);
        assert_eq!(p.offset(1), Duration::from_millis(1));
        assert_eq!(p.offset(22_000), Duration::from_secs(22));
        let p = plan(3, 0, 1000);
        assert_eq!(p.measured_commands(), 3);
        assert_eq!(p.offset(3), Duration::from_secs(1));
        assert_eq!(p.offset(1), Duration::from_nanos(333_333_333));
    }
}
