//! `run`, `plan` and `status`.

use std::collections::BTreeMap;

use super::args::{Format, PipelineArgs, PlanArgs, RunArgs, Selection};
use super::lock::{open_store, read_lock, write_lock};
use super::{CliError, Common};
use crate::events::{reporter, QuietReporter, Reporter};
use crate::exec::{Executor, Options, Outcome};
use crate::graph::Graph;
use crate::spec::{load, Pipeline};
use crate::stage::Registry;
use crate::summary::{RunSummary, Status};

/// Loads and checks a pipeline: every user error surfaces here, before the
/// cache is touched.
pub(super) fn load_checked(args: &PipelineArgs, registry: &Registry) -> Result<(Pipeline, Graph), CliError> {
    let p = load(&args.pipeline, &args.set, registry)?;
    let g = Graph::build(&p)?;
    Ok((p, g))
}

fn options(select: &Selection, jobs: Option<usize>, dry_run: bool) -> Options {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    Options {
        jobs: jobs.unwrap_or(cpus),
        only: select.only.clone(),
        from: select.from.clone(),
        force: select.force.clone(),
        dry_run,
    }
}

fn print_summary(p: &Pipeline, outcome: &Outcome, format: Format) {
    let summary = RunSummary { pipeline: p.name.clone(), stages: outcome.stages.clone() };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary).expect("summary serializes")),
        Format::Human => print!("{}", summary.to_table()),
    }
}

/// `retort run`.
pub(super) fn run(a: RunArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, g) = load_checked(&a.pipeline, registry)?;
    let store = open_store(common, &p)?;
    let _lock = store.lock()?;
    let previous = read_lock(&p)?;
    let rep = reporter(common.log_format, common.quiet);
    let exec = Executor { pipeline: &p, graph: &g, store: &store, previous: &previous, reporter: rep.as_ref() };
    let outcome = exec.execute(&options(&a.select, a.jobs, false))?;
    rep.finish();
    if a.pipeline.set.is_empty() {
        let mut entries = previous;
        entries.extend(outcome.entries.clone());
        write_lock(&p, entries)?;
    } else if !common.quiet {
        eprintln!("note: retort.lock not updated: this run used --set, so it is not the pipeline as written");
    }
    print_summary(&p, &outcome, a.format);
    if outcome.failed() {
        let failed: Vec<&str> =
            outcome.stages.iter().filter(|s| s.status == Status::Failed).map(|s| s.name.as_str()).collect();
        return Err(CliError::Failed(format!("stage(s) failed: {}", failed.join(", "))));
    }
    Ok(())
}

/// `retort plan`.
pub(super) fn plan(a: PlanArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, g) = load_checked(&a.pipeline, registry)?;
    let outcome = dry_run(&p, &g, common, &a.select)?;
    print_summary(&p, &outcome, a.format);
    // A cached stage with an export to restore is work too.
    if a.exit_code && (outcome.stages.iter().any(|s| s.status != Status::Cached) || !outcome.restores.is_empty()) {
        return Err(CliError::Failed(String::new()));
    }
    Ok(())
}

fn dry_run(p: &Pipeline, g: &Graph, common: &Common, select: &Selection) -> Result<Outcome, CliError> {
    let store = open_store(common, p)?;
    let previous = read_lock(p)?;
    let exec = Executor { pipeline: p, graph: g, store: &store, previous: &previous, reporter: &QuietReporter as &dyn Reporter };
    Ok(exec.execute(&options(select, None, true))?)
}

/// `retort status`: per stage, whether the lock file still describes it.
pub(super) fn status(a: PipelineArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, g) = load_checked(&a, registry)?;
    let outcome = dry_run(&p, &g, common, &Selection::default())?;
    let locked = read_lock(&p)?;
    let w = p.stages.iter().map(|s| s.name.len()).max().unwrap_or(5);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &outcome.stages {
        let entry = locked.get(&s.name);
        let same = entry.is_some_and(|e| Some(e.fingerprint.to_string()) == s.fingerprint);
        let (word, why) = match (s.status, entry) {
            (Status::Cached, _) if outcome.restores.contains_key(&s.name) => ("stale", s.reason.clone()),
            (Status::Cached, _) if same => ("up-to-date", String::new()),
            (Status::Cached, Some(_)) => ("cached", "in the cache, but retort.lock records another run".into()),
            (_, None) => ("new", s.reason.clone()),
            _ => ("stale", s.reason.clone()),
        };
        *counts.entry(word).or_default() += 1;
        println!("{:<w$}  {:<10}  {}", s.name, word, why);
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("{}: {}", p.name, parts.join(", "));
    Ok(())
}
