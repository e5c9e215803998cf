//! The check after each ingest section that Ferrule stored at least what it
//! acknowledged, counted for a sample of devices through the telemetry
//! query API.

use anyhow::Context;

use super::KEYS;
use super::report::SectionReport;
use super::server::{Device, Region, Server, excerpt, json_body};

/// Checks, for `sample` devices spread over the range, that every key's
/// stored point count in `region` is at least what Ferrule acknowledged
/// (`acked[i]` readings for device `i`), through
/// `GET /api/v1/devices/{id}/telemetry?agg=count`. Mismatches and query
/// errors are failures.
pub(super) async fn verify_stored(
    server: &Server,
    devices: &[Device],
    acked: &[u64],
    region: Region,
    sample: usize,
    report: &mut SectionReport,
) {
    let sample = sample.min(devices.len());
    let mut exact = 0;
    let mut checked = 0;
    for k in 0..sample {
        let i = k * devices.len() / sample;
        let device = &devices[i];
        let stored = match stored_counts(server, &device.id, region).await {
            Ok(stored) => stored,
            Err(e) => {
                report.failures.push(format!(
                    "could not count the stored points (use --no-verify until the \
                     telemetry query API exists): {e:#}"
                ));
                return;
            }
        };
        checked += 1;
        let short: Vec<String> = (0..KEYS)
            .filter(|&k| stored[k] < acked[i])
            .map(|k| format!("k{k} {} < {}", stored[k], acked[i]))
            .collect();
        if short.is_empty() {
            exact += usize::from(stored.iter().all(|&s| s == acked[i]));
        } else {
            report.failures.push(format!(
                "device {}: fewer points stored than acknowledged: {}",
                device.id,
                short.join(", ")
            ));
        }
    }
    report.notes.push(format!(
        "stored points checked for {checked} devices × {KEYS} keys: {exact} devices \
         stored exactly what was acknowledged"
    ));
}

/// The number of points of `k0`…`k9` device `id` has stored in `region`:
/// count aggregates in hourly buckets, summed.
async fn stored_counts(server: &Server, id: &str, region: Region) -> anyhow::Result<[u64; KEYS]> {
    let keys: Vec<String> = (0..KEYS).map(|k| format!("k{k}")).collect();
    let url = format!(
        "{}/api/v1/devices/{id}/telemetry?keys={}&agg=count&interval=1h&from={}&to={}",
        server.base,
        keys.join(","),
        region.start_ms,
        region.end_ms
    );
    let response = server
        .client
        .get(&url)
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let body = json_body(response, &format!("GET {url}")).await?;
    let mut counts = [0u64; KEYS];
    for (k, count) in counts.iter_mut().enumerate() {
        let buckets = body[&keys[k]].as_array().with_context(|| {
            format!(
                "GET {url}: no array for {} in {}",
                keys[k],
                excerpt(&body.to_string())
            )
        })?;
        for bucket in buckets {
            let value = bucket["value"]
                .as_f64()
                .with_context(|| format!("GET {url}: a bucket without a numeric value"))?;
            *count += value as u64;
        }
    }
    Ok(counts)
}
