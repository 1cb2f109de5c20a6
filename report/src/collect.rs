//! What the report shows, read from the plan, the lock and the store.
//!
//! A stage's numbers come from the run the plan would reuse (its state is
//! then `cached`). A stage that would run again (the pipeline changed since)
//! shows the run `retort.lock` recorded for it, marked stale, when that run is
//! still in the cache; a stage that never ran shows only its state.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};

use retort_cache::{ArtifactKind, LockEntry, ObjectState, RunRecord, Store};
use retort_engine::{read_step_log, Artifact, Decision, Graph, Pipeline, Plan, Resolved, StepRow};

use crate::ReportError;

/// How many rows of each dataset the report shows.
pub const HEAD_ROWS: usize = 5;
/// How many lines of a text output (a Markdown table) the report shows.
const HEAD_LINES: usize = 40;

/// A stage's state, as the plan sees it now.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Up to date: its run is in the cache.
    Cached,
    /// It would run again (the reason); what is shown is the locked run.
    Stale(String),
    /// It has not run (the reason).
    NotRun(String),
    /// An input cannot be read.
    Failed(String),
    /// Something upstream cannot run.
    Skipped(String),
}

impl State {
    /// One word for the graph and the tables.
    pub fn word(&self) -> &'static str {
        match self {
            State::Cached => "cached",
            State::Stale(_) => "stale",
            State::NotRun(_) => "not run",
            State::Failed(_) => "failed",
            State::Skipped(_) => "skipped",
        }
    }

    /// Why, when it is not up to date.
    pub fn reason(&self) -> Option<&str> {
        match self {
            State::Cached => None,
            State::Stale(r) | State::NotRun(r) | State::Failed(r) | State::Skipped(r) => Some(r),
        }
    }
}

/// The first rows of one dataset output.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// The output's name.
    pub output: String,
    /// Rows in all, when the run recorded it.
    pub rows: Option<u64>,
    /// The first [`HEAD_ROWS`] rows.
    pub head: Vec<StepRow>,
}

/// One stage, as the report shows it.
#[derive(Clone, Debug)]
pub struct StageInfo {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its state now.
    pub state: State,
    /// The fingerprint it has now (unknown while an upstream stage would run).
    pub fingerprint: Option<String>,
    /// Its `retort.lock` entry's fingerprint and seed.
    pub locked: Option<(String, Option<u64>)>,
    /// How long the shown run took.
    pub duration_ms: Option<u64>,
    /// The shown run's headline metrics.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// Its per-step log (training stages).
    pub steps: Option<Vec<StepRow>>,
    /// The first rows of its dataset outputs.
    pub datasets: Vec<Dataset>,
    /// The first lines of its text outputs (name, text).
    pub texts: Vec<(String, String)>,
    /// Its model outputs (name, bytes).
    pub models: Vec<(String, u64)>,
    /// What could not be read (a missing object), for the reader.
    pub notes: Vec<String>,
}

