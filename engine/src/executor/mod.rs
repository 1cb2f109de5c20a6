//! Where a stage executes: in this process (`local`, the default) or as a
//! Slurm job (`slurm:`), chosen by the `executor:` key.
//!
//! The engine always plans and fingerprints here. A stage with a Slurm
//! executor that misses the cache is submitted with `sbatch`; the job runs
//! `retort exec-stage` on a node, which executes exactly that stage against
//! the same (shared) cache directory, and the waiting engine picks the
//! result up from the cache as if the stage had run here.
//!
//! `config` is the `executor:` key, `preflight` the checks before a run,
//! `slurm` one submission from submit to result (with `script`, `job_state`,
//! `log_tail` and `tool` for its parts), and `cancel` the Ctrl-C handling.

mod cancel;
mod config;
mod job_state;
mod log_tail;
mod preflight;
mod script;
mod slurm;
mod tool;

pub use config::{ExecutorSpec, SlurmSpec};
pub(crate) use preflight::check as preflight;
pub(crate) use script::gc;
pub(crate) use slurm::Submission;
