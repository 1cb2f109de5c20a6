//! Reading a pipeline file into typed stages.
//!
//! The file is parsed to a YAML value, `--set` overrides are applied to that
//! value, and each stage is handed to the kind its `kind:` names. Every error
//! is a [`SpecError`] pointing at the file, line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::error::{did_you_mean, unknown_field_help, SpecError};
use crate::source::{join, SourceMap};
use crate::stage::{ParseError, Registry, Stage};

/// Keys every stage may have, whatever its kind.
const COMMON_KEYS: [&str; 3] = ["kind", "seed", "description"];

/// Where models run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// burn's CPU backend (always built).
    #[default]
    Cpu,
    /// burn's wgpu backend (cargo feature `wgpu`).
    Wgpu,
    /// burn's CUDA backend (cargo feature `cuda`).
    Cuda,
}

impl Device {
    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Wgpu => "wgpu",
            Device::Cuda => "cuda",
        }
    }
}

/// A named model in `models:`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A `.gguf` file or a checkpoint directory (`config.json`,
    /// `model.safetensors`, `tokenizer.json`), relative to the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A model built from scratch: a preset name (`tiny`) or architecture
    /// fields. Its weights are initialised from the stage's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiny: Option<serde_json::Value>,
}

/// The top level of a pipeline file, before stages are typed.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineHeader {
    /// A name for summaries; defaults to the file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Seed of every random choice, unless a stage sets its own.
    #[serde(default)]
    pub seed: u64,
    /// Where models run: cpu (default), wgpu or cuda.
    #[serde(default)]
    pub device: Device,
    /// Named model sources that stages refer to with `model: NAME`.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSpec>,
    /// The stages, by name. Each has a `kind` and that kind's parameters.
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub stages: Mapping,
}

/// One stage of a loaded pipeline.
#[derive(Debug)]
pub struct StageNode {
    /// Its name (never hashed: renaming a stage keeps its cache).
    pub name: String,
    /// Its `kind:`.
    pub kind: &'static str,
    /// The kind's implementation version.
    pub version: u32,
    /// The typed stage.
    pub stage: Box<dyn Stage>,
    /// Its normalized parameters.
    pub params: serde_json::Value,
    /// Its own `seed:`, overriding the pipeline's.
    pub seed: Option<u64>,
}

/// A pipeline file, parsed and typed (references not yet checked: see
/// [`crate::graph`]).
#[derive(Debug)]
pub struct Pipeline {
    /// The file as the user named it (used in messages).
    pub file: PathBuf,
    /// Its directory: relative paths and the cache are resolved from here.
    pub dir: PathBuf,
    /// `name:` or the file stem.
    pub name: String,
    /// Pipeline-wide seed.
    pub seed: u64,
    /// Where models run.
    pub device: Device,
    /// Named models.
    pub models: BTreeMap<String, ModelSpec>,
    /// Stages in file order.
    pub stages: Vec<StageNode>,
    /// Positions of every key, for later errors.
    pub source: SourceMap,
}

impl Pipeline {
    /// An error at the key `path` of this file.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> SpecError {
        SpecError::new(&self.file, self.source.key(path), message)
    }

    /// Index of the stage called `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

/// Reads, overrides and types a pipeline file.
pub fn load(file: &Path, overrides: &[String], registry: &Registry) -> Result<Pipeline, SpecError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        SpecError::new(file, None, format!("cannot read pipeline file: {e}"))
            .help("check the path; pipeline files are YAML")
    })?;
    let mut doc: Value = serde_yaml::from_str(&text).map_err(|e| {
        let pos = e.location().map(|l| crate::source::Pos { line: l.line(), col: l.column() });
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        SpecError::new(file, pos, format!("invalid YAML: {msg}"))
    })?;
    for o in overrides {
        apply_override(&mut doc, o).map_err(|m| SpecError::new(file, None, format!("--set {o}: {m}")))?;
    }
    let source = SourceMap::parse(&text);
    let typed = Typer { file, source: &source };
    if !doc.is_mapping() {
        return Err(SpecError::new(file, None, "a pipeline file must be a mapping with `stages:`"));
    }
    let header: PipelineHeader =
        serde_path_to_error::deserialize(doc).map_err(|e| typed.parse_error("", e))?;
    let mut stages = Vec::new();
    for (key, value) in header.stages {
        stages.push(typed.stage(key, value, registry)?);
    }
    if stages.is_empty() {
        return Err(SpecError::new(file, source.key("stages"), "the pipeline has no stages"));
    }
    let dir = absolute_dir(file);
    let name = header.name.unwrap_or_else(|| {
        file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    });
    Ok(Pipeline {
        file: file.to_path_buf(),
        dir,
        name,
        seed: header.seed,
        device: header.device,
        models: header.models,
        stages,
        source,
    })
}

