//! `ferrule simulate`: devices that behave like real ones, against a
//! running server — a demo that fills the console, and a load generator.
//!
//! The run: sign in to the API ([`provision`]), create or reuse the
//! devices, then one task per device ([`device`]) connects over MQTT at a
//! paced rate, publishes readings from its [`sensors`], reports state,
//! answers commands and now and then drops off and comes back. Everything
//! is counted in a [`tally::Tally`], shown live ([`progress`]) and summed
//! up at the end; the exit status says whether every message published
//! was acknowledged without an error.

mod device;
mod progress;
mod provision;
mod sensors;
pub mod tally;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::progress::Style;
use self::provision::{Api, Credentials};
use self::tally::{Summary, Tally};
use crate::process::raise_nofile_limit;

/// Most telemetry messages per second one device may send: readings are
/// stamped to the millisecond, and two in the same one would overwrite
/// each other.
const MAX_RATE: f64 = 1000.0;
/// Open files kept for the runtime, HTTP and the terminal.
const FD_HEADROOM: u64 = 64;
/// After a timed run's last reading is due, devices may take as long
/// again, and this much more, to deliver what they still hold before they
/// are stopped: a slow server is waited for, a stuck one is not.
const FINISH_GRACE: Duration = Duration::from_secs(60);
/// After a stop, how long devices may wait for their messages in flight.
const STOP_DRAIN: Duration = Duration::from_secs(10);
/// The MQTT port assumed when `--mqtt` is not given.
const MQTT_PORT: u16 = 1883;

/// `ferrule simulate [OPTIONS]`
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferrule simulate",
    bin_name = "ferrule simulate",
    version,
    // A repeated flag takes its last value, so wrappers can append overrides.
    args_override_self = true,
    about = "Simulate devices against a running Ferrule: each connects over MQTT, sends \
             telemetry, events and reported state, answers commands, and drops off and \
             reconnects now and then",
    after_help = "Credentials: --token / FERRULE_TOKEN (an API key or session token, role \
                  editor or higher), else FERRULE_ADMIN_EMAIL and FERRULE_ADMIN_PASSWORD. \
                  Exit status: 0 when every message was acknowledged and nothing failed, \
                  1 otherwise, 2 when the run could not start."
)]
pub struct SimulateArgs {
    /// Devices to simulate, named PREFIX0001, PREFIX0002, … (created when
    /// missing, else given a new access token).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub devices: u32,
    /// Telemetry messages per second per device (0.01 to 1000; 0.2 is one
    /// every 5 s).
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate)]
    pub rate: f64,
    /// How long each device sends readings, e.g. 30s, 5m, 1h30m [default:
    /// until Ctrl-C].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Device profile that new devices get (it must exist on the server).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Start of the device ids.
    #[arg(long, default_value = "sim-", value_parser = parse_prefix)]
    pub prefix: String,
    /// The server's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = parse_server)]
    pub server: String,
    /// The server's MQTT address [default: the --server host, port 1883].
    #[arg(long, value_name = "HOST:PORT")]
    pub mqtt: Option<String>,
    /// API key or session token for the API (prefer FERRULE_TOKEN: a
    /// flag's value shows in the process list).
    #[arg(long, env = "FERRULE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Tenant of the devices (admins only; sent as X-Tenant).
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
    /// Devices connecting per second at the start.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connect_rate: u32,
    /// Percent of the devices that drop off the network per minute (each
    /// comes back after a few seconds and catches up).
    #[arg(long, default_value_t = 1.0, value_parser = parse_percent)]
    pub drop_percent: f64,
    /// QoS 1 messages a device keeps unacknowledged at most.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub window: u16,
    /// Seed of the simulated readings, for a reproducible run [default:
    /// from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Progress lines on stderr: pretty (a live line on a terminal, plain
    /// lines otherwise) or json.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number: give messages per second, e.g. 1 or 0.5"))?;
    if !(0.01..=MAX_RATE).contains(&rate) {
        return Err(format!(
            "{rate} is out of range: give 0.01 to {MAX_RATE} messages per second per device"
        ));
    }
    Ok(rate)
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number: give a percentage such as 1 or 0.5"))?;
    if !(0.0..=100.0).contains(&p) {
        return Err(format!("{p} is not a percentage: give 0 to 100"));
    }
    Ok(p)
}

/// `30s`, `5m`, `1h30m`, `2 hours`, or ISO 8601 (`PT30S`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = "give a duration such as 30s, 5m or 1h30m";
    let d: jiff::SignedDuration = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: {hint}"))?;
    if d.is_negative() || d.is_zero() {
        return Err(format!("{s:?} is not a positive duration: {hint}"));
    }
    Duration::try_from(d).map_err(|_| format!("{s:?} is too long: {hint}"))
}

