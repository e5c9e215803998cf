//! The simulator's progress on stderr: a live line on a terminal
//! (indicatif: connected, msgs/s, acked, errors, commands), plain log
//! lines every few seconds otherwise, or JSON lines with
//! `--log-format json`. Stdout is left to the summary.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::tally::{Snapshot, Tally};

/// How often the live line is redrawn.
const REDRAW: Duration = Duration::from_millis(250);
/// How often a plain line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A live line, redrawn in place (stderr is a terminal).
    Live,
    /// A plain line now and then.
    Lines,
    /// A JSON object per line now and then.
    Json,
}

impl Style {
    /// Live on a terminal unless JSON was asked for.
    pub fn detect(json: bool) -> Self {
        if json {
            Style::Json
        } else if std::io::stderr().is_terminal() {
            Style::Live
        } else {
            Style::Lines
        }
    }
}

/// Shows a step of known size (provisioning devices).
pub struct Step {
    bar: Option<ProgressBar>,
    style: Style,
    what: &'static str,
    total: usize,
    last_log: std::time::Instant,
}

impl Step {
    pub fn new(style: Style, what: &'static str, total: usize) -> Self {
        let bar = (style == Style::Live).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(what);
            bar
        });
        log(
            style,
            &format!("{what}: 0/{total}"),
            || json!({"step": what, "done": 0, "total": total}),
        );
        Step {
            bar,
            style,
            what,
            total,
            last_log: std::time::Instant::now(),
        }
    }

    pub fn set(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = std::time::Instant::now();
            let (what, total) = (self.what, self.total);
            log(
                self.style,
                &format!("{what}: {done}/{total}"),
                || json!({"step": what, "done": done, "total": total}),
            );
        }
    }

    pub fn finish(self, note: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let what = self.what;
        log(
            self.style,
            &format!("{what}: {note}"),
            || json!({"step": what, "done": self.total, "total": self.total, "note": note}),
        );
    }
}

/// Writes a progress line on stderr, plain or as JSON.
pub fn log(style: Style, text: &str, json: impl FnOnce() -> serde_json::Value) {
    match style {
        Style::Json => eprintln!("{}", json()),
        Style::Live | Style::Lines => eprintln!("simulate: {text}"),
    }
}

/// Shows the run's progress until `done` is cancelled.
pub async fn show(
    style: Style,
    tally: Arc<Tally>,
    devices: usize,
    planned: Option<Duration>,
    done: CancellationToken,
) {
    let started = Instant::now();
    let bar = (style == Style::Live).then(|| live_bar(planned));
    let mut tick = tokio::time::interval(if bar.is_some() { REDRAW } else { LOG_EVERY });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // The rate over the last few seconds, from samples of what was sent.
    let mut window: std::collections::VecDeque<(Instant, u64)> = [(started, 0)].into();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = done.cancelled() => break,
        }
        let now = Instant::now();
        let s = tally.snapshot();
        window.push_back((now, s.sent));
        while window.len() > 2 && now.duration_since(window[0].0) > Duration::from_secs(3) {
            window.pop_front();
        }
        let rate = match (window.front(), window.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64(),
            _ => 0.0,
        };
        let elapsed = now.duration_since(started);
        match &bar {
            Some(bar) => {
                if let Some(planned) = planned {
                    bar.set_position(elapsed.min(planned).as_millis() as u64);
                }
                bar.set_message(line(&s, devices, rate));
            }
            None => log(
                style,
                &format!("{:.0}s {}", elapsed.as_secs_f64(), line(&s, devices, rate)),
                || {
                    json!({
                        "elapsed_s": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
                        "connected": s.connected,
                        "devices": devices,
                        "msgs_per_s": rate.round(),
                        "sent": s.sent,
                        "acked": s.acked,
                        "errors": s.errors,
                        "commands": s.commands,
                    })
                },
            ),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn live_bar(planned: Option<Duration>) -> ProgressBar {
    let target = ProgressDrawTarget::stderr();
    match planned {
        Some(planned) => {
            let bar = ProgressBar::with_draw_target(Some(planned.as_millis() as u64), target);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed:>4} [{bar:20}] ETA {eta:>4} {wide_msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, target);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg} (Ctrl-C stops)")
                    .expect("a valid template"),
            );
            bar
        }
    }
}

/// `connected 998/1000 · 9,870 msgs/s · acked 120,311/120,400 · errors 0 · commands 2`
fn line(s: &Snapshot, devices: usize, rate: f64) -> String {
    format!(
        "connected {}/{devices} · {} msgs/s · acked {}/{} · errors {} · commands {}",
        s.connected,
        crate::thousands(rate),
        crate::thousands(s.acked as f64),
        crate::thousands(s.sent as f64),
        s.errors,
        s.commands
    )
}
