//! Running one stage as a Slurm job, from the engine's side.
//!
//! The engine has planned the stage and knows its fingerprint. This writes
//! the batch script, submits it with `sbatch`, and waits: it polls
//! `scontrol show job` (no accounting storage is assumed, so no `sacct`),
//! reports each change of the job's state as an [`Event::Job`], and copies
//! the job's log into the stage log as it grows. The job runs `retort
//! exec-stage` on the node, which writes the outputs and the run record
//! into the shared cache exactly as a local run does (temp dir, rename);
//! once the job has completed, the record is read back from the cache and
//! the stage is done as if it had run here.
//!
//! A job that ends any other way (FAILED, TIMEOUT, CANCELLED, PREEMPTED,
//! NODE_FAIL, OUT_OF_MEMORY) recorded nothing, so the store holds no trace
//! of it but its log, and the next run submits the stage again.

use std::time::Duration;

use retort_cache::{Hash, RunRecord, Store};

use super::cancel::{self, SubmitError};
use super::config::SlurmSpec;
use super::job_state::{self, JobInfo};
use super::log_tail::LogTail;
use super::script::{sbatch_args, JobFiles, NodeCommand};
use super::tool::{self, ToolError};
use crate::events::{Event, Reporter};
use crate::spec::Pipeline;

/// Polls start this often, and slow down to [`POLL_MAX`] while nothing
/// changes; a change of state starts them over.
const POLL_MIN: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(2);
/// `scontrol` failing this many times in a row (about a minute at
/// [`POLL_MAX`]) gives up on the job, and cancels it.
const MAX_QUERY_FAILURES: u32 = 30;

/// One stage to run on Slurm.
pub struct Submission<'a> {
    /// The pipeline (its file and `--set` overrides are handed to the node).
    pub pipeline: &'a Pipeline,
    /// The stage's name.
    pub stage: &'a str,
    /// Its fingerprint.
    pub fingerprint: Hash,
    /// The store: the node writes into it, the engine reads the record back.
    pub store: &'a Store,
    /// Where the job's states and log lines go.
    pub reporter: &'a dyn Reporter,
    /// The run's remote cache, if it has one: how a node with a cache
    /// directory of its own (`cache_dir:`) gets the stage's inputs and
    /// hands back its result.
    pub remote: Option<&'a retort_remote::Session>,
    /// The runs of every stage this one builds on (upstream, transitively),
    /// which such a node fetches to plan the stage as this machine did.
    pub ancestors: Vec<(Hash, RunRecord)>,
}

