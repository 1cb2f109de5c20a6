//! Checking, before anything runs, that the stages headed for Slurm can be
//! submitted.
//!
//! Without `sbatch`, or with options the cluster refuses (a partition that
//! does not exist, more GPUs than any node has, a malformed time limit), the
//! first Slurm stage would fail only after the local stages before it had
//! run. `sbatch --test-only` asks the controller whether it would accept the
//! job without submitting one. A failure is bad input: an error at the
//! `executor:` key that gave the stage its options, exit 2, nothing run.

use std::collections::BTreeSet;
use std::time::Duration;

use super::config::SlurmSpec;
use super::slurm::submit_error;
use super::tool::{self, ToolError};
use crate::error::SpecError;
use crate::exec::{Decision, Plan};
use crate::source::join;
use crate::spec::Pipeline;

/// Fails on the first stage that would run on Slurm but cannot be submitted,
/// or whose node has a cache of its own (`cache_dir:`) when the run has no
/// remote cache (`has_remote`) to move inputs and results through.
pub fn check(p: &Pipeline, plan: &Plan, has_remote: bool) -> Result<(), SpecError> {
    let mut checked: BTreeSet<Vec<String>> = BTreeSet::new();
    for step in &plan.steps {
        if !matches!(step.decision, Decision::Run { .. } | Decision::Waits { .. }) {
            continue;
        }
        let node = &p.stages[step.stage];
        let Some(spec) = node.executor.slurm() else { continue };
        let at = executor_key(p, &node.name);
        if let (Some(dir), false) = (&spec.cache_dir, has_remote) {
            return Err(p
                .error_at(&at, format!("stage `{}`: its node's cache_dir {} is a cache of the node's own, but this run has no remote cache", node.name, dir.display()))
                .help("set `cache: {remote: s3://bucket/prefix}` (or --remote) so the job can fetch its inputs and push its result; or remove `cache_dir` when the node shares this machine's cache directory"));
        }
        if tool::which("sbatch").is_none() {
            let e = ToolError::Missing { program: "sbatch".into() };
            return Err(p.error_at(&at, format!("stage `{}` runs on Slurm, but {e}", node.name)).help(
                "install Slurm's client commands (Debian: slurm-client) where `retort run` runs, with access to the \
                 cluster; or run the stage here with `executor: local`",
            ));
        }
        if checked.insert(spec.sbatch_args()) {
            test_only(spec).map_err(|why| {
                p.error_at(&at, format!("stage `{}`: Slurm refuses its job: {why}", node.name))
                    .help("fix the stage's `executor: slurm:` options (`sinfo` lists partitions and nodes)")
            })?;
        }
    }
    Ok(())
}

/// The key that set the stage's executor: its own, or the pipeline's.
fn executor_key(p: &Pipeline, stage: &str) -> String {
    let at = join("stages", stage);
    let own = join(&at, "executor");
    // `key` falls back to the nearest ancestor: the stage's own key has a
    // position of its own only if it is written.
    if p.source.key(&own) != p.source.key(&at) {
        own
    } else {
        "executor".into()
    }
}

/// `sbatch --test-only`: the controller's verdict on a job with these
/// options, without submitting one.
fn test_only(spec: &SlurmSpec) -> Result<(), String> {
    let mut args = vec!["--test-only".to_string(), "--job-name=retort-preflight".into()];
    args.extend(spec.sbatch_args());
    args.push("--wrap=true".into());
    match tool::run("sbatch", &args, Duration::from_secs(60)) {
        Ok(_) => Ok(()),
        Err(ToolError::Failed { stderr, .. }) => Err(stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")),
        Err(e) => Err(submit_error(&e)),
    }
}
