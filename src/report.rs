//! `retort report`: the binary's side of the `retort-report` crate — load
//! the pipeline, plan it against the cache, collect, render, write.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use retort_engine::cli::{cache_dir, read_lock, CliError, Common};
use retort_engine::events::QuietReporter;
use retort_engine::{load, Executor, Graph, Options, Registry};

/// `retort report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The pipeline file (YAML).
    pipeline: PathBuf,
    /// Override a value of the file, as `run --set` does (the report then
    /// shows the runs of the pipeline with those values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Where to write the HTML [default: `STEM-report.html` in the current directory].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs `retort report`: exit 2 for a bad pipeline file, 1 when the cache
/// or the output cannot be read or written.
pub fn run(a: ReportArgs, common: &Common, registry: &Registry) -> ExitCode {
    match report(a, common, registry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                CliError::Other(err) => eprintln!("error: {err:#}"),
                other => eprintln!("error: {other}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn report(a: ReportArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let p = load(&a.pipeline, &a.set, registry)?;
    let g = Graph::build(&p)?;
    let store = retort_cache::Store::open(&cache_dir(common, Some(&p.dir)))?;
    let lock = read_lock(&p)?;
    let exec = Executor { pipeline: &p, graph: &g, store: &store, previous: &lock, reporter: &QuietReporter, remote: None };
    let plan = exec.plan(&Options { jobs: 1, ..Options::default() })?;
    let data = retort_report::collect(&p, &g, &plan, &lock, &store).context("cannot read the cache")?;
    let html = retort_report::render(&data).context("cannot draw the report")?;
    let stem = a.pipeline.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into());
    let out = a.output.unwrap_or_else(|| PathBuf::from(format!("{stem}-report.html")));
    std::fs::write(&out, html).with_context(|| format!("cannot write {}", out.display()))?;
    if !common.quiet {
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
