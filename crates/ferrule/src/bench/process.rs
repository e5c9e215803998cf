//! Child processes for benchmarks: spawn, watch memory, stop.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Resident set size of a process, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// Sends SIGTERM and waits for the exit status.
pub async fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .context("sending SIGTERM")?;
    }
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .context("process did not exit within 15 s of SIGTERM")?
        .context("waiting for exit")
}

/// Starts this binary's `serve` with the given arguments, stdout piped.
pub fn spawn_ferrule(args: &[&str]) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the ferrule binary")?;
    Command::new(exe)
        .arg("serve")
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .args(args)
        .env("FERRULE_ADMIN_PASSWORD", "bench-password")
        .env("FERRULE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting ferrule serve")
}

/// Reads the child's stdout until the HTTP URL line; returns `host:port`.
pub async fn http_addr(stdout: ChildStdout) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(rest) = line.trim().strip_prefix("HTTP API") {
            let url = rest.split_whitespace().next().unwrap_or_default();
            let addr = url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            // Keep draining so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(addr.to_owned());
        }
    }
    bail!("ferrule exited before printing its HTTP address")
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
