//! The `retort` command line (everything but `sample`, which needs the model
//! runtime and lives in the binary).

mod args;
mod cache_cmd;
mod exec_stage;
mod inspect;
mod lock;
mod pipeline_cmd;
mod remote_cmd;

pub use args::{CacheCommand, Command, Common, Format};
pub use lock::{cache_dir, lock_path, read_lock, write_lock};

use std::process::ExitCode;

use crate::error::SpecError;
use crate::stage::Registry;

/// Why a command failed, and so which exit code it gets.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input from the user: exit 2.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Bad input that is not about a pipeline file: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The command ran and reports failure (a stage failed, `verify`
    /// found corrupt objects, `plan --exit-code` found work): exit 1, its
    /// output already printed.
    #[error("{0}")]
    Failed(String),
    /// Anything else (I/O, a broken cache): exit 1.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<retort_cache::CacheError> for CliError {
    fn from(e: retort_cache::CacheError) -> Self {
        CliError::Other(e.into())
    }
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Spec(_) | CliError::Usage(_) => 2,
            CliError::Failed(_) | CliError::Other(_) => 1,
        }
    }
}

/// Runs one engine command and turns the result into an exit code,
/// printing errors to stderr.
pub fn main_impl(command: Command, common: &Common, registry: &Registry) -> ExitCode {
    match dispatch(command, common, registry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                CliError::Failed(msg) if msg.is_empty() => {}
                CliError::Other(err) => eprintln!("error: {err:#}"),
                other => eprintln!("error: {other}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(command: Command, common: &Common, registry: &Registry) -> Result<(), CliError> {
    match command {
        Command::Run(a) => pipeline_cmd::run(a, common, registry),
        Command::Plan(a) => pipeline_cmd::plan(a, common, registry),
        Command::Status(a) => pipeline_cmd::status(a, common, registry),
        Command::Validate(a) => inspect::validate(a, common, registry),
        Command::Graph(a) => inspect::graph(a, common, registry),
        Command::Show(a) => inspect::show(a, common, registry),
        Command::Schema => inspect::schema(registry),
        Command::Cache(c) => cache_cmd::cache(c, common, registry),
        Command::ExecStage(a) => exec_stage::exec_stage(a, common, registry),
        Command::Push(a) => remote_cmd::push(a, common, registry),
        Command::Pull(a) => remote_cmd::pull(a, common, registry),
    }
}
