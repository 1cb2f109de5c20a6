//! Planning and running a pipeline.
//!
//! One loop serves `run` and `plan`: stages are visited in topological order;
//! a stage whose fingerprint has a valid run-cache entry is `cached`, anything
//! else runs (or, for `plan`, `would-run`) with a reason. Independent stages
//! run in parallel on up to `jobs` threads. A failed stage lets independent
//! branches finish and marks its dependents `skipped`.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use retort_cache::{fingerprint, ArtifactKind, Hash, LockEntry, OutputRecord, RunRecord, StatCache, Store};

use crate::context::{InputArtifact, Producer, StageCtx};
use crate::error::{did_you_mean, SpecError};
use crate::events::{Event, Reporter};
use crate::exports::{self, Restore};
use crate::fingerprint::{Hashable, CACHE_KEY_VERSION};
use crate::graph::{Graph, Resolved};
use crate::spec::{Pipeline, StageNode};
use crate::summary::{OutputSummary, StageSummary, Status};

/// What to run and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Parallel stages at most (at least 1).
    pub jobs: usize,
    /// Run these stages (and what they need that is not cached).
    pub only: Vec<String>,
    /// Run these stages and everything downstream of them.
    pub from: Vec<String>,
    /// Re-execute these stages even when cached.
    pub force: Vec<String>,
    /// Plan only: nothing is executed or written.
    pub dry_run: bool,
}

/// The outcome of a run or plan: one summary per considered stage, in
/// execution order, and the stages' lock entries.
pub struct Outcome {
    /// Per stage, in topological order.
    pub stages: Vec<StageSummary>,
    /// Lock entries of the stages that are done (ran or cached), by name.
    pub entries: BTreeMap<String, LockEntry>,
    /// Per cached stage whose exported files drifted: what was restored
    /// (or, for a plan, would be).
    pub restores: BTreeMap<String, Vec<Restore>>,
}

impl Outcome {
    /// Whether any stage failed.
    pub fn failed(&self) -> bool {
        self.stages.iter().any(|s| s.status == Status::Failed)
    }
}

/// What is known about a stage once its inputs are settled.
struct Known {
    fp: Hash,
    inputs: BTreeMap<String, Hash>,
    reason: String,
}

enum State {
    Pending,
    /// Decided to run; waiting for a free job slot.
    Ready { known: Known, inputs: BTreeMap<String, InputArtifact> },
    Running { known: Known },
    Done { known: Known, record: RunRecord, ran: bool, duration_ms: u64, restores: Vec<Restore> },
    WouldRun { fp: Option<Hash>, reason: String },
    Failed { fp: Option<Hash>, reason: String, error: String, duration_ms: u64 },
    Skipped { reason: String },
}

/// What a worker thread sends back.
struct Finished {
    index: usize,
    result: Result<RunRecord, String>,
    duration_ms: u64,
}

/// Everything the loop needs, borrowed for one run.
pub struct Executor<'a> {
    /// The pipeline.
    pub pipeline: &'a Pipeline,
    /// Its DAG.
    pub graph: &'a Graph,
    /// The store.
    pub store: &'a Store,
    /// The previous lock entries of this pipeline, for reasons.
    pub previous: &'a BTreeMap<String, LockEntry>,
    /// Where events go.
    pub reporter: &'a dyn Reporter,
}

