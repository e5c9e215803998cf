//! The figures of `bench rules`, its targets, and the Markdown they print as.

use std::fmt::Write as _;

use super::metrics::EngineCounters;
use super::{ENGINE_FILTER, RulesArgs};
use crate::mqtt::{DISTURBED, FANIN0, Measured, PAYLOAD_LEN, WARMUP};
use crate::thousands;

/// Messages per second the engine must evaluate (issue 11).
pub const ENGINE_TARGET: f64 = 300_000.0;
/// Share of the rules-off fan-in the broker must keep with rules on.
pub const FANIN_TARGET: f64 = 0.80;

/// What one run measured over its window: messages per second, and CPU as
/// a share of one core.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// Messages the publishers wrote.
    pub published: f64,
    /// Messages the fan-in's subscriber read (none in the engine run).
    pub delivered: f64,
    /// Messages the engine took from its queues and evaluated.
    pub evaluated: f64,
    /// Messages dropped because a tenant's rule queue was full.
    pub overflowed: f64,
    /// Rules passed (a message passing two rules counts twice).
    pub passed: f64,
    /// Actions that succeeded: every rule here has one republish.
    pub republished: f64,
    /// Actions that failed.
    pub actions_failed: f64,
    pub ferrule_cpu: f64,
    /// All use of Ferrule's core, Ferrule's own included.
    pub ferrule_core_busy: f64,
    pub loadgen_cpu: f64,
    /// All use of the load generator's core, its own included.
    pub loadgen_core_busy: f64,
}

impl Rates {
    /// Both sides' use of the window and the engine's counters' growth over
    /// `secs`.
    pub(super) fn new(cpu: Measured, engine: EngineCounters, secs: f64) -> Self {
        Rates {
            published: cpu.offered,
            delivered: cpu.delivered,
            evaluated: engine.evaluated / secs,
            overflowed: engine.overflowed / secs,
            passed: engine.passed / secs,
            republished: engine.actions_ok / secs,
            actions_failed: engine.actions_failed / secs,
            ferrule_cpu: cpu.broker_cpu,
            ferrule_core_busy: cpu.broker_core_busy,
            loadgen_cpu: cpu.loadgen_cpu,
            loadgen_core_busy: cpu.loadgen_core_busy,
        }
    }

    /// The window as `bench mqtt` sees it, to judge whether other load
    /// disturbed it.
    pub(super) fn measured(&self) -> Measured {
        Measured {
            offered: self.published,
            delivered: self.delivered,
            broker_cpu: self.ferrule_cpu,
            loadgen_cpu: self.loadgen_cpu,
            broker_core_busy: self.ferrule_core_busy,
            loadgen_core_busy: self.loadgen_core_busy,
        }
    }

    /// The largest share of a core others used during the window.
    pub fn disturbance(&self) -> f64 {
        self.measured().disturbance()
    }

    /// Whether the engine kept up with what was published: it dropped at
    /// most [`KEPT_UP_DROPS`] of it and evaluated the rest (its queues
    /// did not grow over the window).
    pub fn kept_up(&self) -> bool {
        self.published > 0.0
            && self.overflowed <= self.published * KEPT_UP_DROPS
            && self.evaluated >= self.published * (1.0 - 2.0 * KEPT_UP_DROPS)
    }
}

/// The share of published messages the engine may drop and still count
/// as keeping up (the queue bound meets bursts of the paced publishers).
pub const KEPT_UP_DROPS: f64 = 0.01;

/// One step of the sustained search: the rate offered and what it gave.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offered {
    /// Messages per second the publishers were paced to, together.
    pub rate: f64,
    pub rates: Rates,
}

/// Everything `bench rules` measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The engine scenario flooded: several tenants, nobody subscribed,
    /// publishers as fast as TCP takes them.
    pub engine: Rates,
    /// The engine scenario at steady rates, in the order tried.
    pub sustained: Vec<Offered>,
    /// Fan-in QoS 0 with no rule.
    pub fanin_off: Rates,
    /// Fan-in QoS 0 with the rules on its topic.
    pub fanin_on: Rates,
    pub ferrule_rss_mib: Option<f64>,
}