impl StageInfo {
    /// A stage with nothing to show yet.
    pub fn new(name: &str, kind: &str, state: State) -> Self {
        StageInfo {
            name: name.into(),
            kind: kind.into(),
            state,
            fingerprint: None,
            locked: None,
            duration_ms: None,
            metrics: BTreeMap::new(),
            steps: None,
            datasets: Vec::new(),
            texts: Vec::new(),
            models: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Everything the page shows.
#[derive(Clone, Debug, Default)]
pub struct ReportData {
    /// The pipeline's name.
    pub pipeline: String,
    /// Its file, as named.
    pub file: String,
    /// The stages, dependencies first.
    pub stages: Vec<StageInfo>,
    /// Edges between stages: (from, to, what is read), as indices into `stages`.
    pub edges: Vec<(usize, usize, String)>,
}

/// Reads what the report shows. `plan` is the plan of the whole pipeline;
/// `lock` is its section of `retort.lock`.
pub fn collect(
    p: &Pipeline,
    g: &Graph,
    plan: &Plan,
    lock: &BTreeMap<String, LockEntry>,
    store: &Store,
) -> Result<ReportData, ReportError> {
    let mut data = ReportData { pipeline: p.name.clone(), file: p.file.display().to_string(), ..Default::default() };
    let mut position = vec![None; p.stages.len()];
    for step in &plan.steps {
        let node = &p.stages[step.stage];
        let entry = lock.get(&node.name);
        let locked_run = || -> Result<Option<RunRecord>, ReportError> {
            match entry {
                Some(e) => Ok(store.get_run(&e.fingerprint)?),
                None => Ok(None),
            }
        };
        let (state, fingerprint, record) = match &step.decision {
            Decision::Cached { fingerprint, record, .. } => (State::Cached, Some(fingerprint.to_string()), Some(record.clone())),
            Decision::Run { fingerprint, reason, .. } => {
                let run = locked_run()?;
                let state = if run.is_some() { State::Stale(reason.clone()) } else { State::NotRun(reason.clone()) };
                (state, Some(fingerprint.to_string()), run)
            }
            Decision::Waits { upstream } => {
                let run = locked_run()?;
                let reason = format!("upstream `{upstream}` would run");
                let state = if run.is_some() { State::Stale(reason) } else { State::NotRun(reason) };
                (state, None, run)
            }
            Decision::Unreadable { error } => (State::Failed(error.clone()), None, None),
            Decision::Skipped { reason } => (State::Skipped(reason.clone()), None, None),
        };
        let mut info = StageInfo::new(&node.name, node.kind, state);
        info.fingerprint = fingerprint;
        info.locked = entry.map(|e| (e.fingerprint.to_string(), e.seed));
        if let Some(rec) = record {
            read_run(node.stage.as_ref(), &rec, store, &mut info);
        }
        position[step.stage] = Some(data.stages.len());
        data.stages.push(info);
    }
    for &to in &g.order {
        for input in &g.inputs[to] {
            if let (Resolved::Output { stage, output }, Some(t)) = (&input.source, position[to]) {
                if let Some(f) = position[*stage] {
                    data.edges.push((f, t, output.clone()));
                }
            }
        }
    }
    Ok(data)
}

/// Fills `info` from a run record: duration, metrics, step log, dataset heads.
fn read_run(stage: &dyn retort_engine::Stage, rec: &RunRecord, store: &Store, info: &mut StageInfo) {
    info.duration_ms = Some(rec.duration_ms);
    info.metrics = rec.metrics.clone();
    let log = stage.step_log();
    for (name, out) in &rec.outputs {
        if store.state(&out.hash) != ObjectState::Valid {
            info.notes.push(format!("output `{name}` is missing from the cache or corrupt; `retort run` recomputes it"));
            continue;
        }
        let path = store.object_path(&out.hash);
        if out.kind == ArtifactKind::Dir {
            info.models.push((name.clone(), out.bytes));
            continue;
        }
        if Some(name.as_str()) == log {
            match read_step_log(&path) {
                Ok(steps) => info.steps = Some(steps),
                Err(e) => info.notes.push(format!("per-step log `{name}`: {e}")),
            }
            continue;
        }
        let result = match stage.output_type(name) {
            Artifact::Text => head_text(&path).map(|t| info.texts.push((name.clone(), t))),
            _ => match head_rows(&path) {
                Ok(Some(head)) => {
                    info.datasets.push(Dataset { output: name.clone(), rows: out.rows, head });
                    Ok(())
                }
                // Not JSON Lines (a `command` stage's file): show it as text.
                Ok(None) => head_text(&path).map(|t| info.texts.push((name.clone(), t))),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            info.notes.push(format!("output `{name}`: cannot read {}: {e}", path.display()));
        }
    }
    // Per-step timings (GRPO's sampling/update split) live in the run
    // record, not the step log; they join the steps as more columns.
    if let Some(steps) = info.steps.as_mut() {
        for (phase, secs) in &rec.timings {
            if secs.len() == steps.len() {
                for (step, s) in steps.iter_mut().zip(secs) {
                    step.insert(phase.clone(), serde_json::json!(s));
                }
            }
        }
    }
}

/// The first rows of a JSON Lines file, or `None` when a line is not a JSON object.
fn head_rows(path: &std::path::Path) -> std::io::Result<Option<Vec<StepRow>>> {
    let mut rows = Vec::new();
    for line in BufReader::new(std::fs::File::open(path)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(row)) => rows.push(row),
            _ => return Ok(None),
        }
        if rows.len() == HEAD_ROWS {
            break;
        }
    }
    Ok(Some(rows))
}

/// The first lines of a text file (invalid UTF-8 replaced).
fn head_text(path: &std::path::Path) -> std::io::Result<String> {
    let mut out = String::new();
    for (i, line) in BufReader::new(std::fs::File::open(path)?).split(b'\n').enumerate() {
        if i == HEAD_LINES {
            out += "…\n";
            break;
        }
        out += &String::from_utf8_lossy(&line?);
        out += "\n";
    }
    Ok(out)
}
