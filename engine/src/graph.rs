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
use crate::spec::{Endpoint, Pipeline};
use crate::stage::{Artifact, Ask, Fields, InputDecl, Need, Source};

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
    /// The stage spec's field that named it (`data`, `tasks[0]`).
    pub field: String,
    /// Row fields the stage reads from it (checked at load time).
    pub needs: Vec<Need>,
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
                check_type(p, &node.name, &decl, &source, &field)?;
                check_asks(p, &node.name, &decl, &source)?;
                if let Resolved::Output { stage, .. } = &source {
                    upstream[i].insert(*stage);
                }
                resolved.push(Input { name: decl.name, source, field: decl.field, needs: decl.needs });
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
        check_fields(p, &order, &inputs)?;
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
        match (&m.path, &m.tiny, &m.openai) {
            (Some(path), None, None) => {
                if !p.dir.join(path).exists() {
                    return Err(SpecError::new(&p.file, p.source.value(&join(&at, "path")),
                        format!("model file `{}` does not exist", path.display()))
                        .help("paths are relative to the pipeline file; scripts/fetch-smollm2.sh fetches SmolLM2"));
                }
            }
            (None, Some(_), None) => {}
            (None, None, Some(remote)) => check_remote(p, &join(&at, "openai"), remote)?,
            _ => return Err(p.error_at(&at, format!("model `{name}` needs exactly one of `path`, `tiny` or `openai`"))),
        }
    }
    Ok(())
}

/// What can be checked of an `openai:` entry without asking the server
/// (that happens before a run that needs it: see `preflight`).
fn check_remote(p: &Pipeline, at: &str, m: &crate::spec::OpenAiModel) -> Result<(), SpecError> {
    let err = |field: &str, msg: String| SpecError::new(&p.file, p.source.value(&join(at, field)), msg);
    if m.base_url.is_some() != m.base_urls.is_empty() {
        return Err(p.error_at(at, "give exactly one of `base_url` or `base_urls`")
            .help("e.g. `base_url: http://gpu-1:8000/v1`"));
    }
    for (i, url) in m.urls().iter().enumerate() {
        let field = if m.base_url.is_some() { "base_url".to_string() } else { format!("base_urls[{i}]") };
        if let Some(why) = bad_http_url(url) {
            return Err(err(&field, format!("`{url}` is not an http(s)://HOST[:PORT]/PATH URL: {why}")).help("e.g. `http://gpu-1:8000/v1`"));
        }
    }
    if m.model.trim().is_empty() {
        return Err(err("model", "`model` must name the model the server serves".into()));
    }
    if let Some(var) = &m.api_key_env {
        let name_like = var.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_like {
            // Never echo the value: a key pasted here must not reach a terminal log.
            return Err(err("api_key_env", "`api_key_env` must be the name of an environment variable (letters, digits, `_`)".into())
                .help("put the key in a variable (`export VLLM_API_KEY=...`) and write its name here, e.g. `api_key_env: VLLM_API_KEY`; never the key itself"));
        }
    }
    if m.max_concurrency == 0 {
        return Err(err("max_concurrency", "must be at least 1".into()));
    }
    if !(m.timeout > 0.0 && m.timeout.is_finite()) {
        return Err(err("timeout", "must be a positive number of seconds".into()));
    }
    for key in m.extra_body.keys() {
        if let Some(why) = RESERVED_BODY_FIELDS.iter().find(|(k, _)| k == key).map(|(_, why)| why) {
            return Err(err(&format!("extra_body.{key}"), format!("`extra_body` may not set `{key}`: {why}"))
                .help(format!("remove `{key}` from `extra_body`")));
        }
    }
    Ok(())
}

/// Request fields retort sets itself, and why `extra_body` cannot override
/// them (sampling settings such as `top_k` it may: they are hashed with it).
const RESERVED_BODY_FIELDS: [(&str, &str); 9] = [
    ("model", "it is the entry's `model`"),
    ("prompt", "retort sends each item's prompt"),
    ("messages", "retort sends each item's chat turns"),
    ("n", "retort asks for each prompt's samples itself (and splits `n` at the server's cap)"),
    ("seed", "retort sends a seed per item, derived from the stage's seed"),
    ("stream", "retort reads whole responses, not streams"),
    ("stream_options", "retort reads whole responses, not streams"),
    ("logprobs", "set `logprobs:` on the stage instead"),
    ("echo", "the response would hold the prompt"),
];