impl Report {
    /// The fan-in with rules on as a share of the fan-in without.
    pub fn fanin_ratio(&self) -> Option<f64> {
        (self.fanin_off.delivered > 0.0).then(|| self.fanin_on.delivered / self.fanin_off.delivered)
    }

    /// The highest rate the engine kept up with in the sustained search.
    pub fn sustained_best(&self) -> Option<&Offered> {
        self.sustained
            .iter()
            .filter(|o| o.rates.kept_up())
            .max_by(|a, b| a.rates.evaluated.total_cmp(&b.rates.evaluated))
    }

    /// Judged on the sustained throughput: messages evaluated per second
    /// at the highest rate the engine kept up with.
    pub fn engine_met(&self) -> bool {
        self.sustained_best()
            .is_some_and(|o| o.rates.evaluated >= ENGINE_TARGET)
    }

    pub fn fanin_met(&self) -> bool {
        self.fanin_ratio().is_some_and(|r| r >= FANIN_TARGET)
    }

    /// Whether the run measured what it set out to (not whether the targets
    /// were met): messages flowed in every run and the engine evaluated
    /// them and republished.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.engine.published <= 0.0 {
            failures.push("engine run: the publishers sent nothing".to_owned());
        }
        if self.engine.evaluated <= 0.0 {
            failures.push(
                "engine run: the engine evaluated no message (is \
                 ferrule_rules_messages_total in /metrics?)"
                    .to_owned(),
            );
        }
        if self.engine.republished <= 0.0 {
            failures.push("engine run: no republish action succeeded".to_owned());
        }
        if self.fanin_off.delivered <= 0.0 {
            failures.push("fan-in without rules: nothing was delivered".to_owned());
        }
        if self.fanin_on.delivered <= 0.0 {
            failures.push("fan-in with rules: nothing was delivered".to_owned());
        }
        if self.fanin_on.evaluated <= 0.0 {
            failures.push("fan-in with rules: the engine evaluated no message".to_owned());
        }
        failures
    }

    /// The Markdown for docs/BENCHMARKS.md: how it ran, the targets, each
    /// run's figures, and notes.
    pub fn markdown(&self, args: &RulesArgs) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "\n### Rules engine (issue 11)\n");
        let _ = writeln!(
            t,
            "Machine: {}. Ferrule {}. Command: `{}`.\n",
            crate::machine(),
            env!("CARGO_PKG_VERSION"),
            args.command_line()
        );
        let _ = writeln!(
            t,
            "One `ferrule serve` (fresh temp data directory, rate limits off, anonymous MQTT \
             clients in tenant `default`) pinned to CPU 0 from its first instruction, the load \
             generator pinned to CPU 1. Every run: {} s measured after a {} s warm-up, repeated \
             (up to {} times) when other load took more than {:.0} % of a core, the least \
             disturbed counting. Payloads: {PAYLOAD_LEN}-byte JSON \
             `{{\"temp\":93.2,\"seq\":N,\"pad\":\"…\"}}`, N cycling 0…{}, QoS 0, written as \
             fast as TCP takes them (flooded runs) or paced, each publisher writing its share \
             of the offered rate every millisecond (sustained runs). Rule i of {n}: `SELECT temp, topic(2) AS dev FROM 'FILTER' \
             WHERE temp > 90 AND seq % {n} = i` with one action, a republish to \
             `alerts/${{dev}}` (QoS 0, nobody subscribed): each message matches {n} rules and \
             passes exactly one.\n",
            args.duration,
            WARMUP.as_secs(),
            args.attempts,
            DISTURBED * 100.0,
            super::load::SEQ_CYCLE - 1,
            n = args.rules,
        );
        let _ = writeln!(
            t,
            "- Engine: {} tenants, each with {} rules on `{ENGINE_FILTER}` and {} MQTT \
             publisher(s) logged in with an API key of the tenant, each on its own \
             `bench/pK/t`; evaluated = messages the engine took from its queues \
             (`ferrule_rules_messages_total`). Flooded once, then offered steady rates from \
             {} msgs/s (up by a fifth while the engine keeps up, else down to 95 % of what it \
             evaluated; at most {} rates): the sustained figure is what it evaluated at the \
             highest rate it kept up with (at most {} of the published messages dropped).",
            args.tenants,
            args.rules,
            args.publishers,
            thousands(args.engine_rate as f64),
            args.steps,
            percent(KEPT_UP_DROPS)
        );
        let _ = writeln!(
            t,
            "- Fan-in QoS 0 as in `ferrule bench mqtt`: {} anonymous publishers → {} subscriber \
             on `{}` in tenant `default`, first with no rule, then with {} rules on that topic; \
             same payloads.\n",
            FANIN0.publishers, FANIN0.subscribers, FANIN0.topic, args.rules
        );

        let _ = writeln!(t, "| measure | figure | target | met |");
        let _ = writeln!(t, "|---|---:|---|---|");
        let _ = writeln!(
            t,
            "| engine, sustained: messages evaluated/s ({} tenants × {} rules, ≤ {} dropped) \
             | {} | ≥ {} msgs/s | {} |",
            args.tenants,
            args.rules,
            percent(KEPT_UP_DROPS),
            self.sustained_best()
                .map_or_else(|| "–".to_owned(), |o| thousands(o.rates.evaluated)),
            thousands(ENGINE_TARGET),
            yes(self.engine_met())
        );
        let _ = writeln!(
            t,
            "| engine, flooded: messages evaluated/s while shedding the rest | {} | | |",
            thousands(self.engine.evaluated),
        );
        let _ = writeln!(
            t,
            "| fan-in QoS 0 ({} → {}), no rule: delivered msgs/s | {} | | |",
            FANIN0.publishers,
            FANIN0.subscribers,
            thousands(self.fanin_off.delivered)
        );
        let _ = writeln!(
            t,
            "| fan-in QoS 0 ({} → {}), {} rules on: delivered msgs/s | {} | | |",
            FANIN0.publishers,
            FANIN0.subscribers,
            args.rules,
            thousands(self.fanin_on.delivered)
        );
        let _ = writeln!(
            t,
            "| fan-in with rules ÷ without | {} | ≥ {} | {} |",
            self.fanin_ratio().map_or_else(|| "–".to_owned(), percent),
            percent(FANIN_TARGET),
            yes(self.fanin_met())
        );

        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "| run | published/s | delivered/s | evaluated/s | dropped (queue full)/s | rules \
             passed/s | republished/s | failed actions/s | Ferrule CPU | core 0 busy | load \
             generator CPU | core 1 busy |"
        );
        let _ = writeln!(
            t,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (name, r) in self.runs() {
            let _ = writeln!(
                t,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                thousands(r.published),
                thousands(r.delivered),
                thousands(r.evaluated),
                thousands(r.overflowed),
                thousands(r.passed),
                thousands(r.republished),
                thousands(r.actions_failed),
                percent(r.ferrule_cpu),
                percent(r.ferrule_core_busy),
                percent(r.loadgen_cpu),
                percent(r.loadgen_core_busy),
            );
        }
        let _ = writeln!(t);
        for note in self.notes() {
            let _ = writeln!(t, "- {note}");
        }
        t
    }

    fn runs(&self) -> Vec<(String, &Rates)> {
        let mut runs = vec![("engine, flooded".to_owned(), &self.engine)];
        runs.extend(
            self.sustained
                .iter()
                .map(|o| (format!("engine at {} msgs/s", thousands(o.rate)), &o.rates)),
        );
        runs.push(("fan-in, no rule".to_owned(), &self.fanin_off));
        runs.push(("fan-in, rules on".to_owned(), &self.fanin_on));
        runs
    }

    /// What a reader needs to judge the figures: load the engine shed,
    /// whether each message passed one rule, disturbed runs.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let tried: Vec<String> = self
            .sustained
            .iter()
            .map(|o| {
                format!(
                    "{} → {} evaluated, {} dropped ({})",
                    thousands(o.rate),
                    thousands(o.rates.evaluated),
                    thousands(o.rates.overflowed),
                    if o.rates.kept_up() {
                        "kept up"
                    } else {
                        "fell behind"
                    }
                )
            })
            .collect();
        notes.push(match self.sustained_best() {
            _ if tried.is_empty() => "Sustained search: not run (`--steps 0`).".to_owned(),
            Some(best) => format!(
                "Sustained search (msgs/s offered → per second): {}. The highest rate kept up \
                 with was {} msgs/s offered.",
                tried.join("; "),
                thousands(best.rate)
            ),
            None => format!(
                "Sustained search (msgs/s offered → per second): {}. **The engine kept up with \
                 none of these rates.**",
                tried.join("; ")
            ),
        });
        let e = &self.engine;
        notes.push(format!(
            "Flooded engine run: the engine evaluated {} of the {} msgs/s published ({}){}.",
            thousands(e.evaluated),
            thousands(e.published),
            share(e.evaluated, e.published),
            if e.overflowed > 0.0 {
                format!(
                    " and dropped {} msgs/s at its bounded per-tenant queues: the publishers \
                     outran it, so the figure is what it evaluates on the core it shares with \
                     the broker",
                    thousands(e.overflowed)
                )
            } else {
                ", dropping none".to_owned()
            }
        ));
        let f = &self.fanin_on;
        notes.push(if f.overflowed > 0.0 {
            format!(
                "Fan-in with rules on: the engine evaluated {} of the {} msgs/s published ({}) \
                 and dropped {} msgs/s at its bounded queue rather than slow the broker down; \
                 the rules-on figure is with the engine shedding that load.",
                thousands(f.evaluated),
                thousands(f.published),
                share(f.evaluated, f.published),
                thousands(f.overflowed)
            )
        } else {
            format!(
                "Fan-in with rules on: the engine evaluated {} of the {} msgs/s published ({}), \
                 dropping none.",
                thousands(f.evaluated),
                thousands(f.published),
                share(f.evaluated, f.published)
            )
        });
        let per_message: Vec<String> = [&self.engine, &self.fanin_on]
            .iter()
            .map(|r| {
                if r.evaluated > 0.0 {
                    format!("{:.2}", r.passed / r.evaluated)
                } else {
                    "–".to_owned()
                }
            })
            .collect();
        notes.push(format!(
            "Rules passed per evaluated message (1 by design): engine {}, fan-in {}.",
            per_message[0], per_message[1]
        ));
        for (name, r) in self.runs() {
            if r.actions_failed > 0.0 {
                notes.push(format!(
                    "**{name}: {} actions/s failed** (see the rules' last errors).",
                    thousands(r.actions_failed)
                ));
            }
            if r.disturbance() > DISTURBED {
                notes.push(format!(
                    "**Warning**: other load took {:.0} % of a core during the {name} run \
                     (every attempt was disturbed); its figures are suspect.",
                    r.disturbance() * 100.0
                ));
            }
        }
        if let Some(mib) = self.ferrule_rss_mib {
            notes.push(format!("Ferrule RSS at the end: {mib:.1} MiB."));
        }
        notes
    }
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

