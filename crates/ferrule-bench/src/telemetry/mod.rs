//! `ferrule bench telemetry`: durable telemetry ingest end to end, over MQTT
//! QoS 1 and over HTTP, and Ferrule's embedded store on disk and under
//! queries, against telemetry stored the plain way (SQLite, a row per
//! point) measured in the same run.
//!
//! The scenario is a list of sections run in order ([`Section`]); each hands
//! back [`Figure`](report::Figure)s and notes, and one Markdown table is
//! printed at the end, after a paragraph that says how everything was
//! measured. A section that cannot run, or whose checks fail, is reported as
//! failed without stopping the others; the bench then exits non-zero.
//!
//! The ingest sections share one Ferrule server and one set of devices, each
//! with its own access token. Every device sends a reading of [`KEYS`] values
//! per second of its own clock (timestamps in the past, strictly increasing
//! per device), and each section writes into its own day of the past
//! ([`Region`](server::Region)) so that what a section stored can be counted
//! afterwards through the query API and compared with what Ferrule
//! acknowledged; an acknowledgement promises durability, so stored must be
//! ≥ acknowledged. The storage sections (Ferrule's store and SQLite) run in
//! this process on one realistic series of 30 days, the same for both.
//!
//! This file holds the arguments, the sections and their order, and `main`.
//! The rest:
//!
//! - `report`: the figures, the table and the notes;
//! - `method`: the paragraph that says how everything was measured;
//! - `signal`: the realistic series, the devices' readings and payloads;
//! - `server`: the Ferrule server under test, its devices and API calls;
//! - `window`: measurement windows, CPU use, waiting for a quiet machine;
//! - `mqtt`, `http`: the two ingest sections;
//! - `verify`: the check of stored against acknowledged points;
//! - `store`: Ferrule's embedded store, disk and queries, in this process;
//! - `sqlite`: the SQLite baseline.
//!
//! Adding a section: a [`Section`] variant with the [`Measure`]s it fills
//! in, a function that returns a
//! [`SectionReport`](report::SectionReport), and a call in `run`.

mod http;
mod method;
mod mqtt;
mod report;
pub(crate) mod server;
pub(crate) mod signal;
mod sqlite;
pub(crate) mod store;
mod verify;
mod window;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ferrule_mqtt::codec::ProtocolVersion;

use self::report::{Measure, Report, System};
use self::server::{Region, Server, now_ms};
use self::window::wait_for_quiet;
use super::process::{pin_current_thread, raise_nofile_limit};

/// Values per reading: keys `k0`…`k9`.
const KEYS: usize = 10;
/// Readings per HTTP request (10 × 10 keys = 100 points).
const HTTP_READINGS: usize = 10;
/// Load before each measurement window opens.
const WARMUP: Duration = Duration::from_secs(2);
/// Open files kept free besides the devices' connections.
const FD_HEADROOM: u64 = 256;
/// Ferrule's core and the bench's with `--cpu-pin`.
const FERRULE_CPU: usize = 0;
const BENCH_CPU: usize = 1;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Args)]
pub struct TelemetryArgs {
    /// Run only these sections (repeatable, or comma-separated); all by
    /// default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Section>,
    /// Length of each measurement window, in seconds (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Devices: one MQTT connection and one access token each.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub devices: u32,
    /// QoS 1 messages each device keeps unacknowledged (Ferrule accepts up
    /// to 1,024 per client).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub window: u16,
    /// The devices' MQTT version. 5 by default because only MQTT 5 can
    /// refuse a message (a PUBACK reason code such as 0x99); a 3.1.1 broker
    /// acknowledges a refused message silently.
    #[arg(long, value_enum, default_value_t = MqttVersion::V5)]
    pub mqtt_version: MqttVersion,
    /// HTTP ingest requests in flight at once, spread over the devices.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Rows per SQLite transaction (each commit is durable).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_rows: u32,
    /// Timed runs of each storage query (Ferrule's store and SQLite), after
    /// one warm-up run; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub query_runs: u32,
    /// Devices whose stored point counts are checked against the
    /// acknowledged ones after each ingest section.
    #[arg(long, default_value_t = 10)]
    pub verify_devices: usize,
    /// Skip that check (it needs the telemetry query API).
    #[arg(long)]
    pub no_verify: bool,
    /// Pin Ferrule to CPU 0 and this process (load generator, Ferrule's
    /// store section, SQLite) to CPU 1, as `bench mqtt` does. Without it nothing is pinned: Ferrule
    /// may use every CPU (its telemetry writer runs on its own thread).
    #[arg(long)]
    pub cpu_pin: bool,
}

impl TelemetryArgs {
    fn wants(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }

