//! How the ingest sections measure: waiting for the machine to go quiet
//! before a section, a warm-up then a measurement [`Window`] over a
//! counter, the CPU use of Ferrule, the load generator and everything else
//! over it, and draining the load tasks afterwards.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::WARMUP;
use crate::process::{cpu_busy_seconds, cpu_seconds, own_cpu_seconds};

/// Longest wait, after a window, for the messages and requests in flight
/// to be answered.
const DRAIN: Duration = Duration::from_secs(30);
/// CPU (in cores) used by other processes during a window above which
/// the window counts as disturbed (as in `bench mqtt`).
const DISTURBED: f64 = 0.15;
/// Longest wait for the machine to go quiet before a section.
const QUIET_WAIT: Duration = Duration::from_secs(60);
/// CPU (in cores, all CPUs together) below which the machine counts as
/// quiet.
const QUIET_BELOW: f64 = 0.2;

/// CPU use and a counter at one instant.
struct Snapshot {
    at: Instant,
    ferrule_cpu: f64,
    own_cpu: f64,
    /// Busy seconds of all CPUs together, by anyone.
    machine_busy: f64,
    count: u64,
}

impl Snapshot {
    fn take(ferrule: u32, count: u64) -> anyhow::Result<Self> {
        Ok(Snapshot {
            at: Instant::now(),
            ferrule_cpu: cpu_seconds(ferrule)?,
            own_cpu: own_cpu_seconds()?,
            machine_busy: cpu_busy_seconds()?.iter().sum(),
            count,
        })
    }

    fn until(&self, end: &Snapshot) -> Window {
        let secs = end.at.duration_since(self.at).as_secs_f64();
        Window {
            secs,
            count: end.count - self.count,
            ferrule_cores: (end.ferrule_cpu - self.ferrule_cpu) / secs,
            loadgen_cores: (end.own_cpu - self.own_cpu) / secs,
            machine_cores: (end.machine_busy - self.machine_busy) / secs,
        }
    }
}

/// What happened over a measurement window; CPU in cores (1.0 = one core
/// busy the whole time).
pub(super) struct Window {
    secs: f64,
    pub(super) count: u64,
    ferrule_cores: f64,
    loadgen_cores: f64,
    machine_cores: f64,
}

impl Window {
    pub(super) fn per_sec(&self) -> f64 {
        self.count as f64 / self.secs
    }

    /// CPU use over the window. /proc/stat samples at the scheduler tick,
    /// so "others" (anything but Ferrule and this process) is an estimate;
    /// a large share means the machine was shared and the figure is suspect.
    pub(super) fn cpu_note(&self) -> String {
        let cpus = cpu_busy_seconds().map_or(0, |b| b.len());
        let others = (self.machine_cores - self.ferrule_cores - self.loadgen_cores).max(0.0);
        let warning = if others > DISTURBED {
            " (**other work shared the machine: figure suspect**)"
        } else {
            ""
        };
        format!(
            "CPU over the {:.1} s window, in cores: Ferrule {:.2}, load generator {:.2}, \
             others {others:.2}{warning}; {cpus} CPUs",
            self.secs, self.ferrule_cores, self.loadgen_cores
        )
    }
}

/// Waits (up to `QUIET_WAIT`) until the machine is quiet (all CPUs
/// together less than `QUIET_BELOW` busy over a second), so that a section
/// does not start while other work shares the machine.
pub(super) async fn wait_for_quiet() -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let before: f64 = cpu_busy_seconds()?.iter().sum();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = cpu_busy_seconds()?.iter().sum::<f64>() - before;
        if busy < QUIET_BELOW {
            return Ok(());
        }
        if start.elapsed() > QUIET_WAIT {
            eprintln!("warning: the machine is still busy ({busy:.2} cores); running anyway");
            return Ok(());
        }
    }
}

/// Runs the load (already going) through the warm-up and the window;
/// `count` reads the counter that the rate is taken from.
pub(super) async fn measure_window(
    ferrule: u32,
    measure: Duration,
    count: impl Fn() -> u64,
) -> anyhow::Result<Window> {
    tokio::time::sleep(WARMUP).await;
    let start = Snapshot::take(ferrule, count())?;
    tokio::time::sleep(measure).await;
    let end = Snapshot::take(ferrule, count())?;
    Ok(start.until(&end))
}

/// Waits (up to `DRAIN`) for load tasks told to stop; returns what went
/// wrong, the first few errors in full.
pub(super) async fn drain<T: 'static>(mut tasks: JoinSet<anyhow::Result<T>>) -> Vec<String> {
    const SHOWN: usize = 3;
    let mut errors = Vec::new();
    let mut failed = 0usize;
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok(Ok(_)))) => {}
            Ok(Some(Ok(Err(e)))) => {
                failed += 1;
                if errors.len() < SHOWN {
                    errors.push(format!("{e:#}"));
                }
            }
            Ok(Some(Err(e))) => {
                failed += 1;
                errors.push(format!("a load task panicked: {e}"));
            }
            Err(_) => {
                errors.push(format!(
                    "{} load tasks still had requests unanswered {} s after the window",
                    tasks.len(),
                    DRAIN.as_secs()
                ));
                tasks.abort_all();
                break;
            }
        }
    }
    if failed > errors.len() {
        errors.push(format!("{failed} load tasks failed in all"));
    }
    errors
}
