//! `ferrule bench rules`: how many messages the rules engine evaluates, and
//! what rules cost the broker's QoS 0 fan-in, in one run of one server.
//!
//! One `ferrule serve` runs pinned to CPU 0 from its first instruction (rate
//! limits off, anonymous clients in tenant `default`, as in `bench mqtt`);
//! this process, the load generator, runs on CPU 1. Every publisher sends
//! the same cycle of 64-byte JSON payloads ([`load::payloads`]) at QoS 0 as
//! fast as TCP takes them. In order:
//!
//! 1. fan-in QoS 0 with no rule anywhere: 4 publishers → 1 subscriber on
//!    one topic of tenant `default`, messages delivered per second;
//! 2. the same with `--rules` rules on that topic in `default`, and what the
//!    engine evaluated and dropped meanwhile (its bounded queue sheds load
//!    rather than slow the broker down; the report says how much);
//! 3. the engine: `--tenants` tenants, each with `--rules` rules on
//!    `bench/+/t` and its own publishers (logged in with an API key of the
//!    tenant), publishing where nobody subscribes, so that the engine is
//!    what is measured; messages evaluated per second, from `/metrics`:
//!    first flooded (publishers as fast as TCP takes them: what the engine
//!    evaluates while its queues shed the rest), then at steady offered
//!    rates, searching for the highest the engine keeps up with (at most
//!    1 % dropped): its sustained throughput, the figure judged.
//!
//! Rule `i` of `n` passes the messages whose `seq % n = i`, and the payloads'
//! `seq` cycles evenly, so each message passes exactly one rule and causes
//! one republish. Each measurement waits for the machine to go quiet and is
//! repeated when other load disturbed it (the least disturbed run counts),
//! as in `bench mqtt`. The Markdown ([`report`]) is for docs/BENCHMARKS.md.

mod api;
mod load;
mod metrics;
pub mod report;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use self::api::Admin;
use self::load::Scraper;
pub use self::report::{Offered, Rates, Report};
use crate::mqtt::{Broker, FANIN0, LOADGEN_CPU, least_disturbed_of};
use crate::process::{pin_current_thread, rss_kib};

/// The topic filter of the engine scenario's rules; its publishers write to
/// `bench/pK/t`, a topic no device owns, so nothing is stored as telemetry.
const ENGINE_FILTER: &str = "bench/+/t";

#[derive(Debug, Clone, Args)]
pub struct RulesArgs {
    /// Length of each measurement window, in seconds (after a 2 s warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// Tenants of the engine scenario, each with its rules and publishers.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub tenants: u32,
    /// Rules per tenant (and in the fan-in's tenant when rules are on).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rules: u32,
    /// MQTT publishers per tenant in the engine scenario.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub publishers: u32,
    /// Longest wait, in seconds, for both cores to go quiet before each run.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub quiet_wait_secs: u64,
    /// Runs of each measurement at most, to find one that other load on the
    /// machine did not disturb (the least disturbed one counts).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub attempts: u32,
    /// The first rate (msgs/s, all publishers together) offered to the
    /// engine in the sustained search; the target by default.
    #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub engine_rate: u64,
    /// Rates tried at most in the sustained search (0: flood only).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub steps: u32,
}

impl RulesArgs {
    fn window(&self) -> Duration {
        Duration::from_secs(self.duration)
    }

    /// The command that runs this bench with these settings, for the report.
    pub fn command_line(&self) -> String {
        format!(
            "ferrule bench rules --duration {} --tenants {} --rules {} --publishers {} \
             --engine-rate {} --steps {}",
            self.duration, self.tenants, self.rules, self.publishers, self.engine_rate, self.steps
        )
    }
}

/// Pins this process to the load generator's core, runs the scenario on a
/// current-thread runtime and prints the table; an error when the run did
/// not measure what it set out to (the table is printed first).
pub fn main(args: RulesArgs) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism()?.get();
    if cpus < 2 {
        bail!("the rules bench needs two CPUs (one per side); this process may use {cpus}");
    }
    pin_current_thread(LOADGEN_CPU)?;
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

