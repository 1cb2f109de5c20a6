//! Planning and running a pipeline.
//!
//! [`Executor::plan`] is a pure planner: it visits the selected stages in
//! topological order and decides each one (a [`Decision`]) from the run
//! cache, the previous lock entries and the hashes of its inputs, on one
//! thread and without writing anything. [`Executor::run`] executes a
//! [`Plan`]: it restores drifted exports of cached stages, runs the others
//! on up to `jobs` threads, and decides a stage that waited on an upstream
//! one again, with the same function, once that upstream has run: the
//! upstream may have written the bytes it wrote before (early cutoff), and
//! then the waiting stage is cached after all. A failed stage lets
//! independent branches finish and marks its dependents `skipped`.
//!
//! `retort plan` prints the plan; `retort run` builds the same plan and runs
//! it, so what `plan` says is what `run` starts from.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use retort_cache::{fingerprint, ArtifactKind, Hash, LockEntry, OutputRecord, RunRecord, StatCache, Store};

use crate::context::{InputArtifact, Producer, StageCtx};
use crate::error::{did_you_mean, SpecError};
use crate::events::{Event, Reporter};
use crate::executor::Submission;
use crate::exports::{self, Restore};
use crate::fingerprint::{Hashable, CACHE_KEY_VERSION};
use crate::graph::{Graph, Resolved};
use crate::spec::{Pipeline, StageNode};
use crate::summary::{OutputSummary, StageSummary, Status};

/// Which stages to consider and how many may run at once.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Parallel stages at most (at least 1); `run` only.
    pub jobs: usize,
    /// Run these stages (and what they need that is not cached).
    pub only: Vec<String>,
    /// Run these stages and everything downstream of them.
    pub from: Vec<String>,
    /// Re-execute these stages even when cached.
    pub force: Vec<String>,
}

/// What the planner decided for one stage.
#[derive(Debug)]
pub enum Decision {
    /// The run cache holds a valid record for the stage's fingerprint, so
    /// its outputs are reused. `restores` are exported files that drifted
    /// from those outputs; `run` writes them back.
    Cached {
        /// The stage's fingerprint.
        fingerprint: Hash,
        /// Input name -> content hash.
        inputs: BTreeMap<String, Hash>,
        /// The cached run.
        record: RunRecord,
        /// Exported files to restore.
        restores: Vec<Restore>,
    },
    /// The stage executes.
    Run {
        /// The stage's fingerprint.
        fingerprint: Hash,
        /// The resolved inputs it runs on.
        inputs: BTreeMap<String, InputArtifact>,
        /// Why: the first difference from the previous run, or `--force`.
        reason: String,
    },
    /// The stage's inputs, and so its fingerprint, are unknown until
    /// `upstream` has run; `run` decides it then.
    Waits {
        /// The upstream stage that would run.
        upstream: String,
    },
    /// An input cannot be read (a file went missing): the stage fails.
    Unreadable {
        /// What could not be read.
        error: String,
    },
    /// Something upstream cannot run, so neither can this stage.
    Skipped {
        /// Which upstream stage, and why.
        reason: String,
    },
}

/// One stage of a [`Plan`].
#[derive(Debug)]
pub struct Step {
    /// Index into `Pipeline::stages`.
    pub stage: usize,
    /// What is to happen to it.
    pub decision: Decision,
}

/// What `run` would do: one step per selected stage, dependencies first.
#[derive(Debug)]
pub struct Plan {
    /// The steps, in topological order.
    pub steps: Vec<Step>,
    /// `--force`d stages, for decisions made while running.
    forced: BTreeSet<usize>,
    /// File hashes learned while planning; `run` goes on with them and
    /// saves them, `plan` drops them.
    stat: StatCache,
}

impl Plan {
    /// Whether running the plan would do anything: execute a stage, or
    /// restore an exported file.
    pub fn has_work(&self) -> bool {
        self.steps.iter().any(|s| !matches!(&s.decision, Decision::Cached { restores, .. } if restores.is_empty()))
    }

