//! `validate`, `graph`, `show` and `schema`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use retort_cache::{ArtifactKind, ObjectState};

use super::args::{Format, GraphArgs, GraphFormat, PipelineArgs, ShowArgs};
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
    // `STAGE[.OUTPUT]`; a matrix variant's name may hold dots
    // (`sft@lr=0.1`), so the longest stage name that prefixes it wins.
    let longest = p
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| a.target.starts_with(n) && (a.target.len() == n.len() || a.target[n.len()..].starts_with('.')))
        .max_by_key(|n| n.len());
    let (stage, output) = match (longest, a.target.split_once('.')) {
        (Some(n), _) if n.len() == a.target.len() => (n.to_string(), None),
        (Some(n), _) => (n.to_string(), Some(a.target[n.len() + 1..].to_string())),
        (None, Some((s, o))) => (s.to_string(), Some(o.to_string())),
        (None, None) => (a.target.clone(), None),
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
    let outputs = p.stages[idx].stage.outputs();
    if a.metrics {
        let store = open_store(common, &p)?;
        // The kind says which output (if any) is its per-step log.
        let log = p.stages[idx].stage.step_log();
        let steps = match log.and_then(|name| entry.outputs.get(name).map(|rec| (name, rec))) {
            Some((_, rec)) if rec.kind == ArtifactKind::File && store.state(&rec.hash) == ObjectState::Valid => {
                Some(crate::steplog::read_step_log(&store.object_path(&rec.hash)).map_err(|e| CliError::Other(e.into()))?)
            }
            Some((name, _)) => {
                return Err(CliError::Failed(format!(
                    "the stored output `{stage}.{name}` is missing or corrupt; `retort run {}` recomputes it",
                    a.pipeline.pipeline.display()
                )))
            }
            None => None,
        };
        let steps = steps.map(|s| match a.head {
            Some(h) => s.into_iter().take(h).collect(),
            None => s,
        });
        print!("{}", metrics_view(entry.device.as_deref(), &entry.metrics, steps.as_deref(), a.format));
        return Ok(());
    }
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
    if let Some(device) = &entry.device {
        // On stderr: stdout stays the artifact (rows, a listing, a path).
        eprintln!("{stage}.{name}: produced on {device}");
    }
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

/// `show --metrics`: the backend the stage ran its model on (if it ran one),
/// its summary metrics, then its per-step table when it has one. JSON:
/// `{"device": "...", "metrics": {...}, "steps": [...]}` (`device` and
/// `steps` only when present).
fn metrics_view(
    device: Option<&str>,
    summary: &std::collections::BTreeMap<String, serde_json::Value>,
    steps: Option<&[serde_json::Map<String, serde_json::Value>]>,
    format: Format,
) -> String {
    if format == Format::Json {
        let mut obj = serde_json::Map::new();
        if let Some(device) = device {
            obj.insert("device".into(), device.into());
        }
        obj.insert("metrics".into(), serde_json::to_value(summary).expect("metrics serialize"));
        if let Some(steps) = steps {
            obj.insert("steps".into(), steps.iter().cloned().map(serde_json::Value::Object).collect());
        }
        return serde_json::to_string_pretty(&obj).expect("metrics serialize") + "\n";
    }
    let mut out = String::new();
    let width = summary.keys().map(|k| k.len()).chain(device.map(|_| "device".len())).max().unwrap_or(0);
    if let Some(device) = device {
        out += &format!("{:<width$}  {device}\n", "device");
    }
    for (k, v) in summary {
        out += &format!("{k:<width$}  {}\n", cell(v));
    }
    let Some(steps) = steps.filter(|s| !s.is_empty()) else {
        return out;
    };
    // Columns in first-seen order; a step without a column shows `-`.
    let mut cols: Vec<&str> = Vec::new();
    for s in steps {
        for k in s.keys() {
            if !cols.contains(&k.as_str()) {
                cols.push(k);
            }
        }
    }
    let rows: Vec<Vec<String>> =
        steps.iter().map(|s| cols.iter().map(|c| s.get(*c).map_or("-".into(), cell)).collect()).collect();
    let widths: Vec<usize> =
        cols.iter().enumerate().map(|(j, c)| rows.iter().map(|r| r[j].len()).chain([c.len()]).max().unwrap_or(0)).collect();
    out += "\n";
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    out += &line(cols.clone());
    for r in &rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out
}

/// A metric value for a table: whole numbers without decimals, others to four
/// significant digits, strings unquoted.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        serde_json::Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.fract() == 0.0 && x.abs() < 1e9 {
                format!("{x:.0}")
            } else if x.abs() >= 1e-3 && x.abs() < 1e5 {
                let digits = (3 - x.abs().log10().floor() as i32).max(0) as usize;
                format!("{x:.digits$}")
            } else {
                format!("{x:.3e}")
            }
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
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
