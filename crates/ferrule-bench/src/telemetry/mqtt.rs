//! The MQTT ingest section: every device on its own MQTT connection
//! publishes QoS 1 readings with a window of unacknowledged messages;
//! points/s counts only what Ferrule acknowledged (PUBACK once durable).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use anyhow::Context;
use ferrule_mqtt::codec::ProtocolVersion;
use tokio::task::JoinSet;

use super::report::{Measure, SectionReport, System, thousands};
use super::server::{Device, Region, Server};
use super::signal::DeviceSignal;
use super::verify::verify_stored;
use super::window::{drain, measure_window, wait_for_quiet};
use super::{KEYS, TelemetryArgs};
use crate::loadgen::{DevicePublisher, PublishCounts};

/// MQTT handshakes in flight while connecting the devices: below Ferrule's
/// listen backlog (128), so that no SYN is dropped and retried a second later.
const CONNECT_PIPELINE: usize = 64;

/// Durable ingest over MQTT: every device on its own connection publishes
/// QoS 1 readings with a window of unacknowledged messages; points/s is
/// acknowledged messages × [`KEYS`] over the window.
pub(super) async fn section(
    server: &Server,
    devices: &[Device],
    args: &TelemetryArgs,
    region: Region,
) -> anyhow::Result<SectionReport> {
    let version = args.mqtt_version.protocol();
    wait_for_quiet().await?;
    let started = Instant::now();
    let publishers = connect_devices(server.mqtt, version, devices).await?;
    eprintln!(
        "mqtt: {} devices connected in {:.1} s",
        publishers.len(),
        started.elapsed().as_secs_f64()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let window = usize::from(args.window);
    let (tasks, counts) = start_publishers(publishers, devices, region, window, &stop);
    let sum = |field: fn(&PublishCounts) -> &AtomicU64| -> u64 {
        counts
            .iter()
            .map(|c| field(c).load(Ordering::Relaxed))
            .sum()
    };
    eprintln!("mqtt: publishing…");
    let measured = measure_window(server.pid, args.measure(), || sum(|c| &c.acked)).await?;
    stop.store(true, Ordering::Relaxed);
    let errors = drain(tasks).await;

    let mut report = SectionReport::default();
    let points = measured.per_sec() * KEYS as f64;
    report.figure(Measure::IngestMqtt, System::Ferrule, points);
    report.notes.push(format!(
        "{} messages acknowledged in the window ({} points/s); over the whole run \
         {} sent, {} acknowledged",
        thousands(measured.count as f64),
        thousands(points),
        thousands(sum(|c| &c.sent) as f64),
        thousands(sum(|c| &c.acked) as f64),
    ));
    report.notes.push(measured.cpu_note());
    let refused = refusals(&counts);
    if !refused.is_empty() {
        report.failures.push(format!(
            "PUBACKs with a failure reason code: {}",
            refused
                .iter()
                .map(|(code, n)| format!("0x{code:02x} × {}", thousands(*n as f64)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    report.failures.extend(errors);
    if args.no_verify {
        report
            .notes
            .push("stored counts not checked (--no-verify)".into());
    } else {
        let acked: Vec<u64> = counts
            .iter()
            .map(|c| c.acked.load(Ordering::Relaxed))
            .collect();
        verify_stored(
            server,
            devices,
            &acked,
            region,
            args.verify_devices,
            &mut report,
        )
        .await;
    }
    Ok(report)
}

/// Starts one publisher task per device, each writing its own readings
/// into `region`; returns the tasks and each device's counts.
fn start_publishers(
    publishers: Vec<DevicePublisher>,
    devices: &[Device],
    region: Region,
    window: usize,
    stop: &Arc<AtomicBool>,
) -> (JoinSet<anyhow::Result<()>>, Vec<Arc<PublishCounts>>) {
    let counts: Vec<Arc<PublishCounts>> = devices.iter().map(|_| Arc::default()).collect();
    let mut tasks = JoinSet::new();
    for (i, (publisher, device)) in publishers.into_iter().zip(devices).enumerate() {
        let topic = format!("devices/{}/telemetry", device.id);
        let mut signal = DeviceSignal::new(i as u64, region.start_ms, region.end_ms);
        let (counts, stop) = (counts[i].clone(), stop.clone());
        tasks.spawn(async move {
            let payload = |out: &mut Vec<u8>| signal.write_json(out);
            publisher
                .run_qos1(&topic, window, payload, counts, stop)
                .await
                .with_context(|| format!("publisher of {topic}"))
        });
    }
    (tasks, counts)
}

/// Opens every device's MQTT connection, `CONNECT_PIPELINE` at a time;
/// the connections come back in the devices' order.
async fn connect_devices(
    addr: SocketAddr,
    version: ProtocolVersion,
    devices: &[Device],
) -> anyhow::Result<Vec<DevicePublisher>> {
    let mut pending = JoinSet::new();
    let mut connected: Vec<Option<DevicePublisher>> = devices.iter().map(|_| None).collect();
    let mut next = 0;
    loop {
        while pending.len() < CONNECT_PIPELINE && next < devices.len() {
            let (id, token) = (devices[next].id.clone(), devices[next].token.clone());
            let index = next;
            pending.spawn(async move {
                DevicePublisher::connect(addr, version, &id, &token)
                    .await
                    .with_context(|| format!("connecting device {id}"))
                    .map(|p| (index, p))
            });
            next += 1;
        }
        let Some(done) = pending.join_next().await else {
            break;
        };
        let (index, publisher) = done.context("a connect task panicked")??;
        connected[index] = Some(publisher);
    }
    connected
        .into_iter()
        .map(|p| p.context("a device was not connected"))
        .collect()
}

/// PUBACK failure reason codes over all devices.
fn refusals(counts: &[Arc<PublishCounts>]) -> BTreeMap<u8, u64> {
    let mut all = BTreeMap::new();
    for c in counts {
        let refused = c.refused.lock().unwrap_or_else(PoisonError::into_inner);
        for (&code, &n) in refused.iter() {
            *all.entry(code).or_default() += n;
        }
    }
    all
}