    /// One summary per step, as `plan --format json` prints them: cached
    /// stages with their outputs and metrics, the others `would-run` (or
    /// `failed`/`skipped` when an input cannot be read).
    pub fn summary(&self, pipeline: &Pipeline) -> Vec<StageSummary> {
        self.steps
            .iter()
            .map(|step| {
                let node = &pipeline.stages[step.stage];
                let mut s = StageSummary::new(&node.name, node.kind);
                match &step.decision {
                    Decision::Cached { fingerprint, record, restores, .. } => {
                        s.status = Status::Cached;
                        s.fingerprint = Some(fingerprint.to_string());
                        s.outputs = output_summaries(record);
                        s.metrics = record.metrics.clone();
                        s.reason = match restores.as_slice() {
                            [] => "up to date".into(),
                            r => format!("would restore {}", describe(r)),
                        };
                    }
                    Decision::Run { fingerprint, reason, .. } => {
                        s.status = Status::WouldRun;
                        s.fingerprint = Some(fingerprint.to_string());
                        s.reason = reason.clone();
                    }
                    Decision::Waits { upstream } => {
                        s.status = Status::WouldRun;
                        s.reason = format!("upstream `{upstream}` would run");
                    }
                    Decision::Unreadable { error } => {
                        s.status = Status::Failed;
                        s.reason = "inputs unreadable".into();
                        s.error = Some(error.clone());
                    }
                    Decision::Skipped { reason } => {
                        s.status = Status::Skipped;
                        s.reason = reason.clone();
                    }
                }
                s
            })
            .collect()
    }
}

/// The outcome of a run: one summary per considered stage, in execution
/// order, and the stages' lock entries.
pub struct Outcome {
    /// Per stage, in topological order.
    pub stages: Vec<StageSummary>,
    /// Lock entries of the stages that are done (ran or cached), by name.
    pub entries: BTreeMap<String, LockEntry>,
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

/// A stage during `run`.
enum State {
    /// Not selected.
    Absent,
    /// Waiting on an upstream stage; decided when it has settled.
    Pending,
    /// Decided to run; waiting for a free job slot.
    Ready { known: Known, inputs: BTreeMap<String, InputArtifact> },
    Running { known: Known },
    Done { known: Known, record: RunRecord, ran: bool, duration_ms: u64 },
    Failed { fp: Option<Hash>, reason: String, error: String, duration_ms: u64, bad_input: bool },
    Skipped { reason: String },
}

/// What deciding a stage needs to know about one of its upstream stages.
enum Upstream<'r> {
    /// Its outputs are known.
    Done(&'r RunRecord),
    /// It has yet to run.
    WillRun,
    /// It failed, or will because an input cannot be read.
    Failed,
    /// It was skipped.
    Skipped,
}

/// What a worker thread sends back.
struct Finished {
    index: usize,
    result: Result<RunRecord, String>,
    duration_ms: u64,
    /// The stage failed on bad input data ([`crate::BadInput`]).
    bad_input: bool,
}

/// Everything planning and running need, borrowed.
pub struct Executor<'a> {
    /// The pipeline.
    pub pipeline: &'a Pipeline,
    /// Its DAG.
    pub graph: &'a Graph,
    /// The store.
    pub store: &'a Store,
    /// The previous lock entries of this pipeline, for reasons.
    pub previous: &'a BTreeMap<String, LockEntry>,
    /// Where events go (`run` only; planning reports nothing).
    pub reporter: &'a dyn Reporter,
    /// The remote cache (`run` only): a local miss is looked up there
    /// before the stage is run, and what a stage makes is pushed there.
    pub remote: Option<&'a retort_remote::Session>,
}

