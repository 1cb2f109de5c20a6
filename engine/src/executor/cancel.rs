//! Ctrl-C cancels what this run submitted.
//!
//! A job outlives the `retort run` that submitted it, so a user who stops
//! the run with Ctrl-C (or a CI timeout that sends SIGTERM) would otherwise
//! leave jobs queued and running. Every submission goes through
//! [`submit`], which records the job id; the first submission installs a
//! handler for SIGINT and SIGTERM that `scancel`s every job still recorded
//! and then exits as the signal would have (130 or 143). A run that submits
//! nothing keeps the default handling.
//!
//! Submitting holds the record's lock, so a signal that arrives while
//! `sbatch` is running waits for its id and cancels that job too, and no
//! submission starts after the signal.

use std::collections::BTreeSet;
use std::sync::{Mutex, Once};
use std::time::Duration;

use super::tool;

#[derive(Default)]
struct Submitted {
    ids: BTreeSet<String>,
    interrupted: bool,
}

static SUBMITTED: Mutex<Submitted> = Mutex::new(Submitted { ids: BTreeSet::new(), interrupted: false });
static HANDLER: Once = Once::new();

/// Why a submission did not happen.
#[derive(Debug)]
pub enum SubmitError<E> {
    /// The run is being interrupted.
    Interrupted,
    /// Submitting failed.
    Failed(E),
}

/// Runs `sbatch` (the closure, which returns the job id) with the id
/// recorded for cancelling before any signal can be handled.
pub fn submit<E>(sbatch: impl FnOnce() -> Result<String, E>) -> Result<String, SubmitError<E>> {
    HANDLER.call_once(install);
    let mut s = lock();
    if s.interrupted {
        return Err(SubmitError::Interrupted);
    }
    let id = sbatch().map_err(SubmitError::Failed)?;
    s.ids.insert(id.clone());
    Ok(id)
}

/// The job has ended (or has been cancelled by us): nothing to cancel.
pub fn forget(id: &str) {
    lock().ids.remove(id);
}

/// `scancel`s the given jobs, reporting a failure on stderr (there is no
/// one else to report it to).
pub fn scancel(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = tool::run("scancel", ids, Duration::from_secs(30)) {
        say(&format!("warning: could not cancel Slurm job(s) {}: {e}", ids.join(", ")));
    }
}

/// A line on stderr; never panics (`eprintln!` does when stderr is closed,
/// and a closed stderr must not stop the cancelling).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn lock() -> std::sync::MutexGuard<'static, Submitted> {
    SUBMITTED.lock().unwrap_or_else(|e| e.into_inner())
}

fn install() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("warning: cannot handle Ctrl-C ({e}): jobs of an interrupted run must be cancelled by hand"));
            return;
        }
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let ids: Vec<String> = {
                let mut s = lock();
                s.interrupted = true;
                std::mem::take(&mut s.ids).into_iter().collect()
            };
            if !ids.is_empty() {
                say(&format!("interrupted: cancelling Slurm job(s) {}", ids.join(", ")));
                scancel(&ids);
            }
            std::process::exit(128 + sig);
        }
    });
}
