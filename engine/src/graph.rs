//! The DAG: references between stages resolved, checked, and ordered.
//!
//! A stage's inputs name other stages' outputs (`gen.out`), models
//! (`model: sft` — a stage wins over a `models:` entry of the same name), or
//! files. Dangling references, missing files and cycles are errors that point
//! at the field that made them.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{did_you_mean, SpecError};
use crate::source::join;
use crate::spec::Pipeline;
use crate::stage::Source;

/// Where one input of a stage resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Output `output` of stage number `stage`.
    Output {
        /// Index into `Pipeline::stages`.
        stage: usize,
        /// Output name.
        output: String,
    },
    /// A `models:` entry.
    Model(String),
    /// An absolute path outside the cache.
    File(PathBuf),
}

/// One resolved input.
#[derive(Clone, Debug)]
pub struct Input {
    /// The stage's name for it.
    pub name: String,
    /// Where it comes from.
    pub source: Resolved,
}

/// The checked DAG of a pipeline.
#[derive(Debug)]
pub struct Graph {
    /// Stage indices, dependencies first; ties keep file order.
    pub order: Vec<usize>,
    /// Per stage: its resolved inputs.
    pub inputs: Vec<Vec<Input>>,
    /// Per stage: the stages it reads from (sorted, deduplicated).
    pub upstream: Vec<Vec<usize>>,
    /// Per stage: the stages that read from it.
    pub downstream: Vec<Vec<usize>>,
}

impl Graph {
    /// Resolves and checks every reference of `p`, then orders the stages.
    pub fn build(p: &Pipeline) -> Result<Graph, SpecError> {
        check_models(p)?;
        let n = p.stages.len();
        let mut inputs = Vec::with_capacity(n);
        let mut upstream = vec![BTreeSet::new(); n];
        for (i, node) in p.stages.iter().enumerate() {
            let mut resolved = Vec::new();
            for decl in node.stage.inputs() {
                let field = join(&join("stages", &node.name), &decl.field);
                let source = resolve(p, &decl.source, &field)?;
                if let Resolved::Output { stage, .. } = &source {
                    upstream[i].insert(*stage);
                }
                resolved.push(Input { name: decl.name, source });
            }
            inputs.push(resolved);
        }
        let upstream: Vec<Vec<usize>> = upstream.into_iter().map(|s| s.into_iter().collect()).collect();
        let mut downstream = vec![Vec::new(); n];
        for (i, ups) in upstream.iter().enumerate() {
            for &u in ups {
                downstream[u].push(i);
            }
        }
        let order = topo_order(&upstream, &downstream).map_err(|rest| cycle_error(p, &upstream, &downstream, &rest))?;
        Ok(Graph { order, inputs, upstream, downstream })
    }

    /// `roots` and everything that depends on them.
    pub fn descendants(&self, roots: &[usize]) -> BTreeSet<usize> {
        walk(roots, &self.downstream)
    }

    /// `roots` and everything they depend on.
    pub fn ancestors(&self, roots: &[usize]) -> BTreeSet<usize> {
        walk(roots, &self.upstream)
    }

    /// The DAG as a petgraph graph (node weights: stage indices), for export.
    pub fn to_petgraph(&self) -> DiGraph<usize, ()> {
        let mut g = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..self.upstream.len()).map(|i| g.add_node(i)).collect();
        for (i, ups) in self.upstream.iter().enumerate() {
            for &u in ups {
                g.add_edge(nodes[u], nodes[i], ());
            }
        }
        g
    }
}

fn walk(roots: &[usize], edges: &[Vec<usize>]) -> BTreeSet<usize> {
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    let mut todo: Vec<usize> = roots.to_vec();
    while let Some(i) = todo.pop() {
        if seen.insert(i) {
            todo.extend(&edges[i]);
        }
    }
    seen
}

fn check_models(p: &Pipeline) -> Result<(), SpecError> {
    for (name, m) in &p.models {
        let at = join("models", name);
        match (&m.path, &m.tiny) {
            (Some(path), None) => {
                if !p.dir.join(path).exists() {
                    return Err(SpecError::new(&p.file, p.source.value(&join(&at, "path")),
                        format!("model file `{}` does not exist", path.display()))
                        .help("paths are relative to the pipeline file; scripts/fetch-smollm2.sh fetches SmolLM2"));
                }
            }
            (None, Some(_)) => {}
            _ => return Err(p.error_at(&at, format!("model `{name}` needs exactly one of `path` or `tiny`"))),
        }
    }
    Ok(())
}

