//! Desired state to device: `PATCH /api/v1/devices/{id}/state` with a fresh
//! value of the bench's key, one change at a time, devices round-robin, and
//! the time until the device reads the retained `state/delta` carrying that
//! value (the device never reports, so the delta holds what desired holds).

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use super::BENCH_KEY;
use super::report::{Errors, Latencies, Twin};
use super::responder::DeltaSeen;
use crate::telemetry::server::{Device, excerpt};

/// What to change.
pub(super) struct Plan<'a> {
    pub(super) base: &'a str,
    pub(super) token: &'a str,
    pub(super) patches: u32,
    /// How long a change may take to reach its device.
    pub(super) timeout: Duration,
}

/// Makes the changes and measures them; `deltas` is what the devices
/// passed on.
pub(super) async fn run(
    plan: Plan<'_>,
    devices: &[Device],
    deltas: &mut mpsc::Receiver<DeltaSeen>,
) -> anyhow::Result<Twin> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(plan.timeout)
        .build()
        .context("the HTTP client")?;
    // Values no earlier run against the same server used.
    let first = fresh_values()?;
    // Deltas from before (none on a fresh server) are not ours.
    while deltas.try_recv().is_ok() {}
    let (mut to_device, mut patch) = (Vec::new(), Vec::new());
    let mut errors = Errors::default();
    for k in 0..u64::from(plan.patches) {
        let index = usize::try_from(k)? % devices.len();
        let device = &devices[index];
        let value = first + k;
        let sent = Instant::now();
        let response = client
            .patch(format!("{}/api/v1/devices/{}/state", plan.base, device.id))
            .bearer_auth(plan.token)
            .json(&serde_json::json!({ "desired": { BENCH_KEY: value } }))
            .send()
            .await;
        match response {
            Ok(r) if r.status() == reqwest::StatusCode::OK => {
                // The body is the twin; read it so the connection is reused.
                let _ = r.bytes().await;
                patch.push(sent.elapsed());
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                errors.add(format!("HTTP {}", status.as_u16()), || {
                    format!("PATCH {}: {status}: {}", device.id, excerpt(&text))
                });
                continue;
            }
            Err(e) => {
                errors.add("no response", || format!("PATCH {}: {e}", device.id));
                continue;
            }
        }
        match delta_for(deltas, index, value, sent + plan.timeout).await {
            Some(at) => to_device.push(at.saturating_duration_since(sent)),
            None => errors.add("no delta", || {
                format!(
                    "device {} did not receive the delta with {BENCH_KEY} = {value} within {:?}",
                    device.id, plan.timeout
                )
            }),
        }
    }
    Ok(Twin {
        to_device: Latencies::new(to_device),
        patch: Latencies::new(patch),
        errors,
    })
}

/// When device `index` read the delta with `value`, waiting until
/// `deadline`; other deltas are skipped.
async fn delta_for(
    deltas: &mut mpsc::Receiver<DeltaSeen>,
    index: usize,
    value: u64,
    deadline: Instant,
) -> Option<Instant> {
    loop {
        let seen = tokio::time::timeout_at(deadline.into(), deltas.recv())
            .await
            .ok()??;
        if seen.device == index && seen.value == value {
            return Some(seen.at);
        }
    }
}

/// A run's first value: the time in milliseconds, times a thousand. A
/// change equal to the desired state already there would publish no delta;
/// runs against one server take far longer than a microsecond per change,
/// so no two runs share a value. It stays well inside the integers a JSON
/// number holds exactly.
fn fresh_values() -> anyhow::Result<u64> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    Ok(u64::try_from(ms % 1_000_000_000_000)? * 1000)
}
