//! How long operations (backup, restore, check) show how far they are: a
//! bar on a terminal (done/total bytes, rate, ETA), plain log lines every
//! few seconds and at the end of each phase otherwise — when stderr is not
//! a terminal, or with `--log-format json`, where a bar would garble the
//! lines a machine reads.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferrule_store::backup::Progress;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::LogFormat;

/// Time between plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A [`Progress`] for the terminal or for logs.
pub enum Reporter {
    Bar(Mutex<Option<ProgressBar>>),
    Lines(Mutex<LineState>),
}

pub struct LineState {
    phase: String,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Reporter {
    /// A bar when stderr is a terminal and logs are for people; lines
    /// otherwise.
    pub fn for_stderr(format: LogFormat) -> Self {
        if format == LogFormat::Pretty && std::io::stderr().is_terminal() {
            Reporter::Bar(Mutex::new(None))
        } else {
            let now = Instant::now();
            Reporter::Lines(Mutex::new(LineState {
                phase: String::new(),
                total: 0,
                done: 0,
                started: now,
                last_line: now,
            }))
        }
    }
}

fn bar_for(phase: &str, total: u64) -> ProgressBar {
    let bar = if total > 0 {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} {spinner} {bytes} {bytes_per_sec} {elapsed}")
                .expect("a valid template"),
        );
        bar
    };
    bar.set_message(phase.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / elapsed.as_secs_f64().max(0.001)
}

impl LineState {
    fn log(&mut self, finished: bool) {
        let elapsed = self.started.elapsed();
        let mib_per_s = (rate(self.done, elapsed) * 10.0).round() / 10.0;
        if finished {
            tracing::info!(
                phase = %self.phase,
                done_bytes = self.done,
                seconds = (elapsed.as_secs_f64() * 10.0).round() / 10.0,
                mib_per_s,
                "{} done",
                self.phase
            );
            return;
        }
        let eta = (self.total > self.done && self.done > 0).then(|| {
            let left = (self.total - self.done) as f64 / self.done as f64;
            (elapsed.as_secs_f64() * left).round() as u64
        });
        tracing::info!(
            phase = %self.phase,
            done_bytes = self.done,
            total_bytes = self.total,
            mib_per_s,
            eta_seconds = eta,
            "{} in progress",
            self.phase
        );
        self.last_line = Instant::now();
    }
}

impl Progress for Reporter {
    fn start(&self, phase: &str, total: u64) {
        match self {
            Reporter::Bar(bar) => {
                let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(old) = bar.take() {
                    old.finish_and_clear();
                }
                *bar = Some(bar_for(phase, total));
            }
            Reporter::Lines(state) => {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                *s = LineState {
                    phase: phase.to_string(),
                    total,
                    done: 0,
                    started: now,
                    last_line: now,
                };
            }
        }
    }

    fn advance(&self, bytes: u64) {
        match self {
            Reporter::Bar(bar) => {
                if let Some(bar) = &*bar.lock().unwrap_or_else(|e| e.into_inner()) {
                    bar.inc(bytes);
                }
            }
            Reporter::Lines(state) => {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.done += bytes;
                if s.last_line.elapsed() >= LINE_EVERY {
                    s.log(false);
                }
            }
        }
    }

    fn finish(&self) {
        match self {
            Reporter::Bar(bar) => {
                if let Some(bar) = bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    bar.finish();
                }
            }
            Reporter::Lines(state) => state.lock().unwrap_or_else(|e| e.into_inner()).log(true),
        }
    }
}
