//! `validate`, `graph`, `show` and `schema`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use retort_cache::{ArtifactKind, ObjectState};

use super::args::{GraphArgs, GraphFormat, PipelineArgs, ShowArgs};
use super::lock::{open_store, read_lock};
use super::pipeline_cmd::load_checked;
use super::{CliError, Common};
use crate::graph::Resolved;
use crate::schema::pipeline_schema;
use crate::stage::Registry;

/// `retort validate`.
pub(super) fn validate(a: PipelineArgs, _common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, _) = load_checked(&a, registry)?;
    println!("{}: ok ({} stages)", a.pipeline.display(), p.stages.len());
    Ok(())
}

/// `retort schema`.
pub(super) fn schema(registry: &Registry) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(&pipeline_schema(registry)).expect("schema serializes");
    println!("{text}");
    Ok(())
}

/// `retort graph`: one node per stage (and per model or file input), one
/// edge per input, labelled with the output it reads.
pub(super) fn graph(a: GraphArgs, _common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, g) = load_checked(&a.pipeline, registry)?;
    let mut out = String::new();
    let id = |s: &str| s.replace(['-', '.', '/', ' '], "_");
    match a.format {
        GraphFormat::Dot => out += &format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n", p.name),
        GraphFormat::Mermaid => out += "flowchart LR\n",
    }
    for &i in &g.order {
        let node = &p.stages[i];
        match a.format {
            GraphFormat::Dot => out += &format!("  {} [label=\"{}\\n({})\"];\n", id(&node.name), node.name, node.kind),
            GraphFormat::Mermaid => out += &format!("  {}[\"{}<br/>({})\"]\n", id(&node.name), node.name, node.kind),
        }
    }
    for &i in &g.order {
        let to = id(&p.stages[i].name);
        for input in &g.inputs[i] {
            let (from, label) = match &input.source {
                Resolved::Output { stage, output } => (id(&p.stages[*stage].name), output.clone()),
                Resolved::Model(m) => (format!("model_{}", id(m)), input.name.clone()),
                Resolved::File(f) => (format!("file_{}", id(&f.display().to_string())), input.name.clone()),
            };
            match a.format {
                GraphFormat::Dot => out += &format!("  {from} -> {to} [label=\"{label}\"];\n"),
                GraphFormat::Mermaid => out += &format!("  {from} -->|{label}| {to}\n"),
            }
        }
    }
    if a.format == GraphFormat::Dot {
        out += "}\n";
    }
    print!("{out}");
    Ok(())
}

/// `retort show PIPELINE STAGE[.OUTPUT]`: the output recorded for the stage
/// in `retort.lock`, read from the store.
pub(super) fn show(a: ShowArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, _) = load_checked(&a.pipeline, registry)?;
    let (stage, output) = match a.target.split_once('.') {
        Some((s, o)) => (s.to_string(), Some(o.to_string())),
        None => (a.target.clone(), None),
    };
    let Some(idx) = p.stage_index(&stage) else {
        let mut msg = format!("no stage named `{stage}` in {}", a.pipeline.pipeline.display());
        if let Some(s) = crate::error::did_you_mean(&stage, p.stages.iter().map(|s| s.name.as_str())) {
            msg += &format!("; did you mean `{s}`?");
        }
        return Err(CliError::Usage(msg));
    };
    let locked = read_lock(&p)?;
    let Some(entry) = locked.get(&stage) else {
        return Err(CliError::Usage(format!(
            "stage `{stage}` has not run yet; run `retort run {}` first",
            a.pipeline.pipeline.display()
        )));
    };
    if a.metrics {
        println!("{}", serde_json::to_string_pretty(&entry.metrics).expect("metrics serialize"));
        return Ok(());
    }
    let outputs = p.stages[idx].stage.outputs();
    let name = output.or_else(|| outputs.first().cloned()).unwrap_or_default();
    let Some(rec) = entry.outputs.get(&name) else {
        return Err(CliError::Usage(format!("stage `{stage}` has no output `{name}`; its outputs: {}", outputs.join(", "))));
    };
    let store = open_store(common, &p)?;
    if store.state(&rec.hash) != ObjectState::Valid {
        return Err(CliError::Failed(format!(
            "the stored output `{stage}.{name}` is missing or corrupt; `retort run {}` recomputes it",
            a.pipeline.pipeline.display()
        )));
    }
    let path = store.object_path(&rec.hash);
    if a.path {
        println!("{}", path.display());
        return Ok(());
    }
    match rec.kind {
        ArtifactKind::File => print_head(&path, a.head).map_err(|e| CliError::Other(e.into())),
        ArtifactKind::Dir => {
            for entry in walk(&path) {
                let size = std::fs::metadata(&entry).map(|m| m.len()).unwrap_or(0);
                println!("{:>12}  {}", size, entry.strip_prefix(&path).unwrap_or(&entry).display());
            }
            Ok(())
        }
    }
}

fn print_head(path: &Path, head: Option<usize>) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        if head.is_some_and(|h| i >= h) {
            break;
        }
        out.write_all(&line?)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}