impl Executor<'_> {
    /// Plans or runs, as `opts` says.
    pub fn execute(&self, opts: &Options) -> Result<Outcome, SpecError> {
        let p = self.pipeline;
        let included = self.selection(opts)?;
        let forced: BTreeSet<usize> = self.indices(&opts.force, "--force")?.into_iter().collect();
        let mut stat = StatCache::load(&self.store.root().join("stat-cache.json"));
        let mut state: Vec<State> = p.stages.iter().map(|_| State::Pending).collect();
        let jobs = opts.jobs.max(1);

        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<Finished>();
            let mut running = 0usize;
            loop {
                // Settle every stage whose upstream is settled, and start as
                // many ready ones as there are free slots, until nothing moves.
                let mut progressed = true;
                while progressed {
                    progressed = false;
                    for &i in &self.graph.order {
                        if !included.contains(&i) {
                            continue;
                        }
                        if matches!(state[i], State::Pending) && self.upstream_settled(i, &state) {
                            state[i] = self.decide(i, &state, &forced, &mut stat, opts.dry_run);
                            self.report_final(i, &state[i]);
                            progressed = true;
                        }
                        if running < jobs && matches!(state[i], State::Ready { .. }) {
                            let State::Ready { known, inputs } = std::mem::replace(&mut state[i], State::Pending) else {
                                unreachable!("matched above")
                            };
                            let node = &p.stages[i];
                            self.reporter.event(&Event::Started { stage: node.name.clone(), reason: known.reason.clone() });
                            let job = Job {
                                node,
                                inputs,
                                fp: known.fp,
                                seed: self.seed(i),
                                device: p.device.as_str(),
                                dir: &p.dir,
                                store: self.store,
                                reporter: self.reporter,
                            };
                            state[i] = State::Running { known };
                            running += 1;
                            progressed = true;
                            let tx = tx.clone();
                            scope.spawn(move || {
                                let start = Instant::now();
                                let result = job.run();
                                let duration_ms = start.elapsed().as_millis() as u64;
                                let _ = tx.send(Finished { index: i, result, duration_ms });
                            });
                        }
                    }
                }
                if running == 0 {
                    break;
                }
                let done = rx.recv().expect("a worker is running");
                running -= 1;
                let State::Running { known } = std::mem::replace(&mut state[done.index], State::Pending) else {
                    unreachable!("only running stages report back")
                };
                state[done.index] = match done.result {
                    Ok(record) => {
                        State::Done { known, record, ran: true, duration_ms: done.duration_ms, restores: Vec::new() }
                    }
                    Err(error) => State::Failed { fp: Some(known.fp), reason: known.reason, error, duration_ms: done.duration_ms },
                };
                self.report_final(done.index, &state[done.index]);
            }
        });
        if !opts.dry_run {
            // Losing the stat cache only costs a re-hash next time.
            let _ = stat.save();
        }
        Ok(self.outcome(state))
    }

    fn upstream_settled(&self, i: usize, state: &[State]) -> bool {
        self.graph.upstream[i]
            .iter()
            .all(|&u| !matches!(state[u], State::Pending | State::Ready { .. } | State::Running { .. }))
    }

    /// The stages to consider: all, or the `--only`/`--from` targets with
    /// what they depend on (dependencies that are cached are just reused).
    fn selection(&self, opts: &Options) -> Result<BTreeSet<usize>, SpecError> {
        if opts.only.is_empty() && opts.from.is_empty() {
            return Ok((0..self.pipeline.stages.len()).collect());
        }
        let mut targets: Vec<usize> = self.indices(&opts.only, "--only")?;
        let from = self.indices(&opts.from, "--from")?;
        targets.extend(self.graph.descendants(&from));
        Ok(self.graph.ancestors(&targets))
    }

    fn indices(&self, names: &[String], flag: &str) -> Result<Vec<usize>, SpecError> {
        let p = self.pipeline;
        names
            .iter()
            .map(|name| {
                p.stage_index(name).ok_or_else(|| {
                    let mut e = SpecError::new(&p.file, None, format!("{flag} {name}: no stage named `{name}`"));
                    if let Some(s) = did_you_mean(name, p.stages.iter().map(|s| s.name.as_str())) {
                        e.help = Some(format!("did you mean `{s}`?"));
                    }
                    e
                })
            })
            .collect()
    }

    fn seed(&self, i: usize) -> u64 {
        self.pipeline.stages[i].seed.unwrap_or(self.pipeline.seed)
    }

    fn hashable<R>(&self, i: usize, inputs: &BTreeMap<String, Hash>, f: impl FnOnce(&Hashable<'_>) -> R) -> R {
        let node = &self.pipeline.stages[i];
        let h = Hashable {
            cache_key: CACHE_KEY_VERSION,
            kind: node.kind,
            version: node.version,
            params: &node.params,
            inputs,
            seed: node.stage.uses_seed().then(|| self.seed(i)),
        };
        f(&h)
    }

    /// Decides a stage whose upstream is settled: skipped, cached,
    /// would-run, failed (unreadable inputs) or ready to run.
    fn decide(&self, i: usize, state: &[State], forced: &BTreeSet<usize>, stat: &mut StatCache, dry: bool) -> State {
        let p = self.pipeline;
        for &u in &self.graph.upstream[i] {
            let name = &p.stages[u].name;
            match &state[u] {
                State::Failed { .. } => return State::Skipped { reason: format!("upstream `{name}` failed") },
                State::Skipped { .. } => return State::Skipped { reason: format!("upstream `{name}` was skipped") },
                State::WouldRun { .. } => {
                    return State::WouldRun { fp: None, reason: format!("upstream `{name}` would run") }
                }
                _ => {}
            }
        }
        let inputs = match self.resolve_inputs(i, state, stat) {
            Ok(x) => x,
            Err(error) => {
                return State::Failed { fp: None, reason: "inputs unreadable".into(), error, duration_ms: 0 }
            }
        };
        let hashes: BTreeMap<String, Hash> = inputs.iter().map(|(k, v)| (k.clone(), v.hash)).collect();
        let fp = self.hashable(i, &hashes, |h| h.fingerprint());
        if !forced.contains(&i) {
            if let Ok(Some(record)) = self.store.get_run(&fp) {
                let restores = exports::drifted(&p.stages[i], &record, &p.dir, stat);
                let mut reason = "up to date".to_string();
                if !restores.is_empty() {
                    let list = restores.iter().map(Restore::describe).collect::<Vec<_>>().join(", ");
                    if dry {
                        reason = format!("would restore {list}");
                    } else {
                        for r in &restores {
                            if let Err(error) = exports::restore(r, &record, &p.dir, self.store) {
                                return State::Failed { fp: Some(fp), reason: "export drifted".into(), error, duration_ms: 0 };
                            }
                        }
                        reason = format!("restored {list}");
                        self.reporter.event(&Event::Log { stage: p.stages[i].name.clone(), message: reason.clone() });
                    }
                }
                let known = Known { fp, inputs: hashes, reason };
                return State::Done { known, record, ran: false, duration_ms: 0, restores };
            }
        }
        let reason = if forced.contains(&i) {
            "forced by --force".to_string()
        } else {
            match self.previous.get(&p.stages[i].name) {
                Some(old) => self.hashable(i, &hashes, |h| h.reason_against(old, &|input| self.describe_input(i, input))),
                None => "no earlier run".to_string(),
            }
        };
        if dry {
            State::WouldRun { fp: Some(fp), reason }
        } else {
            State::Ready { known: Known { fp, inputs: hashes, reason }, inputs }
        }
    }

    fn describe_input(&self, i: usize, input: &str) -> Option<String> {
        let inp = self.graph.inputs[i].iter().find(|x| x.name == input)?;
        Some(match &inp.source {
            Resolved::Output { stage, output } => format!("from `{}.{output}`", self.pipeline.stages[*stage].name),
            Resolved::Model(m) => format!("model `{m}`"),
            Resolved::File(f) => format!("file `{}`", f.display()),
        })
    }

    fn resolve_inputs(&self, i: usize, state: &[State], stat: &mut StatCache) -> Result<BTreeMap<String, InputArtifact>, String> {
        let mut out = BTreeMap::new();
        for input in &self.graph.inputs[i] {
            let art = match &input.source {
                Resolved::Output { stage, output } => {
                    let State::Done { record, .. } = &state[*stage] else {
                        unreachable!("upstream is done when a stage is decided")
                    };
                    let rec = record.outputs.get(output).ok_or_else(|| {
                        format!("stage `{}` recorded no output `{output}`", self.pipeline.stages[*stage].name)
                    })?;
                    let node = &self.pipeline.stages[*stage];
                    let producer = Producer { stage: node.name.clone(), kind: node.kind.to_string(), metrics: record.metrics.clone() };
                    let path = Some(self.store.object_path(&rec.hash));
                    InputArtifact { hash: rec.hash, kind: rec.kind, path, model_spec: None, producer: Some(producer) }
                }
                Resolved::File(path) => {
                    let (hash, kind) = stat.hash_path(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    InputArtifact { hash, kind, path: Some(path.clone()), model_spec: None, producer: None }
                }
                Resolved::Model(name) => self.model_input(name, stat)?,
            };
            out.insert(input.name.clone(), art);
        }
        Ok(out)
    }

    fn model_input(&self, name: &str, stat: &mut StatCache) -> Result<InputArtifact, String> {
        let spec = &self.pipeline.models[name];
        let json = serde_json::to_value(spec).expect("model specs serialize");
        match &spec.path {
            Some(rel) => {
                let path = self.pipeline.dir.join(rel);
                let (hash, kind) = stat.hash_path(&path).map_err(|e| format!("cannot read model {}: {e}", path.display()))?;
                Ok(InputArtifact { hash, kind, path: Some(path), model_spec: Some(json), producer: None })
            }
            None => {
                let hash = fingerprint(&json);
                Ok(InputArtifact { hash, kind: ArtifactKind::File, path: None, model_spec: Some(json), producer: None })
            }
        }
    }

    fn report_final(&self, i: usize, s: &State) {
        let name = &self.pipeline.stages[i].name;
        let (status, duration_ms) = match s {
            State::Done { ran: true, duration_ms, .. } => ("ran", *duration_ms),
            State::Done { .. } => ("cached", 0),
            State::Failed { duration_ms, error, .. } => {
                self.reporter.event(&Event::Log { stage: name.clone(), message: format!("error: {error}") });
                ("failed", *duration_ms)
            }
            State::Skipped { .. } => ("skipped", 0),
            _ => return,
        };
        self.reporter.event(&Event::Finished { stage: name.clone(), status: status.into(), duration_ms });
    }

    fn outcome(&self, state: Vec<State>) -> Outcome {
        let mut state: Vec<Option<State>> = state.into_iter().map(Some).collect();
        let mut stages = Vec::new();
        let mut entries = BTreeMap::new();
        let mut restores = BTreeMap::new();
        for &i in &self.graph.order {
            let node = &self.pipeline.stages[i];
            let mut s = StageSummary::new(&node.name, node.kind);
            match state[i].take().expect("each stage is visited once") {
                State::Pending | State::Ready { .. } | State::Running { .. } => continue,
                State::Done { known, record, ran, duration_ms, restores: r } => {
                    if !r.is_empty() {
                        restores.insert(node.name.clone(), r);
                    }
                    s.status = if ran { Status::Ran } else { Status::Cached };
                    s.fingerprint = Some(known.fp.to_string());
                    s.duration_ms = duration_ms;
                    s.reason = known.reason.clone();
                    s.outputs = record
                        .outputs
                        .iter()
                        .map(|(k, o)| (k.clone(), OutputSummary { hash: o.hash.to_string(), rows: o.rows }))
                        .collect();
                    s.metrics = record.metrics.clone();
                    entries.insert(node.name.clone(), self.lock_entry(i, known, record));
                }
                State::WouldRun { fp, reason } => {
                    s.status = Status::WouldRun;
                    s.fingerprint = fp.map(|f| f.to_string());
                    s.reason = reason;
                }
                State::Failed { fp, reason, error, duration_ms } => {
                    s.status = Status::Failed;
                    s.fingerprint = fp.map(|f| f.to_string());
                    s.reason = reason;
                    s.error = Some(error);
                    s.duration_ms = duration_ms;
                }
                State::Skipped { reason } => {
                    s.status = Status::Skipped;
                    s.reason = reason;
                }
            }
            stages.push(s);
        }
        Outcome { stages, entries, restores }
    }

    fn lock_entry(&self, i: usize, known: Known, record: RunRecord) -> LockEntry {
        let node = &self.pipeline.stages[i];
        LockEntry {
            kind: node.kind.to_string(),
            version: node.version,
            fingerprint: known.fp,
            seed: node.stage.uses_seed().then(|| self.seed(i)),
            params: node.params.clone(),
            inputs: known.inputs,
            outputs: record.outputs,
            metrics: record.metrics,
        }
    }
}

/// One stage execution, moved to a worker thread.
struct Job<'a> {
    node: &'a StageNode,
    inputs: BTreeMap<String, InputArtifact>,
    fp: Hash,
    seed: u64,
    device: &'a str,
    dir: &'a Path,
    store: &'a Store,
    reporter: &'a dyn Reporter,
}

