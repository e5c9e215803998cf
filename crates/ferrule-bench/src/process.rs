//! Child processes for benchmarks: spawn, watch memory, stop.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::launch::{Running, Starting, server_binary};

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

/// Every `[limits]` rate limit off: the throughput benches measure the
/// broker and the store, not the limiter (`bench isolation` measures both).
pub const LIMITS_OFF: &[(&str, &str)] = &[
    ("FERRULE_LIMITS_CLIENT_MESSAGES_PER_SEC", "0"),
    ("FERRULE_LIMITS_CLIENT_BYTES_PER_SEC", "0"),
    ("FERRULE_LIMITS_TENANT_MESSAGES_PER_SEC", "0"),
    ("FERRULE_LIMITS_TENANT_BYTES_PER_SEC", "0"),
];

/// How long a bench waits for a server to become ready.
pub const START_WITHIN: Duration = Duration::from_secs(30);

/// Spawns `ferrule serve` with the given arguments, rate limits off; its
/// stderr is echoed to ours.
pub fn spawn_ferrule(args: &[&str]) -> anyhow::Result<Starting> {
    spawn_ferrule_with(args, LIMITS_OFF)
}

/// [`spawn_ferrule`] with these environment variables instead of
/// [`LIMITS_OFF`].
pub fn spawn_ferrule_with(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Starting> {
    let mut command = Command::new(server_binary()?);
    command
        .arg("serve")
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .args(args)
        .env("FERRULE_ADMIN_PASSWORD", "bench-password")
        .env("FERRULE_LOG", "warn")
        .envs(env.iter().copied());
    Starting::spawn(&mut command, true)
}

/// [`spawn_ferrule_with`], then waits until it is ready.
pub async fn start_ferrule_with(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Running> {
    spawn_ferrule_with(args, env)?.ready(START_WITHIN).await
}

/// Pins the calling thread to `cpu`; threads and processes it starts
/// afterwards inherit the pin.
pub fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .with_context(|| format!("CPU {cpu} does not exist"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning to CPU {cpu}"))
}

/// Runs `spawn` with the calling thread pinned to `cpu`, then restores the
/// thread's affinity. A child process started by `spawn` inherits the pin
/// from its first instruction, so every thread it ever creates is pinned too
/// (unlike `sched_setaffinity` on its pid after the fact, which reaches only
/// the threads that exist by then).
pub fn spawn_on_cpu<T>(cpu: usize, spawn: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let me = nix::unistd::Pid::from_raw(0);
    let before = nix::sched::sched_getaffinity(me).context("reading CPU affinity")?;
    pin_current_thread(cpu)?;
    let spawned = spawn();
    nix::sched::sched_setaffinity(me, &before).context("restoring CPU affinity")?;
    spawned
}

/// The distinct `Cpus_allowed_list` values of all threads of a process,
/// e.g. `["0"]` when every thread is pinned to CPU 0.
pub fn cpus_allowed(pid: u32) -> anyhow::Result<Vec<String>> {
    let mut lists = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may exit while we look.
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        {
            lists.push(list.trim().to_owned());
        }
    }
    lists.sort();
    lists.dedup();
    Ok(lists)
}

/// Number of threads of a process.
pub fn thread_count(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/task"))?.count())
}

/// CPU time (user + system, all threads) a process has used, in seconds,
/// from /proc/PID/stat (10 ms resolution).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    /// USER_HZ, the unit of utime and stime; 100 on every Linux platform.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces; utime and stime are fields 14 and 15 of the line.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

/// Busy time of each CPU since boot, in seconds, from /proc/stat: user,
/// nice, system, irq, softirq and steal, by whoever. Compared with the
/// CPU time of the processes pinned to a core, it shows whether anything
/// else ran there.
pub fn cpu_busy_seconds() -> anyhow::Result<Vec<f64>> {
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let mut busy = Vec::new();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        let Some(index) = name.strip_prefix("cpu").filter(|i| !i.is_empty()) else {
            continue;
        };
        let index: usize = index.parse()?;
        let ticks: Vec<u64> = fields.map(str::parse).collect::<Result<_, _>>()?;
        // user nice system idle iowait irq softirq steal …
        let sum = [0, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|&i| ticks.get(i))
            .sum::<u64>();
        if busy.len() <= index {
            busy.resize(index + 1, 0.0);
        }
        busy[index] = sum as f64 / TICKS_PER_SECOND;
    }
    Ok(busy)
}

/// A counter of the kernel's TCP extension statistics (/proc/net/netstat),
/// e.g. `ListenOverflows`: connections dropped because a listen backlog was
/// full. System-wide.
pub fn tcp_ext_counter(name: &str) -> anyhow::Result<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").context("/proc/net/netstat")?;
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let position = names.split_whitespace().position(|n| n == name);
        if let Some(value) = position.and_then(|i| values.split_whitespace().nth(i)) {
            return Ok(value.parse()?);
        }
    }
    bail!("no TcpExt {name} in /proc/net/netstat")
}

/// CPU time (user + system, all threads) this process has used, in seconds.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

/// Raises this process's soft limit on open files to its hard limit (child
/// processes inherit it) and returns the new soft limit.
pub fn raise_nofile_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit")?;
    }
    Ok(hard)
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
