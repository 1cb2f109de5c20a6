//! `retort exec-stage` — what a Slurm job runs on its node (hidden from
//! `--help`: `retort run` writes this command into the batch script).
//!
//! It loads the same pipeline with the same `--set` overrides, plans the
//! stage against the shared cache (every stage it depends on is there: the
//! submitting run finished them first), checks that the fingerprint is the
//! one the submitting run planned, and executes the stage here, writing its
//! outputs and run record as a local run does. It takes no store lock: the
//! submitting `retort run` holds it for the whole run, and this process is
//! its hands on the node.
//!
//! With a remote cache (`--remote`, or the pipeline's `cache.remote`) the
//! node's cache can be its own (`executor.slurm.cache_dir`): what the stage
//! builds on is fetched from the remote on a local miss, as in any run, and
//! the result is pushed there for the submitting run to fetch.

use std::collections::BTreeMap;

use super::args::ExecStageArgs;
use super::lock::open_store;
use super::pipeline_cmd::load_checked;
use super::{CliError, Common};
use crate::events::reporter;
use crate::exec::{Decision, Executor, Options};
use crate::stage::Registry;

/// Executes the one stage; exit 1 if it fails, 2 if it is not the stage
/// that was submitted.
pub(super) fn exec_stage(a: ExecStageArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, g) = load_checked(&a.pipeline, registry)?;
    let Some(i) = p.stage_index(&a.stage) else {
        return Err(CliError::Usage(format!("{}: no stage named `{}`", p.file.display(), a.stage)));
    };
    let store = open_store(common, &p)?;
    let remote = super::remote_cmd::for_run(a.remote.remote.as_deref(), &p, &store)?;
    let previous = BTreeMap::new();
    let rep = reporter(common.log_format, common.quiet);
    let exec = Executor { pipeline: &p, graph: &g, store: &store, previous: &previous, reporter: rep.as_ref(), remote: remote.as_deref() };
    // Forced: the submitting run decided that the stage runs.
    let opts = Options { jobs: 1, only: vec![a.stage.clone()], from: vec![], force: vec![a.stage.clone()] };
    let plan = exec.plan(&opts)?;
    let step = plan.steps.into_iter().find(|s| s.stage == i).expect("the selected stage is planned");
    let result = match step.decision {
        Decision::Run { fingerprint, inputs, .. } if fingerprint.to_hex() == a.fingerprint => {
            exec.execute_here(i, fingerprint, inputs)
        }
        Decision::Run { fingerprint, .. } => {
            return Err(CliError::Usage(format!(
                "stage `{}` now has fingerprint {}, not the {} it was submitted with: the pipeline or an input \
                 changed after `retort run` planned it; run it again",
                a.stage,
                fingerprint.short(),
                a.fingerprint.get(..12).unwrap_or(&a.fingerprint)
            )))
        }
        Decision::Waits { upstream } => Err(format!(
            "upstream stage `{upstream}` has no run in the cache at {}: this node must see the cache directory of \
             the `retort run` that submitted the job (a shared filesystem), or a remote cache that has it",
            store.root().display()
        )),
        Decision::Unreadable { error } => Err(error),
        Decision::Skipped { reason } => Err(reason),
        Decision::Cached { .. } => unreachable!("a forced stage is never cached"),
    };
    rep.finish();
    result.map(|_| ()).map_err(|e| CliError::Failed(format!("stage `{}` failed: {e}", a.stage)))
}
