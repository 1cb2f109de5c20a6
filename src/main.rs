//! The `retort` binary: the engine's CLI with this workspace's stage kinds.

use std::process::ExitCode;

use clap::Parser;
use retort_engine::cli::{main_impl, Command, Common};

/// Run LLM self-improvement recipes from YAML, re-running only what changed.
#[derive(Parser, Debug)]
#[command(name = "retort", version, about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    main_impl(cli.command, &cli.common, &retort_stages::registry())
}
