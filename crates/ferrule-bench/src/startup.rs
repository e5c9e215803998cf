//! Start-up time and idle memory, against mosquitto started the same way.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::process::{START_WITHIN, free_port, rss_kib, spawn_ferrule, terminate};

#[derive(Debug, Args)]
pub struct StartupArgs {
    /// How many starts to measure of each kind.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// How long to let each server idle before reading its RSS.
    #[arg(long, default_value_t = 2)]
    pub idle_secs: u64,
}

struct Sample {
    ready: Duration,
    rss_kib: u64,
    stop: Duration,
}

pub async fn run(args: StartupArgs) -> anyhow::Result<()> {
    let idle = Duration::from_secs(args.idle_secs);
    let mut first = Vec::new();
    let mut restart = Vec::new();
    for _ in 0..args.runs {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let data = data.to_str().context("temp path is not UTF-8")?;
        first.push(ferrule_once(data, idle).await?);
        restart.push(ferrule_once(data, idle).await?);
    }
    let mut baseline = Vec::new();
    for _ in 0..args.runs {
        baseline.push(mosquitto_once(idle).await?);
    }
    println!("| server | start | ready p50 | ready max | idle RSS p50 | stop (SIGTERM) p50 |");
    println!("|---|---|---|---|---|---|");
    report(
        "ferrule",
        "first start (creates store, hashes admin password)",
        &mut first,
    );
    report("ferrule", "restart (existing data dir)", &mut restart);
    report(
        "mosquitto 2 (baseline)",
        "start, port accepting",
        &mut baseline,
    );
    Ok(())
}

async fn ferrule_once(data: &str, idle: Duration) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let server = spawn_ferrule(&["--data-dir", data, "--http-listen", "127.0.0.1:0"])?
        .ready(START_WITHIN)
        .await?;
    let mut child = server.child;
    let ready = start.elapsed();
    tokio::time::sleep(idle).await;
    let rss = rss_kib(child.id().context("pid")?)?;
    let stop_start = Instant::now();
    let status = terminate(&mut child).await?;
    if !status.success() {
        bail!("ferrule exited with {status} on SIGTERM");
    }
    Ok(Sample {
        ready,
        rss_kib: rss,
        stop: stop_start.elapsed(),
    })
}

async fn mosquitto_once(idle: Duration) -> anyhow::Result<Sample> {
    let port = free_port()?;
    let start = Instant::now();
    let mut child = tokio::process::Command::new("mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting mosquitto (apt-get install mosquitto)")?;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("mosquitto not accepting after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready = start.elapsed();
    tokio::time::sleep(idle).await;
    let rss = rss_kib(child.id().context("pid")?)?;
    let stop_start = Instant::now();
    terminate(&mut child).await?;
    Ok(Sample {
        ready,
        rss_kib: rss,
        stop: stop_start.elapsed(),
    })
}

fn report(server: &str, kind: &str, samples: &mut [Sample]) {
    samples.sort_by_key(|s| s.ready);
    let p50 = samples[samples.len() / 2].ready;
    let max = samples[samples.len() - 1].ready;
    samples.sort_by_key(|s| s.rss_kib);
    let rss = samples[samples.len() / 2].rss_kib;
    samples.sort_by_key(|s| s.stop);
    let stop = samples[samples.len() / 2].stop;
    println!(
        "| {server} | {kind} | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} ms |",
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        rss as f64 / 1024.0,
        stop.as_secs_f64() * 1e3,
    );
}