/// Why `url` is not `http://HOST[:PORT][/PATH]`, if it is not.
fn bad_http_url(url: &str) -> Option<&'static str> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Some("it must start with http:// or https://");
    };
    let authority = rest.split('/').next().unwrap_or("");
    if url.contains(|c: char| c.is_whitespace()) {
        return Some("it contains a space");
    }
    if url.contains(['?', '#']) {
        return Some("a base URL has no query or fragment");
    }
    if authority.contains('@') {
        return Some("credentials do not go in the URL (use `api_key_env`)");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => return Some("an IPv6 host needs its closing `]`"),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Some("it has no host");
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |n| n == 0)) {
        return Some("the port must be a number from 1 to 65535");
    }
    None
}

/// Checks [`Ask`]s against the model `source` resolved to (only a
/// `models:` entry can be remote; a stage's model output has weights).
fn check_asks(p: &Pipeline, stage: &str, decl: &InputDecl, source: &Resolved) -> Result<(), SpecError> {
    let remote = match source {
        Resolved::Model(name) => p.models[name].openai.as_ref().map(|m| (name.as_str(), m.endpoint)),
        _ => None,
    };
    let model = match source {
        Resolved::Model(name) => name.clone(),
        Resolved::Output { stage, .. } => p.stages[*stage].name.clone(),
        Resolved::File(path) => path.display().to_string(),
    };
    for (ask, field) in &decl.asks {
        let (message, help) = match (ask, remote) {
            (Ask::ChatTurns, Some((name, Endpoint::Completions))) => (
                format!("stage `{stage}`: `{field}: true` sends chat turns, but model `{name}` is asked through its completions endpoint, which takes plain text"),
                format!("set `endpoint: chat` under `models.{name}.openai` (the server then applies its chat template), or remove `{field}: true`"),
            ),
            (Ask::PlainText, Some((name, Endpoint::Chat))) => (
                format!("stage `{stage}`: `{field}` continues plain text, but model `{name}` is asked through its chat endpoint"),
                format!("set `endpoint: completions` under `models.{name}.openai` (or use another entry for the same server with it)"),
            ),
            (Ask::TopLogprobs, None) => (
                format!("stage `{stage}`: `{field}` asks for the top alternatives' log-probs, which only a remote (`openai:`) model returns, and `{model}` runs here"),
                "set `logprobs: 0` for the sampled tokens' log-probs alone, or sample an `openai:` model".to_string(),
            ),
            _ => continue,
        };
        let at = join(&join("stages", stage), field);
        return Err(SpecError::new(&p.file, p.source.value(&at), message).help(help));
    }
    Ok(())
}

/// What `source` holds, in the terms of [`Artifact`].
fn artifact_of(p: &Pipeline, source: &Resolved) -> (Artifact, String) {
    match source {
        Resolved::Output { stage, output } => {
            let node = &p.stages[*stage];
            let ty = node.stage.output_type(output);
            (ty, format!("`{}.{output}` (a `{}` stage's output) is {}", node.name, node.kind, ty.describe()))
        }
        Resolved::Model(name) if p.models[name].tiny.is_some() => {
            (Artifact::Model, format!("`{name}` is a `tiny:` model spec, which has no weights yet"))
        }
        Resolved::Model(name) if p.models[name].openai.is_some() => {
            (Artifact::Endpoint, format!("`{name}` is a remote model (`openai:`), which has no weights here"))
        }
        Resolved::Model(name) => (Artifact::Weights, format!("`{name}` is a model file")),
        Resolved::File(path) => (Artifact::Any, format!("`{}` is a file", path.display())),
    }
}

/// A reference to the wrong type of artifact (a model where rows are read,
/// a `tiny:` spec where weights are needed) fails here, naming the field.
fn check_type(p: &Pipeline, stage: &str, decl: &InputDecl, source: &Resolved, field: &str) -> Result<(), SpecError> {
    let (have, what) = artifact_of(p, source);
    // A model file may hold a PRM: its reader checks (`prm.json`).
    let file_prm = decl.expects == Artifact::Prm && have == Artifact::Weights && matches!(source, Resolved::Model(_));
    if decl.expects.accepts(have) || file_prm {
        return Ok(());
    }
    let short = decl.field.split('[').next().unwrap_or(&decl.field);
    let mut e = SpecError::new(&p.file, p.source.value(field),
        format!("stage `{stage}`: `{short}` needs {}, but {what}", decl.expects.describe()));
    e.help = Some(match (decl.expects, have) {
        (Artifact::Weights | Artifact::Sampler, Artifact::Model) => "point it at a stage that trains that model (a `train` stage's output)".into(),
        (Artifact::Weights | Artifact::Model, Artifact::Endpoint) => {
            "training and log-prob scoring need local weights: point it at a `path:` model or a `train` stage".into()
        }
        (Artifact::Prm, _) => "point it at a `train` stage with `objective: prm` (or use `scorer: rule` or `mc`)".into(),
        (Artifact::Rows, _) => "name a stage that writes rows (task, generate, verify, ...), or `STAGE.OUTPUT` for another output".into(),
        _ => format!("name {} here", decl.expects.describe()),
    });
    Err(e)
}