fn resolve(p: &Pipeline, source: &Source, field: &str) -> Result<Resolved, SpecError> {
    match source {
        Source::Stage { stage, output } => resolve_output(p, stage, output.as_deref(), field),
        Source::Model(name) => {
            if p.stage_index(name).is_some() {
                resolve_output(p, name, None, field)
            } else if p.models.contains_key(name) {
                Ok(Resolved::Model(name.clone()))
            } else {
                let candidates = p.stages.iter().map(|s| s.name.as_str()).chain(p.models.keys().map(|s| s.as_str()));
                Err(with_suggestion(
                    SpecError::new(&p.file, p.source.value(field), format!("`{name}` is neither a stage nor an entry of `models:`")),
                    name,
                    candidates,
                ))
            }
        }
        Source::File(path) => {
            let abs = p.dir.join(path);
            if abs.exists() {
                Ok(Resolved::File(abs))
            } else {
                Err(SpecError::new(&p.file, p.source.value(field), format!("input file `{}` does not exist", path.display()))
                    .help(format!("paths are relative to the pipeline file's directory ({})", p.dir.display())))
            }
        }
    }
}

fn resolve_output(p: &Pipeline, stage: &str, output: Option<&str>, field: &str) -> Result<Resolved, SpecError> {
    let Some(idx) = p.stage_index(stage) else {
        return Err(with_suggestion(
            SpecError::new(&p.file, p.source.value(field), format!("reference to unknown stage `{stage}`")),
            stage,
            p.stages.iter().map(|s| s.name.as_str()),
        ));
    };
    let outputs = p.stages[idx].stage.outputs();
    let output = match output {
        None => outputs.first().cloned().ok_or_else(|| {
            SpecError::new(&p.file, p.source.value(field), format!("stage `{stage}` has no outputs to read"))
        })?,
        Some(o) if outputs.iter().any(|x| x == o) => o.to_string(),
        Some(o) => {
            let list = outputs.iter().map(|x| format!("`{stage}.{x}`")).collect::<Vec<_>>().join(", ");
            return Err(SpecError::new(&p.file, p.source.value(field), format!("stage `{stage}` has no output `{o}`"))
                .help(format!("its outputs are: {list}")));
        }
    };
    Ok(Resolved::Output { stage: idx, output })
}

fn with_suggestion<'a>(mut e: SpecError, name: &str, candidates: impl Iterator<Item = &'a str>) -> SpecError {
    if let Some(s) = did_you_mean(name, candidates) {
        e.help = Some(format!("did you mean `{s}`?"));
    }
    e
}

/// Kahn's algorithm, always taking the earliest ready stage in file order so
/// the order is stable. On a cycle returns the stages left unordered.
fn topo_order(upstream: &[Vec<usize>], downstream: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut pending: Vec<usize> = upstream.iter().map(|u| u.len()).collect();
    let mut ready: BTreeSet<usize> = (0..upstream.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(upstream.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &downstream[i] {
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == upstream.len() {
        Ok(order)
    } else {
        Err((0..upstream.len()).filter(|i| pending[*i] > 0).collect())
    }
}

/// Names the stages of one cycle, in order: `a -> b -> c -> a`.
fn cycle_error(p: &Pipeline, upstream: &[Vec<usize>], downstream: &[Vec<usize>], stuck: &[usize]) -> SpecError {
    let graph = Graph { order: vec![], inputs: vec![], upstream: upstream.to_vec(), downstream: vec![] }.to_petgraph();
    let cycle: Vec<usize> = tarjan_scc(&graph)
        .into_iter()
        .map(|scc| scc.into_iter().map(|n| graph[n]).collect::<Vec<_>>())
        .find(|scc| scc.len() > 1 || upstream[scc[0]].contains(&scc[0]))
        .unwrap_or_else(|| stuck.to_vec());
    let members: HashMap<usize, ()> = cycle.iter().map(|&i| (i, ())).collect();
    // Walk the cycle from its first stage in file order, following data flow.
    let start = *cycle.iter().min().expect("a cycle has stages");
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = downstream[cur].iter().copied().find(|u| members.contains_key(u) && (*u == start || !path.contains(u)));
        match next {
            Some(n) if n == start => break,
            Some(n) => {
                path.push(n);
                cur = n;
            }
            None => break,
        }
    }
    path.push(path[0]);
    let names: Vec<&str> = path.iter().map(|&i| p.stages[i].name.as_str()).collect();
    p.error_at(&join("stages", names[0]), format!("cycle between stages: {}", names.join(" -> ")))
        .help("a stage cannot depend on its own output; remove one of these references")
}
