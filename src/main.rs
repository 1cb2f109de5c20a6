//! The `retort` binary: the engine's CLI with this workspace's stage kinds,
//! plus `sample`, which needs the model runtime.

mod report;
mod sample;

use std::process::ExitCode;

/// burn allocates a fresh buffer for most tensor operations; a model's
/// larger tensors (SmolLM2's embedding and its optimizer moments, 113 MB
/// each) are over glibc's mmap threshold, so each such buffer was mapped,
/// zeroed page by page and unmapped again. mimalloc keeps freed memory for
/// the next allocation, and [`keep_freed_memory`] tells it never to hand it
/// back to the kernel.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the sys crate names
/// the options around it, not this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc's purge delay to -1: freed memory stays mapped for reuse.
/// With the default (10 ms) a buffer freed between two optimizer steps is
/// decommitted and faulted back in, zeroed, at the next: measured on
/// SmolLM2's influence probes, 10 s of a 26 s run in the kernel, against 2.4
/// s without purging (BENCHMARKS.md, "The allocator"). The cost: the
/// process keeps its peak memory until it exits.
fn keep_freed_memory() {
    // SAFETY: called once at the start of `main`, before any other thread
    // exists (mimalloc documents `mi_option_set` as not thread safe).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

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
    keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Top::Engine(command) => main_impl(command, &cli.common, &retort_stages::registry()),
        Top::Sample(args) => sample::run(args),
        Top::Report(args) => report::run(args, &cli.common, &retort_stages::registry()),
    }
}
