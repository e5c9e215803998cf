//! The rules engine's counters, read from Ferrule's `/metrics` (Prometheus
//! text), summed over every tenant and rule.

/// Messages the engine took from its queues and evaluated.
const EVALUATED: &str = "ferrule_rules_messages_total";
/// Messages dropped because a tenant's rule queue was full.
const OVERFLOWED: &str = "ferrule_rules_overflow_total";
/// Messages that passed a rule's `WHERE`, one per rule passed.
const PASSED: &str = "ferrule_rule_passed_total";
/// Actions run, by `outcome`; `ok` is the one success.
const ACTIONS: &str = "ferrule_rule_actions_total";

/// The engine's counters at one moment. A counter that does not appear
/// (nothing counted yet: the exporter leaves it out) is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct EngineCounters {
    pub(super) evaluated: f64,
    pub(super) overflowed: f64,
    pub(super) passed: f64,
    pub(super) actions_ok: f64,
    pub(super) actions_failed: f64,
}

impl EngineCounters {
    /// Sums each counter's samples in a Prometheus text exposition. Lines
    /// it does not understand are skipped: other metrics are none of its
    /// business.
    pub(super) fn parse(text: &str) -> Self {
        let mut c = EngineCounters::default();
        for sample in text.lines().filter_map(Sample::parse) {
            let slot = match sample.name {
                EVALUATED => &mut c.evaluated,
                OVERFLOWED => &mut c.overflowed,
                PASSED => &mut c.passed,
                ACTIONS if sample.label("outcome") == Some("ok") => &mut c.actions_ok,
                ACTIONS => &mut c.actions_failed,
                _ => continue,
            };
            *slot += sample.value;
        }
        c
    }

    /// How much each counter grew from `self` to `later`.
    pub(super) fn until(&self, later: &EngineCounters) -> EngineCounters {
        // A counter never goes down; a restart would, and must not show as
        // a negative rate.
        let grew = |a: f64, b: f64| (b - a).max(0.0);
        EngineCounters {
            evaluated: grew(self.evaluated, later.evaluated),
            overflowed: grew(self.overflowed, later.overflowed),
            passed: grew(self.passed, later.passed),
            actions_ok: grew(self.actions_ok, later.actions_ok),
            actions_failed: grew(self.actions_failed, later.actions_failed),
        }
    }
}

/// One sample line: `name{a="x",b="y"} value [timestamp]`.
struct Sample<'a> {
    name: &'a str,
    labels: &'a str,
    value: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').filter(|&c| c > open)?;
                (&line[..open], &line[open + 1..close], &line[close + 1..])
            }
            None => {
                let (name, rest) = line.split_once(char::is_whitespace)?;
                (name, "", rest)
            }
        };
        let value = rest.split_whitespace().next()?.parse().ok()?;
        Some(Sample {
            name: name.trim(),
            labels,
            value,
        })
    }

    /// The raw value of label `name` (escapes left as they are), if the
    /// sample has it.
    fn label(&self, name: &str) -> Option<&'a str> {
        let mut rest = self.labels;
        loop {
            let (key, after) = rest.split_once('=')?;
            let after = after.strip_prefix('"')?;
            // The value ends at the first quote that no backslash escapes.
            let mut escaped = false;
            let end = after.char_indices().find_map(|(i, ch)| match ch {
                _ if escaped => {
                    escaped = false;
                    None
                }
                '\\' => {
                    escaped = true;
                    None
                }
                '"' => Some(i),
                _ => None,
            })?;
            if key.trim().trim_start_matches(',').trim() == name {
                return Some(&after[..end]);
            }
            rest = &after[end + 1..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# TYPE ferrule_rules_messages_total counter
ferrule_rules_messages_total{tenant="default"} 1200
ferrule_rules_messages_total{tenant="bench-rules-0"} 300.5
# TYPE ferrule_rules_overflow_total counter
ferrule_rules_overflow_total{tenant="default"} 7
ferrule_rule_passed_total{tenant="default",rule="bench-0"} 40
ferrule_rule_passed_total{tenant="default",rule="bench-1"} 60
ferrule_rule_actions_total{tenant="default",rule="bench-0",outcome="ok"} 39
ferrule_rule_actions_total{rule="bench-1",outcome="ok",tenant="default"} 60
ferrule_rule_actions_total{tenant="default",rule="bench-0",outcome="failed"} 1
ferrule_rule_actions_total{tenant="default",rule="x,outcome=\"ok\"",outcome="error"} 2
ferrule_mqtt_messages_in_total 99999
ferrule_rules_messages_total_other{tenant="default"} 5
garbage line
ferrule_rules_overflow_total{tenant="default"} not-a-number
"#;

    #[test]
    fn counters_are_summed_over_tenants_and_rules() {
        let c = EngineCounters::parse(EXPOSITION);
        assert_eq!(c.evaluated, 1500.5);
        assert_eq!(c.overflowed, 7.0);
        assert_eq!(c.passed, 100.0);
        assert_eq!(c.actions_ok, 99.0);
        assert_eq!(c.actions_failed, 3.0);
    }

    #[test]
    fn labels_end_at_their_closing_quote() {
        let line = r#"ferrule_rule_actions_total{rule="x,outcome=\"ok\"",outcome="error"} 2"#;
        let sample = Sample::parse(line).unwrap();
        assert_eq!(sample.name, ACTIONS);
        assert_eq!(sample.label("outcome"), Some("error"));
        assert_eq!(sample.label("rule"), Some(r#"x,outcome=\"ok\""#));
        assert_eq!(sample.label("tenant"), None);
        assert_eq!(sample.value, 2.0);
    }

    #[test]
    fn missing_counters_are_zero() {
        assert_eq!(
            EngineCounters::parse("ferrule_up 1\n"),
            EngineCounters::default()
        );
    }

    #[test]
    fn growth_is_never_negative() {
        let before = EngineCounters {
            evaluated: 10.0,
            overflowed: 5.0,
            ..Default::default()
        };
        let after = EngineCounters {
            evaluated: 25.0,
            overflowed: 0.0,
            ..Default::default()
        };
        let grew = before.until(&after);
        assert_eq!(grew.evaluated, 15.0);
        assert_eq!(grew.overflowed, 0.0);
    }
}