fn absolute_dir(file: &Path) -> PathBuf {
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// Applies `a.b.c=value` to the document; `value` is read as YAML, so
/// `lr=0.1` is a number and `name=x` a string.
pub fn apply_override(doc: &mut Value, text: &str) -> Result<(), String> {
    let (path, raw) = text.split_once('=').ok_or("expected KEY=VALUE, e.g. stages.train.params.lr=0.1")?;
    let value: Value = serde_yaml::from_str(raw).map_err(|e| format!("value is not valid YAML: {e}"))?;
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err("empty key in path".into());
    }
    let mut node = doc;
    for (i, key) in keys.iter().enumerate() {
        let map = node.as_mapping_mut().ok_or_else(|| format!("`{}` is not a mapping", keys[..i].join(".")))?;
        let k = Value::String(key.to_string());
        if i + 1 == keys.len() {
            map.insert(k, value);
            return Ok(());
        }
        if !map.contains_key(&k) {
            if i == 1 && keys[0] == "stages" {
                return Err(format!("no stage named `{key}`"));
            }
            map.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        node = map.get_mut(&k).expect("just checked");
    }
    unreachable!("the loop returns at the last key")
}

/// Turns YAML values into typed stages, with errors located in the file.
struct Typer<'a> {
    file: &'a Path,
    source: &'a SourceMap,
}

impl Typer<'_> {
    fn stage(&self, key: Value, value: Value, registry: &Registry) -> Result<StageNode, SpecError> {
        let Value::String(name) = key else {
            return Err(SpecError::new(self.file, self.source.key("stages"), "stage names must be strings"));
        };
        let at = join("stages", &name);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(SpecError::new(self.file, self.source.key(&at), format!("invalid stage name `{name}`"))
                .help("use letters, digits, `_` and `-` (a `.` separates a stage from its output)"));
        }
        let Value::Mapping(mut map) = value else {
            return Err(SpecError::new(self.file, self.source.key(&at), format!("stage `{name}` must be a mapping with a `kind:`")));
        };
        let kind_name = match map.remove("kind") {
            Some(Value::String(k)) => k,
            Some(_) => return Err(self.err_value(&join(&at, "kind"), "`kind` must be a string")),
            None => {
                return Err(SpecError::new(self.file, self.source.key(&at), format!("stage `{name}` has no `kind`"))
                    .help(format!("add `kind:` with one of: {}", kinds_list(registry))))
            }
        };
        let Some(kind) = registry.get(&kind_name) else {
            let mut e = self.err_value(&join(&at, "kind"), format!("unknown stage kind `{kind_name}`"));
            let hint = match did_you_mean(&kind_name, registry.kinds().map(|k| k.kind())) {
                Some(s) => format!("did you mean `{s}`? known kinds: {}", kinds_list(registry)),
                None => format!("known kinds: {}", kinds_list(registry)),
            };
            e.help = Some(hint);
            return Err(e);
        };
        let seed = match map.remove("seed") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                self.err_value(&join(&at, "seed"), "invalid type: `seed` must be a non-negative integer")
            })?),
        };
        map.remove("description");
        let parsed = kind.parse(Value::Mapping(map)).map_err(|e| {
            let mut err = self.parse_error(&at, e);
            if err.message.starts_with("unknown field") {
                err.message = format!("{} (stage `{name}`, kind `{kind_name}`; every stage may also have {})",
                    err.message, COMMON_KEYS.map(|k| format!("`{k}`")).join(", "));
            }
            err
        })?;
        if let Err(e) = parsed.stage.check() {
            return Err(SpecError::new(self.file, self.source.value(&join(&at, &e.field)), format!("stage `{name}`: {}", e.message)));
        }
        let params = without_references(parsed.params, &parsed.stage.inputs());
        Ok(StageNode { name, kind: kind.kind(), version: kind.version(), stage: parsed.stage, params, seed })
    }

    fn err_value(&self, path: &str, msg: impl Into<String>) -> SpecError {
        SpecError::new(self.file, self.source.value(path), msg)
    }

    /// Locates a typed-deserialization error: unknown fields point at the
    /// key, missing fields at the enclosing mapping, the rest at the value.
    fn parse_error(&self, prefix: &str, e: ParseError) -> SpecError {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let full = match (prefix.is_empty(), path.is_empty()) {
            (_, true) => prefix.to_string(),
            (true, false) => path,
            (false, false) => join(prefix, &path),
        };
        let message = e.into_inner().to_string();
        let pos = if message.starts_with("unknown field") || message.starts_with("missing field") {
            self.source.key(&full)
        } else {
            self.source.value(&full)
        };
        let mut err = SpecError::new(self.file, pos, message.clone());
        if !full.is_empty() && !message.starts_with("unknown field") {
            err.message = format!("{}: {message}", full);
        }
        err.help = unknown_field_help(&message);
        err
    }
}

