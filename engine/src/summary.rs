//! The run summary: what `run --format json` and `plan --format json` print,
//! and the table a person sees.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::events::human_ms;
use crate::stage::Metrics;

/// A stage's final status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Executed in this run.
    Ran,
    /// Reused from the run cache.
    Cached,
    /// Executed and failed.
    Failed,
    /// Not executed because something upstream failed.
    Skipped,
    /// `plan` only: would execute.
    WouldRun,
}

impl Status {
    /// The JSON spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ran => "ran",
            Status::Cached => "cached",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::WouldRun => "would-run",
        }
    }
}

/// One output in the summary.
#[derive(Clone, Debug, Serialize)]
pub struct OutputSummary {
    /// Content hash.
    pub hash: String,
    /// Lines, for files.
    pub rows: Option<u64>,
}

/// One stage in the summary.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    /// Stage name.
    pub name: String,
    /// Stage kind.
    pub kind: String,
    /// What happened.
    pub status: Status,
    /// The run's fingerprint (unknown for a stage whose upstream would run).
    pub fingerprint: Option<String>,
    /// Execution time in this run.
    pub duration_ms: u64,
    /// Outputs by name.
    pub outputs: BTreeMap<String, OutputSummary>,
    /// Metrics the stage reported.
    pub metrics: Metrics,
    /// Why it ran, would run, or was skipped ("up to date" when cached).
    pub reason: String,
    /// The error, for failed stages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The stage failed on bad input data (exit 2 when all failures are).
    #[serde(skip)]
    pub bad_input: bool,
}

impl StageSummary {
    /// An empty summary for a stage (status filled in by the caller).
    pub fn new(name: &str, kind: &str) -> Self {
        StageSummary {
            name: name.into(),
            kind: kind.into(),
            status: Status::Skipped,
            fingerprint: None,
            duration_ms: 0,
            outputs: BTreeMap::new(),
            metrics: Metrics::new(),
            reason: String::new(),
            error: None,
            bad_input: false,
        }
    }
}

/// The whole summary.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Stages in execution order.
    pub stages: Vec<StageSummary>,
}

impl RunSummary {
    /// A table for people: one line per stage, then a count line.
    pub fn to_table(&self) -> String {
        let w = self.stages.iter().map(|s| s.name.len()).max().unwrap_or(5).max(5);
        let mut out = String::new();
        for s in &self.stages {
            let time = if s.duration_ms > 0 { human_ms(s.duration_ms) } else { String::new() };
            let rows: Vec<String> =
                s.outputs.iter().map(|(k, o)| o.rows.map_or(k.clone(), |r| format!("{k}={r}"))).collect();
            let metrics: Vec<String> = s
                .metrics
                .iter()
                .filter(|(k, v)| k.as_str() != "rows" && (v.is_number() || v.is_boolean()))
                .take(4)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let results = [rows.join(" "), metrics.join(" ")].join("  ");
            let detail = match s.status {
                Status::Cached if s.reason != "up to date" => format!("{}  ({})", results.trim(), s.reason),
                Status::Cached => results,
                Status::Ran => format!("{}  ({})", results.trim(), s.reason),
                Status::Failed => s.error.clone().unwrap_or_default(),
                _ => s.reason.clone(),
            };
            out += &format!("{:<w$}  {:<9}  {:>7}  {}\n", s.name, s.status.as_str(), time, detail.trim());
        }
        let count = |st: Status| self.stages.iter().filter(|s| s.status == st).count();
        let mut parts = Vec::new();
        for st in [Status::Ran, Status::Cached, Status::WouldRun, Status::Failed, Status::Skipped] {
            let c = count(st);
            if c > 0 {
                parts.push(format!("{c} {}", st.as_str()));
            }
        }
        out += &format!("{}: {}\n", self.pipeline, parts.join(", "));
        out
    }
}