/// Device ids are slugs: the prefix must start one and fit in one.
fn parse_prefix(s: &str) -> Result<String, String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let starts = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_chars || !starts || s.len() > 50 {
        return Err(format!(
            "{s:?} cannot start a device id: use letters, digits, '-', '_' and '.', starting \
             with a letter or digit, at most 50 characters (e.g. sim-)"
        ));
    }
    Ok(s.to_owned())
}

fn parse_server(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s.trim())
        .map_err(|e| format!("{s:?} is not a URL ({e}): give e.g. http://127.0.0.1:8080"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{s:?} is not an http(s) URL with a host: give e.g. http://127.0.0.1:8080"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl SimulateArgs {
    fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    /// Readings per device in a timed run.
    fn readings(&self) -> Option<u64> {
        self.duration
            .map(|d| (d.as_secs_f64() * self.rate).round().max(1.0) as u64)
    }

    /// The MQTT address: `--mqtt`, else the server's host on 1883.
    async fn mqtt_address(&self) -> anyhow::Result<SocketAddr> {
        let text = match &self.mqtt {
            Some(m) => m.clone(),
            None => {
                let url = reqwest::Url::parse(&self.server)?;
                let host = url.host_str().context("the --server URL has no host")?;
                // An IPv6 literal keeps its brackets in host_str.
                format!("{host}:{MQTT_PORT}")
            }
        };
        let mut addrs = tokio::net::lookup_host(&text).await.with_context(|| {
            format!("--mqtt {text:?}: not a HOST:PORT that resolves (e.g. 127.0.0.1:1883)")
        })?;
        addrs
            .next()
            .with_context(|| format!("--mqtt {text:?}: the host has no address"))
    }

    fn ids(&self) -> Vec<String> {
        let width = self.devices.to_string().len().max(4);
        (1..=self.devices)
            .map(|i| format!("{}{i:0width$}", self.prefix))
            .collect()
    }
}

/// Checks the open-file limit, runs on its own runtime, prints the
/// summary; the exit status is the verdict.
pub fn main(args: SimulateArgs) -> ExitCode {
    let style = Style::detect(args.log_format == LogFormat::Json);
    let nofile = match raise_nofile_limit() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: reading the open-files limit: {e:#}");
            return ExitCode::from(2);
        }
    };
    let needed = u64::from(args.devices) + FD_HEADROOM;
    if needed > nofile {
        eprintln!(
            "error: --devices {} needs about {needed} open files and the limit is {nofile}: \
             simulate fewer devices or raise the limit (ulimit -n; hard limit ulimit -Hn)",
            args.devices
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args, style)) {
        Ok(summary) => {
            if args.json {
                println!("{}", summary.json());
            } else {
                print!("{}", summary.text());
            }
            if summary.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The run: provisioning, then the devices until they finish or are
/// stopped. An error means the run could not start.
pub async fn run(args: &SimulateArgs, style: Style) -> anyhow::Result<Summary> {
    let mqtt = args.mqtt_address().await?;
    let credentials = Credentials::choose(
        args.token.clone(),
        std::env::var("FERRULE_ADMIN_EMAIL").ok(),
        std::env::var("FERRULE_ADMIN_PASSWORD").ok(),
    )?;
    let api = Api::connect(&args.server, credentials, args.tenant.clone()).await?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let ids = args.ids();
    let mut step = progress::Step::new(style, "provisioning devices", ids.len());
    let (devices, provisioned) = api
        .provision(&ids, args.profile.as_deref(), args.duration, seed, |n| {
            step.set(n)
        })
        .await?;
    step.finish(&format!(
        "{} created, {} reused with a new token",
        provisioned.created, provisioned.reused
    ));
    progress::log(
        style,
        &format!(
            "{} devices → mqtt://{mqtt}, {} msgs/s each, {}",
            devices.len(),
            args.rate,
            args.duration.map_or_else(
                || "until Ctrl-C".to_owned(),
                |d| format!("for {:.0} s", d.as_secs_f64())
            )
        ),
        || serde_json::json!({"devices": devices.len(), "mqtt": mqtt.to_string(), "rate": args.rate}),
    );

    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let started = Instant::now();
    let pace = Duration::from_secs_f64(1.0 / f64::from(args.connect_rate));
    let mut tasks = JoinSet::new();
    let mut last_connect = started;
    for (i, d) in devices.into_iter().enumerate() {
        let connect_at = started + pace.mul_f64(i as f64);
        last_connect = connect_at;
        let plan = device::Plan {
            id: d.id,
            token: d.token,
            mqtt,
            connect_at,
            period: args.period(),
            readings: args.readings(),
            window: usize::from(args.window),
            drop_per_minute: args.drop_percent / 100.0,
            seed: seed ^ (i as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F),
        };
        tasks.spawn(device::run(plan, tally.clone(), stop.clone()));
    }
    let planned = args
        .duration
        .map(|d| last_connect.duration_since(started) + args.period() + d);
    let shown = CancellationToken::new();
    let progress = tokio::spawn(progress::show(
        style,
        tally.clone(),
        tasks.len(),
        planned,
        shown.clone(),
    ));

    let interrupted = wait(
        &mut tasks,
        &stop,
        planned.map(|p| started + p + FINISH_GRACE),
        &tally,
    )
    .await;
    shown.cancel();
    let _ = progress.await;
    Ok(tally.summary(ids.len(), started.elapsed().as_secs_f64(), interrupted))
}

/// Waits for the devices: until all have finished, or until a signal (or
/// the deadline) stops them, then at most [`STOP_DRAIN`] for their last
/// acknowledgements. True when a signal stopped the run.
async fn wait(
    tasks: &mut JoinSet<()>,
    stop: &CancellationToken,
    deadline: Option<Instant>,
    tally: &Tally,
) -> bool {
    let mut interrupted = false;
    let mut drain_until: Option<Instant> = None;
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate());
    loop {
        let stopping = drain_until.is_some();
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Err(e)) if e.is_panic() => {
                    tally.error("device task panicked", e.to_string());
                }
                Some(_) => {}
            },
            _ = tokio::signal::ctrl_c() => {
                if stopping {
                    // A second Ctrl-C: no more waiting.
                    break;
                }
                interrupted = true;
                eprintln!("simulate: stopping (Ctrl-C again to stop at once)…");
                stop.cancel();
                drain_until = Some(Instant::now() + STOP_DRAIN);
            }
            _ = recv(&mut terminate), if !stopping => {
                interrupted = true;
                stop.cancel();
                drain_until = Some(Instant::now() + STOP_DRAIN);
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !stopping => {
                tally.error(
                    "not finished in time",
                    "devices still had messages to deliver long after the last reading was due: \
                     the server is not keeping up (fewer --devices or a lower --rate)"
                        .to_owned(),
                );
                stop.cancel();
                drain_until = Some(Instant::now() + STOP_DRAIN);
            }
            () = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if stopping => break,
        }
    }
    // Devices still waiting for acknowledgements are cut off; what they
    // had in flight counts as unacknowledged.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    interrupted
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
        SimulateArgs::try_parse_from(
            std::iter::once("ferrule simulate").chain(args.iter().copied()),
        )
    }

    #[test]
    fn defaults_match_the_documentation() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.devices, 10);
        assert_eq!(a.rate, 1.0);
        assert_eq!(a.duration, None);
        assert_eq!(a.prefix, "sim-");
        assert_eq!(a.server, "http://127.0.0.1:8080");
        assert_eq!(a.readings(), None);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        let a = parse(&["--duration", "30s", "--rate", "10"]).unwrap();
        assert_eq!(a.duration, Some(Duration::from_secs(30)));
        assert_eq!(a.readings(), Some(300));
        assert_eq!(
            parse(&["--duration", "1h30m"]).unwrap().duration,
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse(&["--duration", "5m"]).unwrap().duration,
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn bad_arguments_are_named_with_the_fix() {
        for (args, says) in [
            (&["--devices", "0"][..], "--devices"),
            (&["--rate", "fast"], "messages per second"),
            (&["--rate", "5000"], "0.01 to 1000"),
            (&["--duration", "soon"], "such as 30s"),
            (&["--duration=-5s"], "positive"),
            (&["--duration", "0s"], "positive"),
            (&["--prefix", "a/b"], "cannot start a device id"),
            (&["--server", "localhost:8080"], "http://127.0.0.1:8080"),
            (&["--drop-percent", "150"], "0 to 100"),
        ] {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn ids_are_numbered_from_one_and_sort_in_order() {
        let a = parse(&["--devices", "3", "--prefix", "t-"]).unwrap();
        assert_eq!(a.ids(), ["t-0001", "t-0002", "t-0003"]);
        let a = parse(&["--devices", "12345"]).unwrap();
        assert_eq!(a.ids()[0], "sim-00001");
    }

    #[tokio::test]
    async fn the_mqtt_address_defaults_to_the_server_host() {
        let a = parse(&["--server", "http://127.0.0.1:9000"]).unwrap();
        assert_eq!(
            a.mqtt_address().await.unwrap(),
            "127.0.0.1:1883".parse().unwrap()
        );
        let a = parse(&["--mqtt", "127.0.0.1:2883"]).unwrap();
        assert_eq!(a.mqtt_address().await.unwrap().port(), 2883);
        let a = parse(&["--mqtt", "nonsense"]).unwrap();
        let e = a.mqtt_address().await.unwrap_err().to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
    }
}