impl Submission<'_> {
    /// Submits the job, waits for it to end, and returns the run it
    /// recorded, or why there is none.
    pub fn run(&self, spec: &SlurmSpec) -> Result<RunRecord, String> {
        let node_root = spec.cache_dir.as_deref();
        let files = JobFiles::new(self.store.root(), node_root, &self.fingerprint, self.stage);
        if let Some(root) = node_root {
            self.hand_over(root)?;
        }
        self.write_script(&files, node_root)?;
        let args = sbatch_args(spec, self.stage, &files, &self.pipeline.dir);
        let id = cancel::submit(|| submit(&args)).map_err(|e| match e {
            SubmitError::Interrupted => "interrupted before the job was submitted".to_string(),
            SubmitError::Failed(e) => submit_error(&e),
        })?;
        let mut log = LogTail::new(&files.log(&id), self.stage);
        let ended = self.wait(&id, &mut log);
        cancel::forget(&id);
        let info = ended?;
        if info.state == "COMPLETED" {
            return self.record(&id);
        }
        Err(failure(&id, &info, &log))
    }

    /// Puts what the stage builds on where a node with its own cache
    /// directory finds it: on the remote.
    fn hand_over(&self, node_root: &std::path::Path) -> Result<(), String> {
        let Some(remote) = self.remote else {
            return Err(format!(
                "executor.slurm.cache_dir is {}, a cache of the node's own, but this run has no remote cache to move \
                 inputs and results through: set `cache: {{remote: s3://...}}` (or --remote), or remove cache_dir to \
                 share this machine's cache directory",
                node_root.display()
            ));
        };
        if !remote.push_runs(self.store, &self.ancestors) {
            return Err(format!(
                "cannot hand the stage's inputs to the node: pushing them to {} failed{}",
                remote.remote().url(),
                remote.failure().map(|f| format!(" ({f})")).unwrap_or_else(|| ": some are missing from the local cache".into())
            ));
        }
        Ok(())
    }

    fn write_script(&self, files: &JobFiles, node_root: Option<&std::path::Path>) -> Result<(), String> {
        let retort = std::env::current_exe().map_err(|e| format!("cannot find the retort binary to run on the node: {e}"))?;
        let pipeline = self.pipeline.dir.join(self.pipeline.file.file_name().unwrap_or_default());
        let cmd = NodeCommand {
            retort: &retort,
            cache_dir: node_root.unwrap_or(self.store.root()),
            pipeline: &pipeline,
            overrides: &self.pipeline.overrides,
            stage: self.stage,
            fingerprint: &self.fingerprint,
            remote: self.remote.map(|r| r.remote().url()),
            log: files.log_on_node.then_some(files.log_pattern.as_path()),
        };
        let dir = files.script.parent().expect("the script is in slurm/");
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Written whole, then renamed: a job never starts on half a script.
        let tmp = files.script.with_extension("sh.tmp");
        std::fs::write(&tmp, cmd.script())
            .and_then(|()| std::fs::rename(&tmp, &files.script))
            .map_err(|e| format!("cannot write the batch script {}: {e}", files.script.display()))
    }

    /// Polls until the job has ended, copying its log as it goes.
    fn wait(&self, id: &str, log: &mut LogTail) -> Result<JobInfo, String> {
        let mut emit = |line: String| self.reporter.event(&Event::Log { stage: self.stage.to_string(), message: line });
        emit(format!("submitted slurm job {id}; its log: {}", log.path().display()));
        let mut last: Option<JobInfo> = None;
        let (mut interval, mut failures) = (POLL_MIN, 0);
        loop {
            log.poll(&mut emit);
            match job_state::query(id) {
                Ok(Some(info)) => {
                    failures = 0;
                    if last.as_ref().is_none_or(|l| (&l.state, &l.reason) != (&info.state, &info.reason)) {
                        self.report(id, &info);
                        interval = POLL_MIN;
                    }
                    if info.is_final() {
                        log.finish(&mut emit);
                        return Ok(info);
                    }
                    last = Some(info);
                }
                // Purged from the controller: it ended more than `MinJobAge`
                // ago. Whether it ran to the end shows in the cache.
                Ok(None) => {
                    log.finish(&mut emit);
                    let state = if self.recorded() { "COMPLETED" } else { "UNKNOWN" };
                    return Ok(JobInfo { state: state.into(), reason: Some("no longer known to slurmctld".into()), exit_code: None });
                }
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_QUERY_FAILURES {
                        cancel::scancel(&[id.to_string()]);
                        return Err(format!("lost track of slurm job {id} (cancelled it): {e}"));
                    }
                }
            }
            std::thread::sleep(interval);
            interval = (interval * 5 / 4).min(POLL_MAX);
        }
    }

    /// Whether the job's run is in the cache, or on the remote (from a node
    /// with a cache of its own).
    fn recorded(&self) -> bool {
        let fp = &self.fingerprint;
        self.store.get_run(fp).ok().flatten().is_some()
            || self.remote.is_some_and(|r| matches!(r.remote().verify_run(fp), Ok(retort_remote::RemoteState::Valid)))
    }

    fn report(&self, id: &str, info: &JobInfo) {
        self.reporter.event(&Event::Job {
            stage: self.stage.to_string(),
            executor: "slurm".into(),
            job_id: id.to_string(),
            state: info.state.clone(),
            reason: info.reason.clone(),
        });
    }

    /// The run the job recorded in the cache (or, from a node with a cache
    /// of its own, pushed to the remote).
    fn record(&self, id: &str) -> Result<RunRecord, String> {
        let local = self.store.get_run(&self.fingerprint);
        if let (Ok(None), Some(remote)) = (&local, self.remote) {
            if let Some(record) = remote.fetch_run(self.store, &self.fingerprint) {
                return Ok(record);
            }
        }
        match local {
            Ok(Some(record)) => Ok(record),
            Ok(None) if self.remote.is_some() => Err(format!(
                "slurm job {id} completed but neither this cache ({}) nor the remote has a run for fingerprint {}: \
                 the node must reach one of them",
                self.store.root().display(),
                self.fingerprint.short()
            )),
            Ok(None) => Err(format!(
                "slurm job {id} completed but recorded no run for fingerprint {} in {}: the node must reach this \
                 cache directory at the same path (a shared filesystem)",
                self.fingerprint.short(),
                self.store.root().display()
            )),
            Err(e) => Err(format!("slurm job {id} completed, but its run record cannot be read: {e}")),
        }
    }
}

/// `sbatch --parsable ...` -> the job id (`42`, or `42;cluster`).
fn submit(args: &[String]) -> Result<String, ToolError> {
    let out = tool::run("sbatch", args, Duration::from_secs(60))?;
    let id = out.stdout.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(ToolError::Failed { program: "sbatch".into(), status: "no job id".into(), stderr: out.stdout.trim().to_string() });
    }
    Ok(id)
}

/// What went wrong submitting, and what to do about it.
pub fn submit_error(e: &ToolError) -> String {
    match e {
        ToolError::Missing { .. } => {
            format!("{e}: install Slurm's client commands (Debian: slurm-client) on this machine, or set `executor: local`")
        }
        _ => format!("sbatch could not submit the job: {e}; check the stage's `executor: slurm:` options (`sinfo` lists partitions)"),
    }
}

/// Why the stage failed: the job's id, end state, exit code, a hint for the
/// states that have one, and the last lines of its log.
fn failure(id: &str, info: &JobInfo, log: &LogTail) -> String {
    let hint = match info.state.as_str() {
        "TIMEOUT" => "; it ran past its time limit: raise `executor.slurm.time`",
        "OUT_OF_MEMORY" => "; it ran out of memory: raise `executor.slurm.mem`",
        "CANCELLED" | "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL" => "; the next run submits it again",
        _ => "",
    };
    let tail = log.tail();
    let shown = if tail.is_empty() {
        format!("; its log {} is empty", log.path().display())
    } else {
        format!("\nlog {} (last {} lines):\n{}", log.path().display(), tail.len(), tail.join("\n"))
    };
    format!("slurm job {id} ended {} with {}{hint}{shown}", info.describe(), info.exit_text())
}
