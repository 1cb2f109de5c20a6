//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::events::LogFormat;

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Cache directory [default: `.retort/` next to the pipeline file].
    #[arg(long, env = "RETORT_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// How to show progress: bars on a terminal, plain lines, or JSON lines (on stderr).
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
    /// Show no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Output format of a summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Human,
    /// One JSON object.
    Json,
}

/// The engine's subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline: execute what changed, reuse the rest from the cache.
    Run(RunArgs),
    /// Show what `run` would execute and why; executes nothing.
    Plan(PlanArgs),
    /// Compare the lock file with the pipeline as it is now.
    Status(PipelineArgs),
    /// Check a pipeline file (types, references, cycles, files) without running it.
    Validate(PipelineArgs),
    /// Print the stage graph as Graphviz dot or Mermaid.
    Graph(GraphArgs),
    /// Print a stored output of a stage (or its path, or its metrics).
    Show(ShowArgs),
    /// Print the JSON Schema of pipeline files.
    Schema,
    /// Inspect and clean the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Internal: execute one stage here, as the Slurm job that `retort run`
    /// submitted for it (not for users, so hidden from `--help`).
    #[command(hide = true)]
    ExecStage(ExecStageArgs),
    /// Upload what the lock file references (runs, objects) and the item logs to the remote cache.
    Push(RemoteArgs),
    /// Download what the lock file references from the remote cache.
    Pull(RemoteArgs),
}

/// `retort push|pull`: a pipeline and the remote.
#[derive(Args, Debug)]
pub struct RemoteArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub remote: RemoteFlag,
}

/// The remote cache to use instead of the pipeline's `cache.remote`.
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteFlag {
    /// Remote cache, `s3://bucket/prefix` [default: `cache.remote` of the pipeline].
    #[arg(long, env = "RETORT_REMOTE", value_name = "URL")]
    pub remote: Option<String>,
}

/// `retort cache verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Check the remote cache instead of the local one (given a URL, that
    /// remote; alone, `RETORT_REMOTE` or the pipeline's `cache.remote`).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,
}

/// A pipeline file and `--set` overrides.
#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// The pipeline file (YAML).
    pub pipeline: PathBuf,
    /// Override a value of the file, e.g. `--set stages.train.lr=0.1` (also
    /// `stages.train.params.lr=0.1`; for `command` stages, `params.` is its `params:`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Which stages to consider.
#[derive(Args, Debug, Clone, Default)]
pub struct Selection {
    /// Run only these stages (plus what they need that is not cached).
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Run these stages and everything downstream of them.
    #[arg(long, value_name = "STAGE")]
    pub from: Vec<String>,
    /// Execute these stages even if they are cached.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
}

/// `retort run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub select: Selection,
    /// Stages to run at once [default: number of CPUs].
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub remote: RemoteFlag,
}

/// `retort plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub select: Selection,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Exit with 1 when anything would run.
    #[arg(long)]
    pub exit_code: bool,
}

/// Graph formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// `retort graph`.
#[derive(Args, Debug)]
pub struct GraphArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// `retort show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// `STAGE` or `STAGE.OUTPUT`.
    pub target: String,
    /// Print only the first N rows.
    #[arg(long, value_name = "N")]
    pub head: Option<usize>,
    /// Print the stored object's path (on the last line) instead of its content.
    #[arg(long)]
    pub path: bool,
    /// Print the stage's metrics, and the per-step table of a stage with a
    /// `metrics` output (training stages).
    #[arg(long)]
    pub metrics: bool,
    /// Format of `--metrics`.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// `retort cache ...`.
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List cached runs, newest first.
    Ls(CacheArgs),
    /// Disk usage of the cache.
    Du(CacheArgs),
    /// Delete what the pipelines' lock files do not reference.
    Gc(GcArgs),
    /// Re-hash every object the pipeline's lock file references.
    Verify(VerifyArgs),
}

/// A cache, named directly or through a pipeline.
#[derive(Args, Debug)]
pub struct CacheArgs {
    /// A pipeline file whose cache to use.
    pub pipeline: Option<PathBuf>,
}

/// `retort cache gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Pipelines whose current lock files say what to keep.
    #[arg(required = true)]
    pub pipelines: Vec<PathBuf>,
    /// Also keep the N most recent runs (and their objects).
    #[arg(long, default_value_t = 0)]
    pub keep: usize,
    /// Only report what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

/// `retort exec-stage` (internal: what a Slurm job runs).
#[derive(Args, Debug)]
pub struct ExecStageArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// The stage to execute.
    #[arg(long)]
    pub stage: String,
    /// Its fingerprint as the submitting run planned it; another one (the
    /// pipeline or an input changed meanwhile) is refused.
    #[arg(long)]
    pub fingerprint: String,
    #[command(flatten)]
    pub remote: RemoteFlag,
}
