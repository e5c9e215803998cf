//! `ferrule bench commands`: commands and desired state, API to device.
//!
//! Ferrule starts in a fresh temp directory (rate limits off, as in the
//! other throughput benches); the bench creates the devices through the API
//! and connects each as a device ([`responder`]) that answers every command
//! at once. Then:
//!
//! 1. the command round trip under load ([`load`]): commands at a fixed
//!    rate, open loop, devices round-robin, each request waiting for the
//!    device's reply; after a warm-up, the window's latencies (scheduled
//!    send → 200 with state `succeeded`), achieved rate and errors;
//! 2. desired state to device ([`twin`]): changes one after another, each
//!    timed from the PATCH to the device reading the delta that carries it.
//!
//! One Markdown table is printed at the end ([`report`]).

mod load;
pub mod report;
mod responder;
mod twin;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::report::{Errors, Report};
use self::responder::{DeltaSeen, DeviceCounts, Responder};
use crate::process::{pin_current_thread, raise_nofile_limit, rss_kib};
use crate::telemetry::server::{Device, Server};

/// The desired-state key the twin section changes.
pub(crate) const BENCH_KEY: &str = "bench";
/// Devices connecting at once.
const CONNECT_PIPELINE: usize = 64;
/// Deltas the devices may have passed on and the bench not yet read.
const DELTA_QUEUE: usize = 1024;
/// Open files kept free besides the devices' and the requests' connections.
const FD_HEADROOM: u64 = 256;
/// The bench's core with `--cpu-pin` (Ferrule gets CPU 0).
const BENCH_CPU: usize = 1;

#[derive(Debug, Clone, Args)]
pub struct CommandsArgs {
    /// Devices, each connected over MQTT and answering its commands.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub devices: u32,
    /// Commands per second, sent on schedule whatever the answers take.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Load before the window opens, not counted, in seconds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// HTTP requests in flight at most, each on its own keep-alive
    /// connection. At most 100: Ferrule takes 128 connections from one
    /// address by default, and the bench's setup and twin clients hold a
    /// few more.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub concurrency: u32,
    /// Desired-state changes timed, one after another (0: none).
    #[arg(long, default_value_t = 200)]
    pub twin_patches: u32,
    /// Seconds a command waits for its reply (`?timeout=`), and a
    /// desired-state change for its delta.
    #[arg(long, default_value_t = 5.0, value_parser = parse_timeout)]
    pub timeout: f64,
    /// Pin Ferrule to CPU 0 and this process (load generator and devices)
    /// to CPU 1. Without it nothing is pinned.
    #[arg(long)]
    pub cpu_pin: bool,
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if secs > 0.0 && secs <= 300.0 {
        Ok(secs)
    } else {
        Err("must be more than 0 and at most 300 seconds".to_owned())
    }
}