/// Runs every measurement against a Ferrule of its own (pinned to CPU 0)
/// and hands back what it measured; an error means a step failed. Needs a
/// Tokio runtime; does not pin the calling thread.
pub async fn run(args: &RulesArgs) -> anyhow::Result<Report> {
    let broker = Broker::ferrule_with_env(0, &[]).await?;
    let measured = measure(args, &broker).await;
    let ferrule_rss_mib = rss_kib(broker.pid).ok().map(|kib| kib as f64 / 1024.0);
    broker.stop().await?;
    let mut report = measured?;
    report.ferrule_rss_mib = ferrule_rss_mib;
    Ok(report)
}

async fn measure(args: &RulesArgs, broker: &Broker) -> anyhow::Result<Report> {
    broker.check_pinned()?;
    let http = broker.http.as_deref().context("ferrule's HTTP address")?;
    let base = format!("http://{http}");
    let admin = Admin::login(&base).await?;
    let scraper = Scraper::new(&base)?;
    let quiet = Duration::from_secs(args.quiet_wait_secs);
    let attempts = usize::try_from(args.attempts)?;
    let window = args.window();
    let mut runs = 0u32;

    let fanin_off = least_disturbed_of(
        attempts,
        quiet,
        "fan-in QoS 0, no rule",
        async || {
            runs += 1;
            load::fanin(broker, &scraper, window, &format!("off{runs}")).await
        },
        Rates::measured,
    )
    .await?;
    eprintln!("  {fanin_off:?}");

    let ids = admin.create_rules(None, FANIN0.topic, args.rules).await?;
    eprintln!(
        "ferrule: {} rules on '{}' in tenant default",
        ids.len(),
        FANIN0.topic
    );
    let fanin_on = least_disturbed_of(
        attempts,
        quiet,
        "fan-in QoS 0, rules on",
        async || {
            runs += 1;
            load::fanin(broker, &scraper, window, &format!("on{runs}")).await
        },
        Rates::measured,
    )
    .await?;
    eprintln!("  {fanin_on:?}");
    // The engine scenario is the other tenants' alone.
    for id in &ids {
        admin.delete_rule(None, id).await?;
    }

    let mut publishers = Vec::new();
    for t in 0..args.tenants {
        let tenant = format!("bench-rules-{t}");
        admin.create_tenant(&tenant).await?;
        let login = admin.create_api_key(&tenant).await?;
        admin
            .create_rules(Some(&tenant), ENGINE_FILTER, args.rules)
            .await?;
        for p in 0..args.publishers {
            publishers.push(load::Publisher {
                login: login.clone(),
                topic: format!("bench/p{}/t", t * args.publishers + p),
            });
        }
    }
    eprintln!(
        "ferrule: {} tenants with {} rules on '{ENGINE_FILTER}' each, {} publishers",
        args.tenants,
        args.rules,
        publishers.len()
    );
    let engine = least_disturbed_of(
        attempts,
        quiet,
        "rules engine, flood",
        async || {
            runs += 1;
            let tag = format!("e{runs}");
            load::engine(broker, &scraper, &publishers, None, window, &tag).await
        },
        Rates::measured,
    )
    .await?;
    eprintln!("  {engine:?}");

    // The sustained search: from the first rate up by a fifth while the
    // engine keeps up, or down to what it managed while it does not; it
    // ends when the answer flips (or after `steps` rates).
    let mut sustained = Vec::new();
    let mut rate = args.engine_rate as f64;
    let mut rising = None;
    for _ in 0..args.steps {
        let rates = least_disturbed_of(
            attempts,
            quiet,
            &format!("rules engine at {} msgs/s", crate::thousands(rate)),
            async || {
                runs += 1;
                let tag = format!("s{runs}");
                load::engine(broker, &scraper, &publishers, Some(rate), window, &tag).await
            },
            Rates::measured,
        )
        .await?;
        eprintln!("  {rates:?}");
        let kept_up = rates.kept_up();
        sustained.push(Offered { rate, rates });
        if rising.is_some_and(|r| r != kept_up) {
            break;
        }
        rising = Some(kept_up);
        rate = if kept_up {
            rate * 1.2
        } else {
            (rates.evaluated * 0.95).min(rate * 0.9)
        };
    }

    Ok(Report {
        engine,
        sustained,
        fanin_off,
        fanin_on,
        ferrule_rss_mib: None,
    })
}
