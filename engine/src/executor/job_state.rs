//! A Slurm job's state, read from `scontrol show job -o ID`.
//!
//! There is no accounting storage (`sacct`) on every cluster, ours included,
//! so the controller's own record is the source: it keeps a finished job
//! for `MinJobAge` (300 s by default), long after we have looked.

use std::time::Duration;

use super::tool::{self, ToolError};

/// What `scontrol` says about a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInfo {
    /// `JobState`: PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, TIMEOUT...
    pub state: String,
    /// `Reason`: why it waits or why it ended (`Resources`, `NonZeroExitCode`);
    /// `None` when Slurm says `None`.
    pub reason: Option<String>,
    /// `ExitCode=CODE:SIGNAL`.
    pub exit_code: Option<(i32, i32)>,
}

/// States after which a job never runs again by itself. (A preempted job
/// that Slurm requeues goes back to PENDING, and we keep waiting.)
const FINAL: [&str; 11] = [
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "PREEMPTED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
    "SPECIAL_EXIT",
];

impl JobInfo {
    /// Whether the job has ended for good.
    pub fn is_final(&self) -> bool {
        FINAL.contains(&self.state.as_str())
    }

    /// `PENDING (Resources)`, `RUNNING`.
    pub fn describe(&self) -> String {
        match &self.reason {
            Some(r) => format!("{} ({r})", self.state),
            None => self.state.clone(),
        }
    }

    /// `exit code 1`, `exit code 0, signal 9`, or `no exit code`.
    pub fn exit_text(&self) -> String {
        match self.exit_code {
            Some((code, 0)) => format!("exit code {code}"),
            Some((code, sig)) => format!("exit code {code}, signal {sig}"),
            None => "no exit code".into(),
        }
    }

    /// Reads the one-line record (`scontrol -o`): space-separated
    /// `Key=Value` fields. Only fields whose values hold no spaces are read.
    pub fn parse(line: &str) -> Option<JobInfo> {
        let field = |key: &str| {
            line.split_whitespace().find_map(|tok| tok.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        };
        let state = field("JobState")?.to_string();
        let reason = field("Reason").filter(|r| *r != "None").map(str::to_string);
        let exit_code = field("ExitCode").and_then(|e| {
            let (c, s) = e.split_once(':')?;
            Some((c.parse().ok()?, s.parse().ok()?))
        });
        Some(JobInfo { state, reason, exit_code })
    }
}

/// The job's current record; `Ok(None)` when the controller no longer knows
/// the id (purged after `MinJobAge`, or never existed).
pub fn query(id: &str) -> Result<Option<JobInfo>, ToolError> {
    let args = ["show".to_string(), "job".into(), "-o".into(), id.to_string()];
    match tool::run("scontrol", &args, Duration::from_secs(30)) {
        Ok(out) => Ok(out.stdout.lines().find_map(JobInfo::parse)),
        Err(ToolError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as Slurm 22.05 prints it (trimmed).
    const FAILED: &str = "JobId=1 JobName=j.sh UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 \
        Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 \
        BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=UNLIMITED Command=/tmp/j.sh WorkDir=/tmp";

    #[test]
    fn reads_state_reason_and_exit_code() {
        let info = JobInfo::parse(FAILED).unwrap();
        assert_eq!(info, JobInfo { state: "FAILED".into(), reason: Some("NonZeroExitCode".into()), exit_code: Some((3, 0)) });
        assert!(info.is_final());
        assert_eq!((info.describe(), info.exit_text()), ("FAILED (NonZeroExitCode)".into(), "exit code 3".into()));
        let pending = JobInfo::parse("JobId=2 JobState=PENDING Reason=Resources ExitCode=0:0").unwrap();
        assert!(!pending.is_final());
        let running = JobInfo::parse("JobId=2 JobState=RUNNING Reason=None ExitCode=0:15").unwrap();
        assert_eq!((running.describe(), running.exit_text()), ("RUNNING".into(), "exit code 0, signal 15".into()));
        assert_eq!(JobInfo::parse("slurm_load_jobs error: Invalid job id specified"), None);
    }
}
