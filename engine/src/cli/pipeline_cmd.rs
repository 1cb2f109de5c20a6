//! `run`, `plan` and `status`.

use std::collections::BTreeMap;

use super::args::{Format, PipelineArgs, PlanArgs, RunArgs, Selection};
use super::lock::{open_store, read_lock, write_lock};
use super::{CliError, Common};
use crate::events::{reporter, QuietReporter, Reporter};
use crate::exec::{Decision, Executor, Options, Plan};
use crate::graph::Graph;
use crate::preflight::remote_models;
use crate::spec::{load, Pipeline};
use crate::stage::Registry;
use crate::summary::{RunSummary, StageSummary, Status};

/// Loads and checks a pipeline: every user error surfaces here, before the
/// cache is touched.
pub(super) fn load_checked(args: &PipelineArgs, registry: &Registry) -> Result<(Pipeline, Graph), CliError> {
    let p = load(&args.pipeline, &args.set, registry)?;
    let g = Graph::build(&p)?;
    Ok((p, g))
}

fn options(select: &Selection, jobs: Option<usize>) -> Options {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    Options {
        jobs: jobs.unwrap_or(cpus),
        only: select.only.clone(),
        from: select.from.clone(),
        force: select.force.clone(),
    }
}

fn print_summary(p: &Pipeline, stages: Vec<StageSummary>, format: Format) {
    let summary = RunSummary { pipeline: p.name.clone(), stages };
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
    let remote = super::remote_cmd::for_run(a.remote.remote.as_deref(), &p, &store)?;
    let rep = reporter(common.log_format, common.quiet);
    let exec = Executor { pipeline: &p, graph: &g, store: &store, previous: &previous, reporter: rep.as_ref(), remote: remote.as_deref() };
    let opts = options(&a.select, a.jobs);
    // The same plan `retort plan` prints, then executed.
    let plan = exec.plan(&opts)?;
    let runs_something = plan.steps.iter().any(|s| matches!(s.decision, Decision::Run { .. } | Decision::Waits { .. }));
    if let (Some(check), true) = (registry.device_check(), runs_something) {
        check(p.device).map_err(|msg| p.error_at("device", format!("device `{}`: {msg}", p.device.as_str())))?;
    }
    if let Some(check) = registry.model_check() {
        for (name, remote) in remote_models(&p, &g, &plan) {
            check(remote).map_err(|msg| p.error_at(&format!("models.{name}.openai"), format!("model `{name}`: {msg}")))?;
        }
    }
    crate::executor::preflight(&p, &plan, remote.is_some())?;
    let outcome = exec.run(plan, opts.jobs);
    rep.finish();
    if a.pipeline.set.is_empty() {
        let mut entries = previous;
        entries.extend(outcome.entries.clone());
        write_lock(&p, entries)?;
    } else if !common.quiet {
        eprintln!("note: retort.lock not updated: this run used --set, so it is not the pipeline as written");
    }
    let failed = outcome.failed();
    print_summary(&p, outcome.stages.clone(), a.format);
    if let Some(s) = remote.as_deref().filter(|s| p.cache.remote_required && s.failure().is_some()) {
        return Err(super::remote_cmd::required_but_down(s));
    }
    if failed {
        let failed: Vec<&crate::StageSummary> = outcome.stages.iter().filter(|s| s.status == Status::Failed).collect();
        let message = format!("stage(s) failed: {}", failed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "));
        // Bad input data, like a bad pipeline file, is the user's to fix: exit 2.
        if failed.iter().all(|s| s.bad_input) {
            return Err(CliError::Usage(message));
        }
        return Err(CliError::Failed(message));
    }
    Ok(())
}

/// `retort plan`.
pub(super) fn plan(a: PlanArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, g) = load_checked(&a.pipeline, registry)?;
    let plan = plan_of(&p, &g, common, &a.select)?;
    print_summary(&p, plan.summary(&p), a.format);
    if a.exit_code && plan.has_work() {
        return Err(CliError::Failed(String::new()));
    }
    Ok(())
}

fn plan_of(p: &Pipeline, g: &Graph, common: &Common, select: &Selection) -> Result<Plan, CliError> {
    let store = open_store(common, p)?;
    let previous = read_lock(p)?;
    let exec = Executor { pipeline: p, graph: g, store: &store, previous: &previous, reporter: &QuietReporter as &dyn Reporter, remote: None };
    Ok(exec.plan(&options(select, None))?)
}

/// `retort status`: per stage, whether the lock file still describes it.
pub(super) fn status(a: PipelineArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, g) = load_checked(&a, registry)?;
    let plan = plan_of(&p, &g, common, &Selection::default())?;
    let locked = read_lock(&p)?;
    let w = p.stages.iter().map(|s| s.name.len()).max().unwrap_or(5);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    // Stages whose locked result this cache lacks (same fingerprint, or one
    // not known until upstream runs): a remote cache may hold them.
    let mut missing = Vec::new();
    for (step, s) in plan.steps.iter().zip(plan.summary(&p)) {
        let entry = locked.get(&s.name);
        let same = entry.is_some_and(|e| Some(e.fingerprint.to_string()) == s.fingerprint);
        let restores = matches!(&step.decision, Decision::Cached { restores, .. } if !restores.is_empty());
        let (word, why) = match (s.status, entry) {
            (Status::Cached, _) if restores => ("stale", s.reason.clone()),
            (Status::Cached, _) if same => ("up-to-date", String::new()),
            (Status::Cached, Some(_)) => ("cached", "in the cache, but retort.lock records another run".into()),
            (_, None) => ("new", s.reason.clone()),
            _ => ("stale", s.reason.clone()),
        };
        if let (Some(e), "stale" | "new") = (entry, word) {
            if s.fingerprint.as_ref().is_none_or(|fp| *fp == e.fingerprint.to_string()) {
                missing.push(e.fingerprint);
            }
        }
        *counts.entry(word).or_default() += 1;
        println!("{:<w$}  {:<10}  {}", s.name, word, why);
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("{}: {}", p.name, parts.join(", "));
    if let Some((url, held)) = super::remote_cmd::on_remote(&p, &missing).filter(|(_, n)| *n > 0) {
        println!(
            "{held} of the {} stage(s) whose retort.lock result is not in this cache have it on the remote cache {url}: `retort pull {}` fetches them",
            missing.len(),
            a.pipeline.display()
        );
    }
    Ok(())
}