impl CommandsArgs {
    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

/// Pins when asked, checks the open-file limit, then runs on a
/// current-thread runtime (one thread drives every device and request;
/// the commands' pacing has a thread of its own) and prints the table.
pub fn main(args: CommandsArgs) -> anyhow::Result<()> {
    if args.cpu_pin {
        let cpus = std::thread::available_parallelism()?.get();
        if cpus < 2 {
            bail!("--cpu-pin needs two CPUs (one per side); this process may use {cpus}");
        }
        pin_current_thread(BENCH_CPU)?;
    }
    let nofile = raise_nofile_limit()?;
    let needed = u64::from(args.devices) + u64::from(args.concurrency) + FD_HEADROOM;
    if needed > nofile {
        bail!(
            "{} devices need about {needed} open files, the limit is {nofile}: \
             use fewer --devices or raise the hard limit (ulimit -Hn)",
            args.devices
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = runtime.block_on(run(&args))?;
    print!("{}", report.markdown(&args));
    let failures = report.failures();
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// Runs the scenario against a Ferrule of its own and hands back what it
/// measured; an error means the setup failed. Needs a Tokio runtime.
pub async fn run(args: &CommandsArgs) -> anyhow::Result<Report> {
    let server = Server::start(args.cpu_pin).await?;
    let started = Instant::now();
    let devices = server.create_devices(args.devices).await?;
    eprintln!(
        "created {} devices in {:.1} s",
        devices.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let counts = Arc::new(DeviceCounts::default());
    let (delta_tx, mut deltas) = mpsc::channel(DELTA_QUEUE);
    let mut online = connect_devices(&server, &devices, &counts, &delta_tx).await?;
    drop(delta_tx);
    eprintln!(
        "connected {} devices in {:.1} s",
        devices.len(),
        started.elapsed().as_secs_f64()
    );
    let mut devices_lost = Errors::default();

    let round_trip = round_trip(&server, &devices, args).await;
    lost_devices(&mut online, &mut devices_lost);

    let twin = if args.twin_patches == 0 {
        Ok(Default::default())
    } else {
        eprintln!(
            "twin: {} desired-state changes, one at a time…",
            args.twin_patches
        );
        let plan = twin::Plan {
            base: &server.base,
            token: &server.admin_token,
            patches: args.twin_patches,
            timeout: args.timeout(),
        };
        twin::run(plan, &devices, &mut deltas)
            .await
            .map_err(|e| format!("{e:#}"))
    };
    lost_devices(&mut online, &mut devices_lost);
    online.abort_all();
    let server_rss_mib = rss_kib(server.pid).ok().map(|kib| kib as f64 / 1024.0);
    server.stop().await?;
    Ok(Report {
        round_trip,
        twin,
        devices_lost,
        answered: counts.answered.load(Ordering::Relaxed),
        unanswerable: counts.unreadable.load(Ordering::Relaxed),
        deltas_dropped: counts.deltas_dropped.load(Ordering::Relaxed),
        server_rss_mib,
    })
}

/// The round trip section: one command first (so that a server that cannot
/// deliver commands fails fast, with the reason), then the load.
async fn round_trip(
    server: &Server,
    devices: &[Device],
    args: &CommandsArgs,
) -> report::Outcome<report::RoundTrip> {
    let first = &devices[0];
    let one = load::preflight(&server.base, &server.admin_token, first, args.timeout())
        .await
        .map_err(|e| format!("{e:#}"))?;
    eprintln!(
        "commands: a first one answered in {:.2} ms; now {} commands/s for {} + {} s…",
        one.as_secs_f64() * 1e3,
        args.rate,
        args.warmup,
        args.seconds
    );
    let plan = load::Plan {
        base: server.base.clone(),
        token: server.admin_token.clone(),
        rate: args.rate,
        warmup: Duration::from_secs(args.warmup),
        measure: Duration::from_secs(args.seconds),
        concurrency: usize::try_from(args.concurrency).map_err(|e| e.to_string())?,
        timeout: args.timeout(),
        server_pid: Some(server.pid),
    };
    load::run(plan, devices).await.map_err(|e| format!("{e:#}"))
}

/// Connects every device, `CONNECT_PIPELINE` at a time, and starts each
/// one answering.
async fn connect_devices(
    server: &Server,
    devices: &[Device],
    counts: &Arc<DeviceCounts>,
    deltas: &mpsc::Sender<DeltaSeen>,
) -> anyhow::Result<JoinSet<anyhow::Result<()>>> {
    let mut connecting = JoinSet::new();
    let mut online = JoinSet::new();
    let mut next = 0;
    loop {
        while connecting.len() < CONNECT_PIPELINE && next < devices.len() {
            let device = Device {
                id: devices[next].id.clone(),
                token: devices[next].token.clone(),
            };
            let (addr, index) = (server.mqtt, next);
            connecting.spawn(async move { Responder::connect(addr, &device, index).await });
            next += 1;
        }
        let Some(done) = connecting.join_next().await else {
            break;
        };
        let responder = done.context("a device's connect task panicked")??;
        online.spawn(responder.run(counts.clone(), deltas.clone()));
    }
    Ok(online)
}

/// Collects the devices whose connection has ended (each one failed: a
/// device runs until aborted).
fn lost_devices(online: &mut JoinSet<anyhow::Result<()>>, lost: &mut Errors) {
    while let Some(done) = online.try_join_next() {
        match done {
            Ok(Err(e)) => lost.add("connection failed", || format!("{e:#}")),
            Ok(Ok(())) => lost.add("connection ended", || "a device stopped".to_owned()),
            Err(e) => lost.add("panicked", || e.to_string()),
        }
    }
}