impl Job<'_> {
    /// Runs the stage in a fresh temp dir inside the store, then moves each
    /// output into the store and records the run. Nothing becomes visible
    /// unless the stage succeeded and every output was written.
    fn run(self) -> Result<RunRecord, String> {
        let tmp = self.store.temp_dir().map_err(chain)?;
        let mut ctx = StageCtx {
            stage: &self.node.name,
            seed: self.seed,
            device: self.device,
            pipeline_dir: self.dir,
            store: self.store,
            inputs: self.inputs,
            out_dir: tmp.path(),
            reporter: self.reporter,
        };
        let start = Instant::now();
        let metrics = match catch_unwind(AssertUnwindSafe(|| self.node.stage.run(&mut ctx))) {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(format!("{e:#}")),
            Err(panic) => return Err(format!("stage panicked: {}", panic_message(&panic))),
        };
        let duration_ms = start.elapsed().as_millis() as u64;
        let mut outputs = BTreeMap::new();
        for name in self.node.stage.outputs() {
            let path = tmp.path().join(&name);
            if !path.exists() {
                return Err(format!("stage did not write its output `{name}`"));
            }
            let rows = if path.is_file() { Some(count_lines(&path).map_err(chain)?) } else { None };
            let art = self.store.put_path(&path).map_err(chain)?;
            outputs.insert(name, OutputRecord { hash: art.hash, kind: art.kind, bytes: art.bytes, rows });
        }
        let created_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let record = RunRecord { outputs, metrics, duration_ms, created_unix_ms };
        self.store.put_run(&self.fp, &record).map_err(chain)?;
        Ok(record)
    }
}

/// An error with its causes, `a: b: c`, as anyhow prints them.
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// Rows of a dataset = lines (a last line without `\n` counts).
fn count_lines(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}