    fn measure(&self) -> Duration {
        Duration::from_secs(self.seconds.max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MqttVersion {
    #[value(name = "3.1.1")]
    V311,
    #[value(name = "5")]
    V5,
}

impl MqttVersion {
    fn protocol(self) -> ProtocolVersion {
        match self {
            MqttVersion::V311 => ProtocolVersion::V311,
            MqttVersion::V5 => ProtocolVersion::V5,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        }
    }
}

/// The parts of the scenario, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Ferrule: durable ingest over MQTT QoS 1.
    Mqtt,
    /// Ferrule: durable ingest over HTTP.
    Http,
    /// Ferrule's embedded store, in this process: disk after sealing and
    /// query times, on the series the baseline stores.
    Store,
    /// The baseline: SQLite, a row per point (ingest, disk, queries).
    Sqlite,
}

impl Section {
    /// The figures a section produces, for marking them failed when it
    /// could not produce them.
    fn measures(self) -> &'static [(Measure, System)] {
        match self {
            Section::Mqtt => &[(Measure::IngestMqtt, System::Ferrule)],
            Section::Http => &[(Measure::IngestHttp, System::Ferrule)],
            Section::Store => &[
                (Measure::DiskBytesPerPoint, System::Ferrule),
                (Measure::Avg24h, System::Ferrule),
                (Measure::Avg30d, System::Ferrule),
            ],
            Section::Sqlite => &[
                (Measure::IngestMqtt, System::Sqlite),
                (Measure::IngestHttp, System::Sqlite),
                (Measure::DiskBytesPerPoint, System::Sqlite),
                (Measure::Avg24h, System::Sqlite),
                (Measure::Avg30d, System::Sqlite),
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Section::Mqtt => "mqtt",
            Section::Http => "http",
            Section::Store => "store",
            Section::Sqlite => "sqlite",
        }
    }
}

/// Pins this process when asked, then runs the sections on a
/// current-thread runtime (one thread drives every connection).
pub fn main(args: TelemetryArgs) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism()?.get();
    if args.cpu_pin {
        if cpus < 2 {
            bail!("--cpu-pin needs two CPUs (one per side); this process may use {cpus}");
        }
        pin_current_thread(BENCH_CPU)?;
    }
    let nofile = raise_nofile_limit()?;
    let needed = u64::from(args.devices) + u64::from(args.concurrency) + FD_HEADROOM;
    if (args.wants(Section::Mqtt) || args.wants(Section::Http)) && needed > nofile {
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
    runtime.block_on(run(args))
}

async fn run(args: TelemetryArgs) -> anyhow::Result<()> {
    let mut report = Report::default();
    let ingest: Vec<Section> = [Section::Mqtt, Section::Http]
        .into_iter()
        .filter(|&s| args.wants(s))
        .collect();
    if !ingest.is_empty()
        && let Err(e) = ingest_sections(&args, &mut report).await
    {
        report.fail(&ingest, &format!("{e:#}"));
    }
    if args.wants(Section::Store) {
        wait_for_quiet().await?;
        eprintln!("store: Ferrule's embedded store…");
        // On this runtime: the store's reads run on its blocking pool, its
        // writer on a thread of its own.
        let result = store::run(usize::try_from(args.query_runs)?).await;
        report.add(Section::Store, result);
    }
    if args.wants(Section::Sqlite) {
        let baseline = sqlite::Baseline {
            devices: usize::try_from(args.devices)?,
            batch_rows: usize::try_from(args.batch_rows)?,
            warmup: WARMUP,
            measure: args.measure(),
            query_runs: usize::try_from(args.query_runs)?,
        };
        wait_for_quiet().await?;
        eprintln!("sqlite: baseline…");
        let result = tokio::task::spawn_blocking(move || sqlite::run(&baseline))
            .await
            .context("the SQLite baseline panicked")
            .and_then(|r| r);
        report.add(Section::Sqlite, result);
    }
    println!("{}", method::method(&args, &report));
    println!("{}", report.table(&args));
    print!("{}", report.notes());
    match report.failures() {
        0 => Ok(()),
        n => bail!("{n} check(s) failed (see the notes above)"),
    }
}

/// Starts Ferrule, creates the devices and runs the MQTT and HTTP sections
/// on them; an error means the setup failed.
async fn ingest_sections(args: &TelemetryArgs, report: &mut Report) -> anyhow::Result<()> {
    let server = Server::start(args.cpu_pin).await?;
    let started = Instant::now();
    let devices = server.create_devices(args.devices).await?;
    eprintln!(
        "created {} devices in {:.1} s",
        devices.len(),
        started.elapsed().as_secs_f64()
    );
    let now = now_ms()?;
    if args.wants(Section::Mqtt) {
        let region = Region::days_ago(now, 2);
        let result = mqtt::section(&server, &devices, args, region).await;
        report.add(Section::Mqtt, server.with_rss_note(result));
    }
    if args.wants(Section::Http) {
        let region = Region::days_ago(now, 1);
        let result = http::section(&server, &devices, args, region).await;
        report.add(Section::Http, server.with_rss_note(result));
    }
    server.stop().await
}
