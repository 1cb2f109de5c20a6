//! What a running stage sees: its inputs, where to put its outputs, its seed,
//! and a way to report progress. Stages never touch the store's paths.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use retort_cache::{ArtifactKind, Hash, Store};

use crate::events::{Event, Reporter};
use crate::stage::Metrics;

/// A JSON Lines row.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// One resolved input of a running stage.
#[derive(Clone, Debug)]
pub struct InputArtifact {
    /// Content hash (for a model given by spec only: hash of the spec).
    pub hash: Hash,
    /// File or directory.
    pub kind: ArtifactKind,
    /// Where the bytes are; `None` for a model defined only by its spec
    /// (e.g. `tiny: {...}`, built from scratch).
    pub path: Option<PathBuf>,
    /// For inputs that name a `models:` entry: that entry.
    pub model_spec: Option<crate::spec::ModelSpec>,
    /// For an output of another stage: that stage, so that a problem with
    /// the data can be traced to where it came from.
    pub producer: Option<Producer>,
}

/// The stage that wrote an input, and what it reported when it did.
#[derive(Clone, Debug)]
pub struct Producer {
    /// Its name in the pipeline.
    pub stage: String,
    /// Its kind.
    pub kind: String,
    /// The metrics of its run (from the run record: also for a cached run).
    pub metrics: Metrics,
}

/// The running stage's view of the world.
pub struct StageCtx<'a> {
    /// The stage's name in the pipeline (for messages only; never hashed).
    pub stage: &'a str,
    /// The effective seed: the stage's `seed:` or the pipeline's.
    pub seed: u64,
    /// Where models run, from the pipeline's `device:`.
    pub device: crate::spec::Device,
    /// Directory of the pipeline file; relative paths are resolved from it.
    pub pipeline_dir: &'a Path,
    /// The store, for stages that keep a per-item cache.
    pub store: &'a Store,
    pub(crate) inputs: BTreeMap<String, InputArtifact>,
    pub(crate) out_dir: &'a Path,
    pub(crate) reporter: &'a dyn Reporter,
    /// What [`note_backend`](Self::note_backend) recorded.
    pub(crate) backend: std::sync::Mutex<Option<String>>,
    pub(crate) timings: BTreeMap<String, Vec<f64>>,
}

impl<'a> StageCtx<'a> {
    /// The resolved input called `name`.
    pub fn input(&self, name: &str) -> anyhow::Result<&InputArtifact> {
        self.inputs.get(name).ok_or_else(|| anyhow!("stage has no input named `{name}`"))
    }

    /// Path of the input called `name`.
    pub fn input_path(&self, name: &str) -> anyhow::Result<&Path> {
        self.input(name)?.path.as_deref().ok_or_else(|| anyhow!("input `{name}` has no file"))
    }

    /// All inputs, by name.
    pub fn inputs(&self) -> &BTreeMap<String, InputArtifact> {
        &self.inputs
    }

    /// Reads a JSON Lines input into rows.
    pub fn read_rows(&self, name: &str) -> anyhow::Result<Vec<Row>> {
        read_jsonl(self.input_path(name)?)
    }

    /// Reads a JSON Lines input that must hold at least one row; `what` is
    /// what the rows are to this stage ("SFT examples", "prompts").
    ///
    /// Zero rows rarely start where they are noticed: a filter upstream kept
    /// nothing. So the error names the stage that wrote the empty output and
    /// the metrics it reported (its counts usually say why), instead of only
    /// saying that this stage got nothing.
    pub fn read_rows_nonempty(&self, name: &str, what: &str) -> anyhow::Result<Vec<Row>> {
        let rows = self.read_rows(name)?;
        if rows.is_empty() {
            bail!("no {what}: {}", empty_input(name, self.input(name)?));
        }
        Ok(rows)
    }

    /// Where to write the output called `name` (a file, or a directory for a
    /// model). The engine moves it into the store when `run` returns Ok.
    pub fn output_path(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }

    /// Writes rows as JSON Lines to the output called `name`.
    pub fn write_rows(&self, name: &str, rows: &[Row]) -> anyhow::Result<()> {
        write_jsonl(&self.output_path(name), rows)
    }

    /// Reports progress: `done` of `total` `unit`s.
    pub fn progress(&self, done: u64, total: Option<u64>, unit: &str) {
        self.reporter.event(&Event::Progress { stage: self.stage.to_string(), done, total, unit: unit.to_string(), postfix: None });
    }

    /// Reports progress with a postfix shown after the bar (`loss=1.234`),
    /// as tqdm and TRL show a trainer's latest numbers.
    pub fn progress_with(&self, done: u64, total: Option<u64>, unit: &str, postfix: String) {
        self.reporter.event(&Event::Progress {
            stage: self.stage.to_string(),
            done,
            total,
            unit: unit.to_string(),
            postfix: Some(postfix),
        });
    }

    /// Records the backend this stage runs its model on (`cpu (burn
    /// flex)`, `wgpu (llvmpipe ..., Vulkan, cpu adapter)`): the run record,
    /// the lock and `retort show` keep it as the outputs' provenance, since
    /// the device is not part of the fingerprint. Stages that load weights
    /// call it (through `stages::common::model`); the last call wins.
    pub fn note_backend(&self, backend: impl Into<String>) {
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend.into());
    }

    /// Records wall-clock seconds per step for one phase (`sample_secs`):
    /// they go to the run record, not to an output, so the outputs stay the
    /// same bytes on every run; `retort report` plots them.
    pub fn timings(&mut self, phase: &str, secs: Vec<f64>) {
        self.timings.insert(phase.to_string(), secs);
    }

    /// A line of log output, shown above the progress bars.
    pub fn log(&self, message: impl Into<String>) {
        self.reporter.event(&Event::Log { stage: self.stage.to_string(), message: message.into() });
    }
}

/// Why input `name` is empty, and where to look next.
fn empty_input(name: &str, input: &InputArtifact) -> String {
    let Some(p) = &input.producer else {
        let file = input.path.as_deref().map_or_else(|| "it".to_string(), |p| p.display().to_string());
        return format!("input `{name}` is empty: {file} has no rows");
    };
    const SHOWN: usize = 8;
    let mut shown: Vec<String> = p
        .metrics
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some(format!("{k}={s}")),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(format!("{k}={v}")),
            _ => None,
        })
        .collect();
    if shown.len() > SHOWN {
        shown.truncate(SHOWN);
        shown.push("...".into());
    }
    let reported = if shown.is_empty() { "it reported no metrics".to_string() } else { format!("it reported {}", shown.join(", ")) };
    format!(
        "input `{name}` is empty: stage `{}` ({}) wrote 0 rows; {reported} — check that stage's inputs",
        p.stage, p.kind
    )
}

/// Reads a JSON Lines file; blank lines are skipped, every other line must be
/// a JSON object. Errors name the file and line.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Row>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(row)) => rows.push(row),
            Ok(_) => bail!("{}:{}: expected a JSON object per line", path.display(), i + 1),
            Err(e) => bail!("{}:{}: invalid JSON: {e}", path.display(), i + 1),
        }
    }
    Ok(rows)
}

/// Writes rows as JSON Lines (one compact object per line, in key order as
/// given, so equal rows give equal bytes).
pub fn write_jsonl(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(file);
    for row in rows {
        serde_json::to_writer(&mut w, row)?;
        w.write_all(b"\n")?;
    }
    w.flush().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