/// Follows what each stage is known to write, in order, and checks every
/// input's [`Need`](crate::stage::Need)s against its producer's fields.
fn check_fields(p: &Pipeline, order: &[usize], inputs: &[Vec<Input>]) -> Result<(), SpecError> {
    let mut known: HashMap<(usize, String), Fields> = HashMap::new();
    for &i in order {
        let node = &p.stages[i];
        let of_input = |name: &str| -> Fields {
            match inputs[i].iter().find(|x| x.name == name).map(|x| &x.source) {
                Some(Resolved::Output { stage, output }) => known.get(&(*stage, output.clone())).cloned().flatten(),
                _ => None,
            }
        };
        for decl in &inputs[i] {
            let Resolved::Output { stage, output } = &decl.source else { continue };
            let Some(have) = of_input(&decl.name) else { continue };
            for need in &decl.needs {
                if need.any_of.iter().any(|f| have.contains(*f)) {
                    continue;
                }
                let want = need.any_of.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(" or ");
                let list = have.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
                let producer = &p.stages[*stage];
                let at = join(&join("stages", &node.name), &decl.field);
                return Err(SpecError::new(&p.file, p.source.value(&at), format!(
                    "stage `{}`: {} reads {want} from each row of `{}`, but `{}.{output}` (a `{}` stage) writes rows with {list}",
                    node.name, need.why, decl.field, producer.name, producer.kind
                ))
                .help(format!("point `{}` at rows that have {want}", decl.field)));
            }
        }
        let fields: Vec<(String, Fields)> =
            node.stage.outputs().into_iter().map(|o| { let f = node.stage.output_fields(&o, &of_input); (o, f) }).collect();
        for (o, f) in fields {
            known.insert((i, o), f);
        }
    }
    Ok(())
}

fn resolve(p: &Pipeline, source: &Source, field: &str) -> Result<Resolved, SpecError> {
    match source {
        Source::Stage { stage, output } => resolve_output(p, stage, output.as_deref(), field),
        Source::Model(name) => {
            if p.stage_index(name).is_some() || p.families.contains_key(name) {
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

/// `a@x=0.1.model` splits at its first `.` into stage `a@x=0` and output
/// `1.model`; a matrix variant's name may hold dots, so the longest stage
/// name that prefixes the reference wins.
fn split_reference<'a>(p: &Pipeline, stage: &'a str, output: Option<&'a str>) -> (String, Option<String>) {
    if p.stage_index(stage).is_some() || output.is_none() {
        return (stage.to_string(), output.map(str::to_string));
    }
    let full = format!("{stage}.{}", output.unwrap_or_default());
    let best = p
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| full.starts_with(n) && (full.len() == n.len() || full[n.len()..].starts_with('.')))
        .max_by_key(|n| n.len());
    match best {
        Some(n) if full.len() == n.len() => (n.to_string(), None),
        Some(n) => (n.to_string(), Some(full[n.len() + 1..].to_string())),
        None => (stage.to_string(), output.map(str::to_string)),
    }
}

fn resolve_output(p: &Pipeline, stage: &str, output: Option<&str>, field: &str) -> Result<Resolved, SpecError> {
    let (stage, output) = split_reference(p, stage, output);
    let (stage, output) = (stage.as_str(), output.as_deref());
    if let Some(variants) = p.families.get(stage) {
        let list = variants.iter().take(4).map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ");
        return Err(SpecError::new(&p.file, p.source.value(field), format!("`{stage}` is a matrix of {} stages; this field takes one", variants.len()))
            .help(format!("name one variant ({list}{}), or list the family where a list is taken", if variants.len() > 4 { ", ..." } else { "" })));
    }
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