fn percent(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

fn share(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        percent(part / whole)
    } else {
        "–".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RulesArgs {
        RulesArgs {
            duration: 10,
            tenants: 4,
            rules: 10,
            publishers: 1,
            quiet_wait_secs: 30,
            attempts: 3,
            engine_rate: 300_000,
            steps: 4,
        }
    }

    /// A sustained step at `rate` that evaluated `evaluated` of it.
    fn offered(rate: f64, evaluated: f64) -> Offered {
        Offered {
            rate,
            rates: Rates {
                published: rate,
                evaluated,
                passed: evaluated,
                republished: evaluated,
                overflowed: rate - evaluated,
                ..Rates::default()
            },
        }
    }

    fn report(engine: f64, off: f64, on: f64, overflowed: f64) -> Report {
        let run = |delivered: f64| Rates {
            published: 1_000_000.0,
            delivered,
            evaluated: engine,
            passed: engine,
            republished: engine,
            overflowed,
            ..Rates::default()
        };
        Report {
            engine: run(0.0),
            sustained: vec![offered(engine, engine)],
            fanin_off: Rates {
                evaluated: 0.0,
                ..run(off)
            },
            fanin_on: run(on),
            ferrule_rss_mib: Some(42.0),
        }
    }

    #[test]
    fn targets_are_judged_on_the_engine_rate_and_the_fan_in_ratio() {
        let met = report(300_000.0, 1_000_000.0, 800_000.0, 0.0);
        assert!(met.engine_met());
        assert!(met.fanin_met());
        assert_eq!(met.fanin_ratio(), Some(0.8));
        let missed = report(299_999.0, 1_000_000.0, 799_999.0, 0.0);
        assert!(!missed.engine_met());
        assert!(!missed.fanin_met());
        let md = missed.markdown(&args());
        assert!(
            md.contains("| 299,999 | ≥ 300,000 msgs/s | **no** |"),
            "{md}"
        );
        assert!(
            md.contains("| engine at 299,999 msgs/s | 299,999 |"),
            "{md}"
        );
        assert!(md.contains("| fan-in with rules ÷ without | 80 % | ≥ 80 % | **no** |"));
    }

    #[test]
    fn a_run_without_engine_figures_is_a_failure_not_a_miss() {
        assert!(report(1.0, 1.0, 1.0, 0.0).failures().is_empty());
        let failures = report(0.0, 1_000.0, 900.0, 0.0).failures();
        assert!(failures.iter().any(|f| f.contains("evaluated no message")));
        assert!(failures.iter().any(|f| f.contains("no republish")));
        let no_fanin = report(1.0, 0.0, 0.0, 0.0);
        assert_eq!(no_fanin.fanin_ratio(), None);
        assert!(!no_fanin.fanin_met());
        assert_eq!(no_fanin.failures().len(), 2);
    }

    #[test]
    fn the_report_says_when_the_engine_shed_load() {
        let md = report(350_000.0, 1_500_000.0, 1_400_000.0, 650_000.0).markdown(&args());
        assert!(
            md.contains("dropped 650,000 msgs/s at its bounded queue"),
            "{md}"
        );
        assert!(md.contains("| 350,000 | ≥ 300,000 msgs/s | yes |"), "{md}");
        assert!(md.contains("`ferrule bench rules --duration 10 --tenants 4 --rules 10"));
        assert!(md.contains("Machine: "));
        let calm = report(350_000.0, 1_500_000.0, 1_400_000.0, 0.0).markdown(&args());
        assert!(calm.contains("dropping none"), "{calm}");
    }

    #[test]
    fn the_sustained_figure_is_the_highest_rate_the_engine_kept_up_with() {
        let mut r = report(0.0, 1.0, 1.0, 0.0);
        // 300k kept up, 360k kept up, 432k fell behind (evaluated 400k).
        r.sustained = vec![
            offered(300_000.0, 299_000.0),
            offered(360_000.0, 358_000.0),
            offered(432_000.0, 400_000.0),
        ];
        assert!(r.sustained[1].rates.kept_up());
        assert!(!r.sustained[2].rates.kept_up(), "7 % dropped");
        assert_eq!(r.sustained_best().map(|o| o.rate), Some(360_000.0));
        assert!(r.engine_met());
        let md = r.markdown(&args());
        assert!(md.contains("| 358,000 | ≥ 300,000 msgs/s | yes |"), "{md}");
        assert!(md.contains("432,000 → 400,000 evaluated, 32,000 dropped (fell behind)"));

        // Falling behind at every rate: no sustained figure, not met, even
        // when a flooded run evaluated more than the target.
        r.engine.evaluated = 500_000.0;
        r.sustained = vec![offered(300_000.0, 250_000.0)];
        assert_eq!(r.sustained_best().map(|o| o.rate), None);
        assert!(!r.engine_met());
        let md = r.markdown(&args());
        assert!(md.contains("kept up with none of these rates"), "{md}");
        assert!(md.contains("| – | ≥ 300,000 msgs/s | **no** |"), "{md}");
    }
}
