//! `ferrule bench`: the project's benchmark scenarios. Each runs Ferrule and,
//! where one exists, a baseline on the same machine in the same run, and prints
//! a Markdown table ready for docs/BENCHMARKS.md.
//!
//! A crate of its own, run as the `ferrule-bench` binary that `ferrule bench`
//! hands over to, so the server carries none of the load generators, HTTP
//! clients and baselines. [`launch`] starts a server process for the benches
//! and for the integration tests. `ferrule simulate` hands over to the same
//! binary ([`simulate`]: `ferrule-bench simulate …`).

mod backup;
pub mod commands;
mod isolation;
pub mod launch;
mod loadgen;
mod login_flood;
mod mqtt;
mod process;
pub mod rules;
pub mod signal;
pub mod simulate;
mod slow_http;
mod slow_subscriber;
mod startup;
mod telemetry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `ferrule bench [--server PATH] SCENARIO …`
#[derive(Debug, Parser)]
#[command(
    name = "ferrule bench",
    bin_name = "ferrule bench",
    version,
    about = "Run a benchmark scenario and print its figures"
)]
pub struct BenchArgs {
    /// The `ferrule` binary to benchmark [default: the one beside this
    /// executable].
    #[arg(long, value_name = "PATH", global = true)]
    pub server: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Time from process start to /readyz, and idle RSS; mosquitto as baseline.
    Startup(startup::StartupArgs),
    /// MQTT broker throughput, latency and idle connections; mosquitto as
    /// baseline, brokers on CPU 0 and the load generator on CPU 1.
    Mqtt(mqtt::MqttArgs),
    /// Durable telemetry ingest over MQTT QoS 1 and HTTP, and the embedded
    /// store's disk and query times; SQLite with a row per point (ingest,
    /// disk, queries) as baseline, in the same run.
    Telemetry(telemetry::TelemetryArgs),
    /// Wrong-password logins over HTTP and MQTT at a fixed concurrency while
    /// another client reads the API: the server's peak RSS and the API's
    /// latency, with the login limits (`[auth]`) on and off.
    LoginFlood(login_flood::LoginFloodArgs),
    /// Half-sent HTTP requests from one address while another measures API
    /// latency and MQTT connects; HTTP limits off, then on.
    SlowHttp(slow_http::SlowHttpArgs),
    /// One tenant floods QoS 0 telemetry while another publishes QoS 1 at a
    /// steady rate: the quiet tenant's latencies, rate limits off and on.
    Isolation(isolation::IsolationArgs),
    /// One subscriber that stops reading while publishers go on: the
    /// broker's RSS and the messages it drops; mosquitto (with the same
    /// `max_queued_bytes`) as baseline.
    SlowSubscriber(slow_subscriber::SlowSubscriberArgs),
    /// Command round trips (API → device → reply → API) at a fixed rate
    /// with many devices connected, and desired state PATCH → the device
    /// receives the delta.
    Commands(commands::CommandsArgs),
    /// The rules engine's throughput (several tenants with rules and one
    /// republish each) and the broker's QoS 0 fan-in with rules off and on,
    /// in one run; Ferrule on CPU 0, the load generator on CPU 1.
    Rules(rules::RulesArgs),
    /// `ferrule backup` and `ferrule restore` of a data directory with
    /// 100 M points; `sqlite3 .backup` / `.restore` of the same files as
    /// baseline.
    Backup(backup::BackupBenchArgs),
}

pub fn main(args: BenchArgs) -> ExitCode {
    if let Some(server) = args.server {
        launch::set_server_binary(server);
    }
    let result = match args.scenario {
        Scenario::Startup(a) => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(startup::run(a))
        }
        // Pins its threads before building its own (current-thread) runtime.
        Scenario::Mqtt(a) => mqtt::main(a),
        // Pins (with --cpu-pin) before building its own runtime, too.
        Scenario::Telemetry(a) => telemetry::main(a),
        Scenario::LoginFlood(a) => login_flood::main(a),
        Scenario::SlowHttp(a) => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(slow_http::run(a))
        }
        Scenario::Isolation(a) => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(isolation::run(a))
        }
        Scenario::SlowSubscriber(a) => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(slow_subscriber::run(a))
        }
        // Builds its own (current-thread) runtime after the open-file check.
        Scenario::Commands(a) => commands::main(a),
        // Pins its threads before building its own (current-thread) runtime.
        Scenario::Rules(a) => rules::main(a),
        // Builds its runtime only to fill the data directory; the timed
        // tools are processes.
        Scenario::Backup(a) => backup::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `1234567.8` → `1,234,568`: figures in the printed tables.
pub(crate) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPUs, model, memory and kernel, from /proc (the CPUs of the machine,
/// not of this process's affinity: benches pin themselves).
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "? GiB".into(),
            |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {model}, {ram} RAM, Linux {}", kernel.trim())
}
