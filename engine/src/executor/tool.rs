//! Running one of Slurm's client commands (`sbatch`, `scontrol`, `scancel`)
//! with a time limit.
//!
//! A controller that hangs would otherwise hang `retort run` with it: the
//! clients retry their connection for a long time. A command past its limit
//! is killed and reported as such.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a client command gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program is not on `PATH`.
    #[error("`{program}` is not on PATH")]
    Missing {
        /// The program.
        program: String,
    },
    /// It could not be started, or its output not read.
    #[error("cannot run `{program}`: {source}")]
    Io {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran past its limit and was killed.
    #[error("`{program}` did not answer within {secs} s (is slurmctld up? try `scontrol ping`)")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        secs: u64,
    },
    /// It exited non-zero.
    #[error("`{program}` failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status, as text.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
}

/// What a successful command printed.
#[derive(Debug)]
pub struct ToolOutput {
    /// Standard output.
    pub stdout: String,
}

/// Runs `program args...`, killing it after `limit`; non-zero exit is an error.
pub fn run(program: &str, args: &[String], limit: Duration) -> Result<ToolOutput, ToolError> {
    let io = |source| ToolError::Io { program: program.to_string(), source };
    let mut child = match Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ToolError::Missing { program: program.to_string() }),
        Err(e) => return Err(io(e)),
    };
    // Both pipes are drained on their own threads, so a chatty command
    // never blocks on a full pipe while we wait for it.
    let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let out = std::thread::spawn(move || read_all(&mut out));
    let err = std::thread::spawn(move || read_all(&mut err));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(io)? {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ToolError::Timeout { program: program.to_string(), secs: limit.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let status = status.code().map_or_else(|| "killed by a signal".to_string(), |c| format!("exit code {c}"));
        return Err(ToolError::Failed { program: program.to_string(), status, stderr: stderr.trim().to_string() });
    }
    Ok(ToolOutput { stdout })
}

fn read_all(r: &mut impl Read) -> String {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Where `program` is on `PATH`, if anywhere.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_timeouts_and_missing_programs_are_told_apart() {
        let ok = run("sh", &["-c".into(), "echo out; echo err >&2".into()], Duration::from_secs(10)).unwrap();
        assert_eq!(ok.stdout, "out\n");
        let failed = run("sh", &["-c".into(), "echo why >&2; exit 3".into()], Duration::from_secs(10)).unwrap_err();
        assert_eq!(failed.to_string(), "`sh` failed (exit code 3): why");
        let slow = run("sleep", &["5".into()], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(slow, ToolError::Timeout { .. }), "{slow}");
        let missing = run("retort-no-such-program", &[], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(missing, ToolError::Missing { .. }), "{missing}");
        assert!(which("sh").is_some() && which("retort-no-such-program").is_none());
    }
}
