//! The `retort` binary: the engine's CLI with this workspace's stage kinds,
//! plus `sample`, which needs the model runtime.

mod report;
mod sample;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use retort_engine::cli::{main_impl, Command, Common};

/// Run LLM self-improvement recipes from YAML, re-running only what changed.
#[derive(Parser, Debug)]
#[command(name = "retort", version, about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    #[command(flatten)]
    Engine(Command),
    /// Generate from a model (a .gguf file or a checkpoint directory).
    Sample(sample::SampleArgs),
    /// Write one self-contained HTML file: the stage graph, training curves,
    /// evaluations, the first rows of each dataset, the lock's fingerprints.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Top::Engine(command) => main_impl(command, &cli.common, &retort_stages::registry()),
        Top::Sample(args) => sample::run(args),
        Top::Report(args) => report::run(args, &cli.common, &retort_stages::registry()),
    }
}
