//! One run's reports, from whatever inputs they came, into the analysis: each report counted
//! once (same reporter and report id), `--since` applied, e-mail messages without a report
//! counted, and every problem kept with the name of the input it came from. Reports are added
//! to the running totals as they are read and then dropped, so memory does not grow with the
//! number of reports.

use super::analyze::Analysis;
use super::input::Loaded;
use super::model::{report_day, DomainSummary, FileError, RelayIdentity, RunSummary};
use std::collections::HashMap;

/// Takes reports as the inputs are read.
pub struct Collector<'r> {
    analysis: Analysis<'r>,
    since: Option<i64>,
    /// (reporter, report id) → where it was first read.
    seen: HashMap<(String, String), String>,
    summary: RunSummary,
    errors: Vec<FileError>,
    duplicates: Vec<String>,
}

/// What a run found.
pub struct Collected {
    pub domains: Vec<DomainSummary>,
    pub summary: RunSummary,
    /// Inputs (or records in them) that could not be read.
    pub errors: Vec<FileError>,
    /// Reports seen twice, left out of the counts: one line each.
    pub duplicates: Vec<String>,
}

impl<'r> Collector<'r> {
    /// `since`: the first day (days since 1970-01-01) whose reports count.
    pub fn new(relay: &'r RelayIdentity, since: Option<i64>) -> Collector<'r> {
        Collector {
            analysis: Analysis::new(relay),
            since,
            seen: HashMap::new(),
            summary: RunSummary {
                since: since.map(crate::smtp::date::day_name),
                ..RunSummary::default()
            },
            errors: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    /// A report read from `loaded.label`, or why it could not be.
    pub fn report(&mut self, loaded: Loaded) {
        let Loaded { label, report } = loaded;
        let report = match report {
            Ok(r) => r,
            Err(e) => return self.error(label, e.to_string()),
        };
        if let (Some(since), Some(day)) = (self.since, report_day(&report)) {
            if day < since {
                self.summary.before_since += 1;
                return;
            }
        }
        for problem in &report.problems {
            self.error(label.clone(), format!("{problem} (record left out)"));
        }
        if !report.report_id.is_empty() {
            let key = (report.org_name.clone(), report.report_id.clone());
            if let Some(first) = self.seen.get(&key) {
                self.duplicates.push(format!(
                    "{label}: report {} from {} already read from {first}; counted once",
                    report.report_id, report.org_name
                ));
                self.summary.duplicates += 1;
                return;
            }
            self.seen.insert(key, label);
        }
        self.summary.reports_read += 1;
        self.analysis.add(&report);
    }

    /// One e-mail message: its reports, or `None` when it holds none (skipped, counted).
    pub fn message(&mut self, reports: Option<Vec<Loaded>>) {
        self.summary.messages_read += 1;
        match reports {
            Some(list) => list.into_iter().for_each(|l| self.report(l)),
            None => self.summary.messages_without_report += 1,
        }
    }

    /// An input that could not be read; the run goes on.
    pub fn error(&mut self, file: String, error: String) {
        self.errors.push(FileError { file, error });
    }

    pub fn finish(self) -> Collected {
        Collected {
            domains: self.analysis.finish(),
            summary: self.summary,
            errors: self.errors,
            duplicates: self.duplicates,
        }
    }
}