/// The parameters minus the fields that name inputs: an input enters the
/// fingerprint by its content hash, so renaming the stage or file it comes
/// from must not change the fingerprint. Object keys are removed; list items
/// become null so the other items keep their positions.
fn without_references(mut params: serde_json::Value, inputs: &[crate::stage::InputDecl]) -> serde_json::Value {
    for decl in inputs {
        let mut parts: Vec<(&str, Option<usize>)> = Vec::new();
        for seg in decl.field.split('.') {
            match seg.split_once('[') {
                Some((k, idx)) => parts.push((k, idx.trim_end_matches(']').parse().ok())),
                None => parts.push((seg, None)),
            }
        }
        remove_path(&mut params, &parts);
    }
    params
}



fn remove_path(v: &mut serde_json::Value, parts: &[(&str, Option<usize>)]) {
    let Some(((key, idx), rest)) = parts.split_first() else { return };
    let Some(obj) = v.as_object_mut() else { return };
    match (idx, rest.is_empty()) {
        (None, true) => {
            obj.remove(*key);
        }
        (None, false) => {
            if let Some(child) = obj.get_mut(*key) {
                remove_path(child, rest);
            }
        }
        (Some(i), last) => {
            if let Some(item) = obj.get_mut(*key).and_then(|a| a.as_array_mut()).and_then(|a| a.get_mut(*i)) {
                if last {
                    *item = serde_json::Value::Null;
                } else {
                    remove_path(item, rest);
                }
            }
        }
    }
}

fn kinds_list(registry: &Registry) -> String {
    registry.kinds().map(|k| k.kind()).collect::<Vec<_>>().join(", ")
}

/// [`load`] for pipeline text already in memory: `file` names it in errors
/// and sets the pipeline's directory and default name, as [`load`] does.
/// The fuzz target and `retort`'s tests parse YAML strings through it.
pub fn load_str(file: &Path, text: &str, overrides: &[String], registry: &Registry) -> Result<Pipeline, SpecError> {
    let mut doc: Value = serde_yaml::from_str(text).map_err(|e| {
        let pos = e.location().map(|l| crate::source::Pos { line: l.line(), col: l.column() });
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        SpecError::new(file, pos, format!("invalid YAML: {msg}"))
    })?;
    for o in overrides {
        apply_override(&mut doc, o).map_err(|m| SpecError::new(file, None, format!("--set {o}: {m}")))?;
    }
    let source = SourceMap::parse(text);
    let typed = Typer { file, source: &source };
    if !doc.is_mapping() {
        return Err(SpecError::new(file, None, "a pipeline file must be a mapping with `stages:`"));
    }
    let header: PipelineHeader =
        serde_path_to_error::deserialize(doc).map_err(|e| typed.parse_error("", e))?;
    let mut stages = Vec::new();
    for (key, value) in header.stages {
        stages.push(typed.stage(key, value, registry)?);
    }
    if stages.is_empty() {
        return Err(SpecError::new(file, source.key("stages"), "the pipeline has no stages"));
    }
    let name = header.name.unwrap_or_else(|| {
        file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    });
    Ok(Pipeline {
        file: file.to_path_buf(),
        dir: absolute_dir(file),
        name,
        seed: header.seed,
        device: header.device,
        models: header.models,
        stages,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_nested_values_with_yaml_types() {
        let mut doc: Value = serde_yaml::from_str("stages:\n  a:\n    kind: x\n").unwrap();
        apply_override(&mut doc, "stages.a.params.lr=0.5").unwrap();
        apply_override(&mut doc, "seed=3").unwrap();
        assert_eq!(doc["stages"]["a"]["params"]["lr"], Value::from(0.5));
        assert_eq!(doc["seed"], Value::from(3));
        assert!(apply_override(&mut doc, "stages.nope.x=1").unwrap_err().contains("no stage named"));
        assert!(apply_override(&mut doc, "novalue").is_err());
    }
}
