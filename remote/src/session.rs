//! The remote as one `retort run` uses it: every operation is best effort,
//! and the first failure switches the remote off for the rest of the run,
//! with one warning. The run then goes on with the local cache alone, or,
//! when the pipeline says `remote_required: true`, the caller turns the
//! recorded failure into an error (exit 2) once the local work is saved.

use std::sync::{Arc, Mutex};

use retort_cache::{Hash, ItemSource, RunRecord, Store};

use crate::client::Remote;
use crate::error::RemoteError;

/// A remote for the length of one command.
#[derive(Debug)]
pub struct Session {
    remote: Remote,
    required: bool,
    failure: Mutex<Option<String>>,
}

impl Session {
    /// Wraps `remote`; `required` only changes the warning's wording (the
    /// caller decides the exit code from [`Session::failure`]).
    pub fn new(remote: Remote, required: bool) -> Session {
        Session { remote, required, failure: Mutex::default() }
    }

    /// The client.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// Why the remote was switched off, if it was.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("failure lock").clone()
    }

    /// Runs `op` unless the remote is off; a failure switches it off.
    fn attempt<T>(&self, op: impl FnOnce(&Remote) -> Result<T, RemoteError>) -> Option<T> {
        if self.failure().is_some() {
            return None;
        }
        match op(&self.remote) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut failure = self.failure.lock().expect("failure lock");
                if failure.is_none() {
                    let then = match self.required {
                        true => "finishing the local work, then failing (cache.remote_required is true)",
                        false => "going on with the local cache only",
                    };
                    eprintln!("warning: remote cache unavailable: {e}; {then}");
                    *failure = Some(e.to_string());
                }
                None
            }
        }
    }

    /// Whether the remote answers (see [`Remote::probe`]).
    pub fn probe(&self) -> bool {
        self.attempt(Remote::probe).is_some()
    }

    /// On a local miss: the run of `fp` from the remote, now in `store`.
    pub fn fetch_run(&self, store: &Store, fp: &Hash) -> Option<RunRecord> {
        self.attempt(|r| r.fetch_run(store, fp)).flatten()
    }

    /// Before a Slurm job on a node with a cache of its own: the runs its
    /// stage builds on, so that the node can fetch them. `false` if the
    /// remote failed or the local store lacks some of their outputs.
    pub fn push_runs(&self, store: &Store, runs: &[(Hash, RunRecord)]) -> bool {
        self.attempt(|r| r.push_runs(store, runs)).is_some_and(|report| report.missing_locally == 0)
    }

    /// After a stage ran: its outputs and record.
    pub fn push_run(&self, store: &Store, fp: &Hash, rec: &RunRecord) {
        self.attempt(|r| r.push_runs(store, &[(*fp, rec.clone())]));
    }

    /// After a stage ran or failed: a copy of every item log this process
    /// opened, so another machine resumes from its items.
    pub fn push_open_items(&self, store: &Store) {
        for (ns, log) in store.open_item_logs() {
            if self.attempt(|r| r.push_items(&ns, log.snapshot())).is_none() {
                return;
            }
        }
    }

    /// An [`ItemSource`] for the local store: a namespace opened for the
    /// first time gets the remote's copies of its log merged in.
    pub fn item_source(self: &Arc<Self>) -> ItemSource {
        let me = self.clone();
        ItemSource(Arc::new(move |ns: &Hash| me.attempt(|r| r.item_copies(ns)).unwrap_or_default()))
    }
}
