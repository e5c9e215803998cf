//! What the sections hand back and what is printed at the end: the table's
//! rows ([`Measure`], with their labels, targets and formats), the
//! [`Figure`]s and notes of each [`SectionReport`], and the [`Report`] of
//! all of them that renders the Markdown table and the notes.

use std::fmt::Write as _;

use super::{HTTP_READINGS, KEYS, Section, TelemetryArgs};

/// A row of the final table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measure {
    IngestMqtt,
    IngestHttp,
    DiskBytesPerPoint,
    Avg24h,
    Avg30d,
}

impl Measure {
    const ALL: [Measure; 5] = [
        Measure::IngestMqtt,
        Measure::IngestHttp,
        Measure::DiskBytesPerPoint,
        Measure::Avg24h,
        Measure::Avg30d,
    ];

    fn label(self, args: &TelemetryArgs) -> String {
        match self {
            Measure::IngestMqtt => format!(
                "durable ingest, MQTT {} QoS 1, {} devices, {KEYS} keys/message, points/s",
                args.mqtt_version.name(),
                thousands(f64::from(args.devices))
            ),
            Measure::IngestHttp => format!(
                "durable ingest, HTTP, {} points/request, {} in flight, points/s",
                HTTP_READINGS * KEYS,
                args.concurrency
            ),
            Measure::DiskBytesPerPoint => {
                "disk after sealing, bytes/point (realistic signal, 1 s, 30 days)".into()
            }
            Measure::Avg24h => "1-min averages over 24 h of one series (86,400 points), ms".into(),
            Measure::Avg30d => {
                "1-min averages over 30 days of one series (2,592,000 points), ms".into()
            }
        }
    }

    /// The target for Ferrule's figure, and whether a value meets it.
    fn target(self) -> (&'static str, fn(f64) -> bool) {
        match self {
            Measure::IngestMqtt => ("≥ 250,000", |v| v >= 250_000.0),
            Measure::IngestHttp => ("≥ 100,000", |v| v >= 100_000.0),
            Measure::DiskBytesPerPoint => ("≤ 3 B/point", |v| v <= 3.0),
            Measure::Avg24h => ("≤ 5 ms", |v| v <= 5.0),
            Measure::Avg30d => ("≤ 50 ms", |v| v <= 50.0),
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Measure::IngestMqtt | Measure::IngestHttp => thousands(value),
            // The issue asks for the ratio to the raw 16 bytes (i64 + f64).
            Measure::DiskBytesPerPoint => format!("{value:.2} (= {:.2}× raw 16 B)", value / 16.0),
            Measure::Avg24h | Measure::Avg30d => format!("{value:.2}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum System {
    Ferrule,
    /// SQLite, a row per point: the baseline.
    Sqlite,
}

/// One measured value for the final table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Figure {
    pub(super) measure: Measure,
    pub(super) system: System,
    pub(super) value: f64,
}

/// What a section hands back.
#[derive(Debug, Default)]
pub(super) struct SectionReport {
    pub(super) figures: Vec<Figure>,
    /// Lines that explain the figures: CPU use, counts, errors seen.
    pub(super) notes: Vec<String>,
    /// Checks that failed; the figures stand, but the bench exits non-zero.
    pub(super) failures: Vec<String>,
}

impl SectionReport {
    pub(super) fn figure(&mut self, measure: Measure, system: System, value: f64) {
        self.figures.push(Figure {
            measure,
            system,
            value,
        });
    }
}

/// Everything the sections reported, in the order they ran.
#[derive(Default)]
pub(super) struct Report {
    pub(super) sections: Vec<(Section, SectionReport)>,
}

impl Report {
    pub(super) fn add(&mut self, section: Section, result: anyhow::Result<SectionReport>) {
        let report = result.unwrap_or_else(|e| SectionReport {
            failures: vec![format!("{e:#}")],
            ..SectionReport::default()
        });
        for failure in &report.failures {
            eprintln!("{}: FAILED: {failure}", section.name());
        }
        self.sections.push((section, report));
    }

    /// Records an error that stopped `sections` (the server could not be
    /// started, set up or stopped): against each of them that has not
    /// reported yet, or else against the last.
    pub(super) fn fail(&mut self, sections: &[Section], error: &str) {
        let unreported: Vec<Section> = sections
            .iter()
            .copied()
            .filter(|s| !self.sections.iter().any(|(r, _)| r == s))
            .collect();
        if unreported.is_empty() {
            if let Some((section, report)) = self.sections.last_mut() {
                eprintln!("{}: FAILED: {error}", section.name());
                report.failures.push(error.to_owned());
            }
            return;
        }
        for s in unreported {
            self.add(s, Err(anyhow::anyhow!("{error}")));
        }
    }

    fn figure(&self, measure: Measure, system: System) -> Option<f64> {
        self.sections
            .iter()
            .flat_map(|(_, r)| &r.figures)
            .find(|f| f.measure == measure && f.system == system)
            .map(|f| f.value)
    }

    /// A table cell: the value, "failed" when the section that should have
    /// measured it ran and did not, or "—" when no section measured it.
    fn cell(&self, measure: Measure, system: System) -> String {
        if let Some(v) = self.figure(measure, system) {
            return measure.format(v);
        }
        let ran = self
            .sections
            .iter()
            .any(|(s, _)| s.measures().contains(&(measure, system)));
        if ran { "failed".into() } else { "—".into() }
    }

    pub(super) fn failures(&self) -> usize {
        self.sections.iter().map(|(_, r)| r.failures.len()).sum()
    }

    pub(super) fn table(&self, args: &TelemetryArgs) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| measure | ferrule | sqlite row-per-point | ratio | target |"
        );
        let _ = writeln!(t, "| --- | ---: | ---: | ---: | --- |");
        for measure in Measure::ALL {
            let ferrule = self.figure(measure, System::Ferrule);
            let sqlite = self.figure(measure, System::Sqlite);
            let ratio = match (ferrule, sqlite) {
                (Some(f), Some(s)) if s > 0.0 => format!("{:.2}×", f / s),
                _ => String::new(),
            };
            let (target, met) = measure.target();
            let target = match ferrule {
                Some(v) if met(v) => format!("{target} (met)"),
                Some(_) => format!("{target} (**not met**)"),
                None => target.to_owned(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {ratio} | {target} |",
                measure.label(args),
                self.cell(measure, System::Ferrule),
                self.cell(measure, System::Sqlite),
            );
        }
        t
    }

    pub(super) fn notes(&self) -> String {
        let mut t = String::new();
        for (section, report) in &self.sections {
            for note in &report.notes {
                let _ = writeln!(t, "- {}: {note}", section.name());
            }
            for failure in &report.failures {
                let _ = writeln!(t, "- {}: **FAILED**: {failure}", section.name());
            }
        }
        t
    }
}

pub(super) use crate::thousands;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
    }
}