impl Executor<'_> {
    /// Decides every selected stage, in topological order, without
    /// executing a stage or writing a file. (Reading the run cache may still
    /// delete an object found corrupt, as every cache read does, so that the
    /// stage that made it is planned to run.)
    pub fn plan(&self, opts: &Options) -> Result<Plan, SpecError> {
        let included = self.selection(opts)?;
        let forced: BTreeSet<usize> = self.indices(&opts.force, "--force")?.into_iter().collect();
        let mut stat = StatCache::load(&self.store.root().join("stat-cache.json"));
        let mut decided: Vec<Option<Decision>> = self.pipeline.stages.iter().map(|_| None).collect();
        for &i in &self.graph.order {
            if !included.contains(&i) {
                continue;
            }
            let upstream = |u: usize| match decided[u].as_ref().expect("a selection holds every ancestor") {
                Decision::Cached { record, .. } => Upstream::Done(record),
                Decision::Run { .. } | Decision::Waits { .. } => Upstream::WillRun,
                Decision::Unreadable { .. } => Upstream::Failed,
                Decision::Skipped { .. } => Upstream::Skipped,
            };
            let d = self.decide(i, &upstream, &forced, &mut stat);
            decided[i] = Some(d);
        }
        let steps = self
            .graph
            .order
            .iter()
            .filter_map(|&i| decided[i].take().map(|decision| Step { stage: i, decision }))
            .collect();
        Ok(Plan { steps, forced, stat })
    }

    /// Executes `plan` on up to `jobs` threads and reports events as it
    /// goes. Stages that waited on an upstream one are decided once it is
    /// done; cached stages get their drifted exports restored.
    pub fn run(&self, plan: Plan, jobs: usize) -> Outcome {
        let p = self.pipeline;
        let Plan { steps, forced, mut stat } = plan;
        let mut state: Vec<State> = p.stages.iter().map(|_| State::Absent).collect();
        for step in steps {
            state[step.stage] = self.settle(step.stage, step.decision);
            self.report_final(step.stage, &state[step.stage]);
        }
        let jobs = jobs.max(1);

        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<Finished>();
            let mut running = 0usize;
            loop {
                // Decide every waiting stage whose upstream is settled, and
                // start as many ready ones as there are free slots, until
                // nothing moves.
                let mut progressed = true;
                while progressed {
                    progressed = false;
                    for &i in &self.graph.order {
                        if matches!(state[i], State::Pending) && self.upstream_settled(i, &state) {
                            let upstream = |u: usize| match &state[u] {
                                State::Done { record, .. } => Upstream::Done(record),
                                State::Failed { .. } => Upstream::Failed,
                                State::Skipped { .. } => Upstream::Skipped,
                                _ => Upstream::WillRun,
                            };
                            let d = self.decide(i, &upstream, &forced, &mut stat);
                            state[i] = self.settle(i, d);
                            self.report_final(i, &state[i]);
                            progressed |= !matches!(state[i], State::Pending);
                        }
                        if running < jobs && matches!(state[i], State::Ready { .. }) {
                            let State::Ready { known, inputs } = std::mem::replace(&mut state[i], State::Pending) else {
                                unreachable!("matched above")
                            };
                            let node = &p.stages[i];
                            self.reporter.event(&Event::Started { stage: node.name.clone(), reason: known.reason.clone() });
                            let mut job = self.job(i, known.fp, inputs);
                            job.ancestors = self.ancestor_runs(i, &state);
                            state[i] = State::Running { known };
                            running += 1;
                            progressed = true;
                            let tx = tx.clone();
                            scope.spawn(move || {
                                let start = Instant::now();
                                let bad_input = std::cell::Cell::new(false);
                                let result = job.run(&bad_input);
                                let duration_ms = start.elapsed().as_millis() as u64;
                                let _ = tx.send(Finished { index: i, result, duration_ms, bad_input: bad_input.get() });
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
                    Ok(record) => State::Done { known, record, ran: true, duration_ms: done.duration_ms },
                    Err(error) => {
                        let bad_input = done.bad_input;
                        State::Failed { fp: Some(known.fp), reason: known.reason, error, duration_ms: done.duration_ms, bad_input }
                    }
                };
                self.report_final(done.index, &state[done.index]);
            }
        });
        // Losing the stat cache only costs a re-hash next time.
        let _ = stat.save();
        self.outcome(state)
    }

    fn job(&self, i: usize, fp: Hash, inputs: BTreeMap<String, InputArtifact>) -> Job<'_> {
        let p = self.pipeline;
        Job {
            pipeline: p,
            node: &p.stages[i],
            inputs,
            fp,
            seed: self.seed(i),
            device: p.device,
            dir: &p.dir,
            store: self.store,
            reporter: self.reporter,
            remote: self.remote,
            ancestors: Vec::new(),
        }
    }

    /// The runs of every stage `i` builds on, for a Slurm job whose node
    /// has a cache of its own and fetches them from the remote (none
    /// otherwise: a node that shares this cache finds them there).
    fn ancestor_runs(&self, i: usize, state: &[State]) -> Vec<(Hash, RunRecord)> {
        let own_cache = self.pipeline.stages[i].executor.slurm().is_some_and(|s| s.cache_dir.is_some());
        if !own_cache || self.remote.is_none() {
            return Vec::new();
        }
        let mut runs = Vec::new();
        for u in self.graph.ancestors(&[i]) {
            if let State::Done { known, record, .. } = &state[u] {
                runs.push((known.fp, record.clone()));
            }
        }
        runs
    }

    /// Executes stage `i`, planned to run with fingerprint `fp` on `inputs`,
    /// in this process whatever its executor: what `retort exec-stage` does
    /// for a Slurm job on its node.
    pub(crate) fn execute_here(&self, i: usize, fp: Hash, inputs: BTreeMap<String, InputArtifact>) -> Result<RunRecord, String> {
        let result = self.job(i, fp, inputs).run_here(&std::cell::Cell::new(false));
        share(self.remote, self.store, &fp, &result);
        result
    }

    /// Turns a decision into the run's state for the stage; for a cached
    /// stage, first writes back its drifted exports.
    fn settle(&self, i: usize, decision: Decision) -> State {
        match decision {
            Decision::Cached { fingerprint, inputs, record, restores } => {
                let mut reason = "up to date".to_string();
                if !restores.is_empty() {
                    for r in &restores {
                        if let Err(error) = exports::restore(r, &record, &self.pipeline.dir, self.store) {
                            return State::Failed { fp: Some(fingerprint), reason: "export drifted".into(), error, duration_ms: 0, bad_input: false };
                        }
                    }
                    reason = format!("restored {}", describe(&restores));
                    self.reporter.event(&Event::Log { stage: self.pipeline.stages[i].name.clone(), message: reason.clone() });
                }
                let known = Known { fp: fingerprint, inputs, reason };
                State::Done { known, record, ran: false, duration_ms: 0 }
            }
            Decision::Run { fingerprint, inputs, reason } => {
                let hashes = inputs.iter().map(|(k, v)| (k.clone(), v.hash)).collect();
                State::Ready { known: Known { fp: fingerprint, inputs: hashes, reason }, inputs }
            }
            Decision::Waits { .. } => State::Pending,
            Decision::Unreadable { error } => {
                State::Failed { fp: None, reason: "inputs unreadable".into(), error, duration_ms: 0, bad_input: false }
            }
            Decision::Skipped { reason } => State::Skipped { reason },
        }
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
            params: &node.hashed,
            inputs,
            seed: node.stage.uses_seed().then(|| self.seed(i)),
        };
        f(&h)
    }

    /// Decides one stage from what is known of its upstream stages: the
    /// one function behind both `plan` and the decisions `run` makes late.
    fn decide<'r>(
        &self,
        i: usize,
        upstream: &dyn Fn(usize) -> Upstream<'r>,
        forced: &BTreeSet<usize>,
        stat: &mut StatCache,
    ) -> Decision {
        let p = self.pipeline;
        for &u in &self.graph.upstream[i] {
            let name = &p.stages[u].name;
            match upstream(u) {
                Upstream::Failed => return Decision::Skipped { reason: format!("upstream `{name}` failed") },
                Upstream::Skipped => return Decision::Skipped { reason: format!("upstream `{name}` was skipped") },
                Upstream::WillRun => return Decision::Waits { upstream: name.clone() },
                Upstream::Done(_) => {}
            }
        }
        let inputs = match self.resolve_inputs(i, upstream, stat) {
            Ok(x) => x,
            Err(error) => return Decision::Unreadable { error },
        };
        let hashes: BTreeMap<String, Hash> = inputs.iter().map(|(k, v)| (k.clone(), v.hash)).collect();
        let fp = self.hashable(i, &hashes, |h| h.fingerprint());
        if !forced.contains(&i) {
            let local = self.store.get_run(&fp).ok().flatten();
            if let Some(record) = local.or_else(|| self.remote.and_then(|r| r.fetch_run(self.store, &fp))) {
                let restores = exports::drifted(&p.stages[i], &record, &p.dir, stat);
                return Decision::Cached { fingerprint: fp, inputs: hashes, record, restores };
            }
        }
        let reason = if forced.contains(&i) {
            "forced by --force".to_string()
        } else {
            match self.previous.get(&p.stages[i].name) {
                Some(old) => self.hashable(i, &hashes, |h| {
                    h.reason_against(old, &p.stages[i].written, &|input| self.describe_input(i, input))
                }),
                None => "no earlier run".to_string(),
            }
        };
        Decision::Run { fingerprint: fp, inputs, reason }
    }

    fn describe_input(&self, i: usize, input: &str) -> Option<String> {
        let inp = self.graph.inputs[i].iter().find(|x| x.name == input)?;
        Some(match &inp.source {
            Resolved::Output { stage, output } => format!("from `{}.{output}`", self.pipeline.stages[*stage].name),
            Resolved::Model(m) => format!("model `{m}`"),
            Resolved::File(f) => format!("file `{}`", f.display()),
        })
    }

    fn resolve_inputs<'r>(
        &self,
        i: usize,
        upstream: &dyn Fn(usize) -> Upstream<'r>,
        stat: &mut StatCache,
    ) -> Result<BTreeMap<String, InputArtifact>, String> {
        let mut out = BTreeMap::new();
        for input in &self.graph.inputs[i] {
            let art = match &input.source {
                Resolved::Output { stage, output } => {
                    let Upstream::Done(record) = upstream(*stage) else {
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
        match &spec.path {
            Some(rel) => {
                let path = self.pipeline.dir.join(rel);
                let (hash, kind) = stat.hash_path(&path).map_err(|e| format!("cannot read model {}: {e}", path.display()))?;
                Ok(InputArtifact { hash, kind, path: Some(path), model_spec: Some(spec.clone()), producer: None })
            }
            // A spec without weights (`tiny:`, `openai:`) is identified by
            // the spec itself, or the part of it that names the model.
            None => {
                let hash = fingerprint(&spec.identity());
                Ok(InputArtifact { hash, kind: ArtifactKind::File, path: None, model_spec: Some(spec.clone()), producer: None })
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
        for &i in &self.graph.order {
            let node = &self.pipeline.stages[i];
            let mut s = StageSummary::new(&node.name, node.kind);
            match state[i].take().expect("each stage is visited once") {
                State::Absent | State::Pending | State::Ready { .. } | State::Running { .. } => continue,
                State::Done { known, record, ran, duration_ms } => {
                    s.status = if ran { Status::Ran } else { Status::Cached };
                    s.fingerprint = Some(known.fp.to_string());
                    s.duration_ms = duration_ms;
                    s.reason = known.reason.clone();
                    s.outputs = output_summaries(&record);
                    s.metrics = record.metrics.clone();
                    entries.insert(node.name.clone(), self.lock_entry(i, known, record));
                }
                State::Failed { fp, reason, error, duration_ms, bad_input } => {
                    s.status = Status::Failed;
                    s.bad_input = bad_input;
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
        Outcome { stages, entries }
    }

    fn lock_entry(&self, i: usize, known: Known, record: RunRecord) -> LockEntry {
        let node = &self.pipeline.stages[i];
        LockEntry {
            kind: node.kind.to_string(),
            version: node.version,
            fingerprint: known.fp,
            seed: node.stage.uses_seed().then(|| self.seed(i)),
            params: node.written.clone(),
            inputs: known.inputs,
            outputs: record.outputs,
            metrics: record.metrics,
            device: record.device,
        }
    }
}

fn output_summaries(record: &RunRecord) -> BTreeMap<String, OutputSummary> {
    record.outputs.iter().map(|(k, o)| (k.clone(), OutputSummary { hash: o.hash.to_string(), rows: o.rows })).collect()
}

/// `` `a.jsonl` (file was missing), `b.jsonl` (file was changed)``.
fn describe(restores: &[Restore]) -> String {
    restores.iter().map(Restore::describe).collect::<Vec<_>>().join(", ")
}

/// One stage execution, moved to a worker thread.
struct Job<'a> {
    pipeline: &'a Pipeline,
    node: &'a StageNode,
    inputs: BTreeMap<String, InputArtifact>,
    fp: Hash,
    seed: u64,
    device: crate::spec::Device,
    dir: &'a Path,
    store: &'a Store,
    reporter: &'a dyn Reporter,
    remote: Option<&'a retort_remote::Session>,
    /// For a Slurm job on a node with its own cache: the runs it builds on.
    ancestors: Vec<(Hash, RunRecord)>,
}

/// After a stage ran: what it made (and, failed or not, the items it
/// cached) goes to the remote cache, if there is one.
fn share(remote: Option<&retort_remote::Session>, store: &Store, fp: &Hash, result: &Result<RunRecord, String>) {
    if let Some(remote) = remote {
        if let Ok(record) = result {
            remote.push_run(store, fp, record);
        }
        remote.push_open_items(store);
    }
}

impl Job<'_> {
    /// Runs the stage where its executor says: here, or as a Slurm job whose
    /// `retort exec-stage` calls [`Executor::execute_here`] on a node
    /// (executor/); then its result is [`share`]d.
    fn run(self, bad_input: &std::cell::Cell<bool>) -> Result<RunRecord, String> {
        let (store, fp, remote) = (self.store, self.fp, self.remote);
        let result = match self.node.executor.slurm() {
            None => self.run_here(bad_input),
            Some(spec) => Submission {
                pipeline: self.pipeline,
                stage: &self.node.name,
                fingerprint: self.fp,
                store: self.store,
                reporter: self.reporter,
                remote: self.remote,
                ancestors: self.ancestors,
            }
            .run(spec),
        };
        share(remote, store, &fp, &result);
        result
    }

    /// Runs the stage in a fresh temp dir inside the store, then moves each
    /// output into the store and records the run. Nothing becomes visible
    /// unless the stage succeeded and every output was written.
    /// `bad_input` is set when the stage's error is a [`crate::BadInput`].
    fn run_here(self, bad_input: &std::cell::Cell<bool>) -> Result<RunRecord, String> {
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
            backend: Default::default(),
            timings: BTreeMap::new(),
        };
        let start = Instant::now();
        let metrics = match catch_unwind(AssertUnwindSafe(|| self.node.stage.run(&mut ctx))) {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                bad_input.set(e.chain().any(|c| c.is::<crate::BadInput>()));
                return Err(format!("{e:#}"));
            }
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
        let timings = std::mem::take(&mut ctx.timings);
        let device = ctx.backend.into_inner().unwrap_or_else(|e| e.into_inner());
        let record = RunRecord { outputs, metrics, duration_ms, created_unix_ms, timings, device };
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::events::QuietReporter;
    use crate::stage::{InputDecl, Metrics, Registry, Source, Stage, StageImpl};

    static RUNS: AtomicUsize = AtomicUsize::new(0);

    /// Writes `text` (ignoring `salt`), after its input's bytes if it has one.
    #[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
    struct Echo {
        text: String,
        #[serde(default)]
        input: Option<String>,
        #[serde(default)]
        salt: u32,
    }

    impl StageImpl for Echo {
        const KIND: &'static str = "echo";
        const VERSION: u32 = 1;
        const ABOUT: &'static str = "test";

        fn hashed(&self) -> crate::stage::Hashed {
            let Echo { text, input: _, salt } = self;
            crate::stage::Hashed::new().field("text", text).field("salt", salt)
        }
    }

    impl Stage for Echo {
        fn inputs(&self) -> Vec<InputDecl> {
            self.input.iter().map(|s| InputDecl::new("src", Source::stage_ref(s), "input")).collect()
        }
        fn outputs(&self) -> Vec<String> {
            vec!["out".into()]
        }
        fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
            RUNS.fetch_add(1, Ordering::SeqCst);
            let before = match &self.input {
                Some(_) => std::fs::read_to_string(ctx.input_path("src")?)?,
                None => String::new(),
            };
            std::fs::write(ctx.output_path("out"), before + &self.text)?;
            Ok(Metrics::new())
        }
    }

    fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    todo.push(e.path());
                }
                out.push((e.path(), m.len()));
            }
        }
        out.sort();
        out
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.steps
            .iter()
            .map(|s| match s.decision {
                Decision::Cached { .. } => "cached",
                Decision::Run { .. } => "run",
                Decision::Waits { .. } => "waits",
                Decision::Unreadable { .. } => "unreadable",
                Decision::Skipped { .. } => "skipped",
            })
            .collect()
    }

    /// `plan` decides without writing; `run` executes that plan and decides
    /// a waiting stage once its upstream ran: cached when the upstream wrote
    /// the same bytes (early cutoff).
    #[test]
    fn plan_writes_nothing_and_run_redecides_waiting_stages() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        let yaml = "stages:\n  a:\n    kind: echo\n    text: x\n  b:\n    kind: echo\n    text: y\n    input: a\n";
        std::fs::write(&file, yaml).unwrap();
        let mut registry = Registry::new();
        registry.register::<Echo>();
        let store = Store::open(&dir.path().join(".retort")).unwrap();
        let previous = BTreeMap::new();
        let go = |overrides: &[String]| {
            let p = crate::spec::load(&file, overrides, &registry).unwrap();
            let g = Graph::build(&p).unwrap();
            let exec = Executor { pipeline: &p, graph: &g, store: &store, previous: &previous, reporter: &QuietReporter, remote: None };
            let opts = Options { jobs: 2, ..Options::default() };
            let before = listing(dir.path());
            let plan = exec.plan(&opts).unwrap();
            assert_eq!(listing(dir.path()), before, "plan wrote something");
            let planned = kinds(&plan);
            let outcome = exec.run(plan, opts.jobs);
            // As when a `retort` process ends: the store saves its own stat cache.
            store.flush();
            let statuses: Vec<Status> = outcome.stages.iter().map(|s| s.status).collect();
            (planned, statuses)
        };
        RUNS.store(0, Ordering::SeqCst);
        assert_eq!(go(&[]), (vec!["run", "waits"], vec![Status::Ran, Status::Ran]));
        assert_eq!(go(&[]), (vec!["cached", "cached"], vec![Status::Cached, Status::Cached]));
        // `a` re-runs with the same bytes: `b` waits, then is cached.
        let salted = ["stages.a.salt=1".to_string()];
        assert_eq!(go(&salted), (vec!["run", "waits"], vec![Status::Ran, Status::Cached]));
        assert_eq!(RUNS.load(Ordering::SeqCst), 3);
    }
}
