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
use crate::executor::ExecutorSpec;
use crate::matrix::{self, Families};
use crate::source::{join, SourceMap};
use crate::stage::{ParseError, Registry, Stage};

/// Keys every stage may have, whatever its kind.
const COMMON_KEYS: [&str; 4] = ["kind", "seed", "description", "executor"];

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A `.gguf` file or a checkpoint directory (`config.json`,
    /// `model.safetensors`, `tokenizer.json`), relative to the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A model built from scratch: a preset name (`tiny`) or a preset with
    /// architecture overrides. Its weights are initialised from the stage's seed.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "tiny_or_preset")]
    #[schemars(schema_with = "tiny_schema")]
    pub tiny: Option<TinyModel>,
    /// A model behind an OpenAI-compatible server (vLLM, SGLang,
    /// llama-server). It samples but has no weights here, so stages that
    /// need weights (train) refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openai: Option<OpenAiModel>,
}

impl ModelSpec {
    /// What identifies the model in fingerprints and item keys. A file's
    /// bytes are hashed elsewhere; a `tiny:` spec is the whole spec; a
    /// remote model is only what names its weights and how it is asked
    /// (`OpenAiModel::identity`): never its URLs, key or concurrency.
    pub fn identity(&self) -> serde_json::Value {
        match &self.openai {
            Some(remote) => serde_json::json!({ "openai": remote.identity() }),
            None => serde_json::to_value(self).expect("model specs serialize"),
        }
    }
}

/// Which OpenAI-compatible API a remote model is asked through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `/v1/completions`: the prompt text as is (`chat: false` stages).
    #[default]
    Completions,
    /// `/v1/chat/completions`: messages; the server applies its chat
    /// template (`chat: true` stages; a plain prompt is sent as a user turn).
    Chat,
}

impl Endpoint {
    /// The path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/completions",
            Endpoint::Chat => "/chat/completions",
        }
    }
}

/// `openai:` — a remote model. Only `model`, `revision`, `endpoint` and
/// `extra_body` identify it (see [`OpenAiModel::identity`]); the rest says
/// where and how fast to ask, and a change there keeps the cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiModel {
    /// The API root, e.g. `http://gpu-1:8000/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Several replicas of the same model; requests are spread over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_urls: Vec<String>,
    /// The model name the server knows (checked against `/v1/models`).
    pub model: String,
    /// What you bump when the server's weights change: retort cannot hash
    /// remote weights, so this is their identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The environment variable holding the API key (sent as a bearer
    /// token). The key itself is never written anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Requests in flight at most, over all base URLs; fewer while the
    /// server answers with errors.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Seconds one request may take before it is retried.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Retries of a request (429, 5xx, timeouts, dropped connections)
    /// before the stage fails.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// completions (default) or chat.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Server-specific request fields (vLLM's `top_k`, `min_p`,
    /// `repetition_penalty`, guided decoding), sent as given and hashed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_body: BTreeMap<String, serde_json::Value>,
}

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    600.0
}
fn default_retries() -> u32 {
    6
}

impl OpenAiModel {
    /// The base URLs, without a trailing `/`.
    pub fn urls(&self) -> Vec<String> {
        self.base_url.iter().chain(&self.base_urls).map(|u| u.trim_end_matches('/').to_string()).collect()
    }

    /// What enters the cache key: the weights' name and revision, the API
    /// and the extra request fields. Destructured, so a new field does not
    /// compile until someone decides whether it changes the samples.
    pub fn identity(&self) -> serde_json::Value {
        let OpenAiModel {
            base_url: _,
            base_urls: _,
            model,
            revision,
            api_key_env: _,
            max_concurrency: _,
            timeout: _,
            max_retries: _,
            endpoint,
            extra_body,
        } = self;
        serde_json::json!({ "model": model, "revision": revision, "endpoint": endpoint, "extra_body": extra_body })
    }
}

/// Architecture presets for from-scratch models (sizes in `retort_lm`'s
/// `LlamaConfig::preset`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TinyPreset {
    /// 4 layers, width 256.
    #[default]
    Tiny,
    /// 8 layers, width 384.
    Small,
    /// 2 layers, width 64.
    Micro,
}

impl TinyPreset {
    /// The preset's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TinyPreset::Tiny => "tiny",
            TinyPreset::Small => "small",
            TinyPreset::Micro => "micro",
        }
    }
}

/// A from-scratch model: a preset and the architecture fields it overrides.
/// Typed, so a typo (`hiden_size`) is a load-time error with its line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TinyModel {
    /// tiny (default), small or micro.
    #[serde(default)]
    pub preset: TinyPreset,
    /// Model width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<usize>,
    /// SwiGLU inner width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Decoder blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_hidden_layers: Option<usize>,
    /// Query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_attention_heads: Option<usize>,
    /// Key/value heads (grouped-query attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width (default hidden_size / num_attention_heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Longest sequence in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rms_norm_eps: Option<f64>,
    /// RoPE base frequency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Whether the output head reuses the token embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
}

/// `tiny: small` or `tiny: {preset: small, hidden_size: 128}`.
fn tiny_or_preset<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TinyModel>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<TinyModel>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a preset name (tiny, small, micro) or a mapping of architecture fields")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let preset = TinyPreset::deserialize(serde::de::value::StrDeserializer::<E>::new(v))?;
            Ok(Some(TinyModel { preset, ..TinyModel::default() }))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            TinyModel::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

fn tiny_schema(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let config = gen.subschema_for::<TinyModel>();
    let preset = gen.subschema_for::<TinyPreset>();
    schemars::json_schema!({"anyOf": [preset, config]})
}

/// `cache:` — the shared remote cache (README, "Remote cache"). Where
/// results are kept does not change them, so none of this enters a
/// fingerprint; credentials never appear here (they come from the AWS
/// environment variables).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// `s3://bucket/prefix`; `RETORT_REMOTE` or `--remote` override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The server of S3-compatible storage, e.g. `http://127.0.0.1:9000`
    /// (default: `AWS_ENDPOINT_URL`, else AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket's region (default: `AWS_REGION`, else `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Fail (exit 2) when the remote cannot be reached, instead of warning
    /// and working from the local cache alone.
    #[serde(default)]
    pub remote_required: bool,
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
    /// Where stages execute unless they set their own: `local` (default) or
    /// `slurm: {...}`. Not hashed.
    #[serde(default)]
    pub executor: ExecutorSpec,
    /// The shared remote cache.
    #[serde(default)]
    pub cache: CacheSpec,
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
    /// What its parameters contribute to the fingerprint (`StageImpl::hashed`).
    pub hashed: serde_json::Value,
    /// Its parameters as written in the file (after `--set`), without the
    /// common keys: what the lock file records and `plan` diffs.
    pub written: serde_json::Value,
    /// Its own `seed:`, overriding the pipeline's.
    pub seed: Option<u64>,
    /// Where it executes: its own `executor:`, else the pipeline's (never hashed).
    pub executor: ExecutorSpec,
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
    /// `cache:` (the remote cache).
    pub cache: CacheSpec,
    /// Stages in file order (a `matrix:` stage's variants in its place).
    pub stages: Vec<StageNode>,
    /// `matrix:` stages: family name -> its variants' names.
    pub families: Families,
    /// Positions of every key, for later errors.
    pub source: SourceMap,
    /// The `--set` overrides it was loaded with (a Slurm job loads it with
    /// the same ones).
    pub overrides: Vec<String>,
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
    load_str(file, &text, overrides, registry)
}

/// [`load`] for pipeline text already in memory: `file` names it in errors
/// and sets the pipeline's directory and default name. The fuzz target and
/// tests parse YAML strings through it.
pub fn load_str(file: &Path, text: &str, overrides: &[String], registry: &Registry) -> Result<Pipeline, SpecError> {
    let mut doc: Value = serde_yaml::from_str(text).map_err(|e| {
        let pos = e.location().map(|l| crate::source::Pos { line: l.line(), col: l.column() });
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        SpecError::new(file, pos, format!("invalid YAML: {msg}"))
    })?;
    for o in overrides {
        let o = params_alias(&doc, o, registry);
        apply_override(&mut doc, &o).map_err(|m| SpecError::new(file, None, format!("--set {o}: {m}")))?;
    }
    let mut source = SourceMap::parse(text);
    if !doc.is_mapping() {
        return Err(SpecError::new(file, None, "a pipeline file must be a mapping with `stages:`"));
    }
    let header: PipelineHeader = serde_path_to_error::deserialize(doc)
        .map_err(|e| Typer { file, source: &source, families: &Families::new(), executor: &ExecutorSpec::Local }.parse_error("", e))?;
    if let Some(url) = &header.cache.remote {
        let remote = retort_remote::RemoteConfig { url: url.clone(), endpoint: None, region: None };
        if let Err(e) = remote.bucket_and_prefix() {
            return Err(SpecError::new(file, source.value("cache.remote"), e.to_string()));
        }
    }
    let (expanded, families) = matrix::expand(header.stages, file, &mut source)?;
    let typed = Typer { file, source: &source, families: &families, executor: &header.executor };
    let mut stages = Vec::new();
    for (key, value) in expanded {
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
        cache: header.cache,
        stages,
        families,
        source,
        overrides: overrides.to_vec(),
    })
}

fn absolute_dir(file: &Path) -> PathBuf {
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// `stages.S.params.k=v` addresses a `command` stage's `params:`; for a kind
/// that has no `params` (train, generate...) it means the stage's own key
/// `k`, so the same documented form works for every kind.
fn params_alias(doc: &Value, text: &str, registry: &Registry) -> String {
    let Some((path, raw)) = text.split_once('=') else { return text.to_string() };
    let keys: Vec<&str> = path.split('.').collect();
    if keys.len() < 4 || keys[0] != "stages" || keys[2] != "params" {
        return text.to_string();
    }
    let Some(stage) = doc.get("stages").and_then(|s| s.get(keys[1])) else { return text.to_string() };
    let Some(kind) = stage.get("kind").and_then(Value::as_str).and_then(|k| registry.get(k)) else {
        return text.to_string();
    };
    if kind.valid_keys(stage).iter().any(|k| k == "params") {
        return text.to_string();
    }
    let rest: Vec<&str> = keys.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, k)| *k).collect();
    format!("{}={raw}", rest.join("."))
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
    families: &'a Families,
    /// The pipeline's `executor:`, for stages without their own.
    executor: &'a ExecutorSpec,
}

impl Typer<'_> {
    fn stage(&self, key: Value, value: Value, registry: &Registry) -> Result<StageNode, SpecError> {
        let Value::String(name) = key else {
            return Err(SpecError::new(self.file, self.source.key("stages"), "stage names must be strings"));
        };
        let at = join("stages", &name);
        // A matrix variant's name is `family@k=v,...`, made by us from a
        // checked family name.
        let family = name.split_once('@').filter(|(f, _)| self.families.contains_key(*f)).map_or(name.as_str(), |(f, _)| f);
        if family.is_empty() || !family.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
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
        // Where it runs is not what it computes: kept out of `written` and
        // the kind's parameters, so out of the lock and the fingerprint.
        let executor = match map.remove("executor") {
            None | Some(Value::Null) => self.executor.clone(),
            Some(v) => serde_path_to_error::deserialize(v).map_err(|e| self.parse_error(&join(&at, "executor"), e))?,
        };
        // YAML scalars map onto JSON ones (0.8 stays 0.8); a mapping with
        // non-string keys fails typing below anyway.
        let written = serde_json::to_value(&map).unwrap_or(serde_json::Value::Null);
        let spec = Value::Mapping(map);
        let parsed = kind.parse(spec.clone()).map_err(|e| {
            let mut err = self.parse_error_in(&at, e, Some(&spec));
            if let Some(field) = unknown_field(&err.message) {
                // A key the chosen variant (objective, task...) does not take:
                // list the keys that are valid for this very stage.
                let keys = kind.valid_keys(&spec);
                let common = COMMON_KEYS.map(|k| format!("`{k}`")).join(", ");
                err.message = format!("unknown field `{field}` (stage `{name}`, kind `{kind_name}`)");
                if !keys.is_empty() && !keys.contains(&field) {
                    err.help = Some(match did_you_mean(&field, keys.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`? valid keys here: {}; every stage may also have {common}", quoted(&keys)),
                        None => format!("valid keys here: {}; every stage may also have {common}", quoted(&keys)),
                    });
                }
            }
            err
        })?;
        if let Err(e) = parsed.stage.check() {
            return Err(SpecError::new(self.file, self.source.value(&join(&at, &e.field)), format!("stage `{name}`: {}", e.message)));
        }
        Ok(StageNode { name, kind: kind.kind(), version: kind.version(), stage: parsed.stage, hashed: parsed.hashed, written, seed, executor })
    }

    fn err_value(&self, path: &str, msg: impl Into<String>) -> SpecError {
        SpecError::new(self.file, self.source.value(path), msg)
    }

    /// Locates a typed-deserialization error: unknown fields point at the
    /// key, missing fields at the enclosing mapping, the rest at the value.
    fn parse_error(&self, prefix: &str, e: ParseError) -> SpecError {
        self.parse_error_in(prefix, e, None)
    }

    /// As [`Self::parse_error`]; `spec` is the stage's mapping, to find the
    /// field a type error is about when serde lost its path (inside a
    /// `task:` or `objective:` block, which serde buffers).
    fn parse_error_in(&self, prefix: &str, e: ParseError, spec: Option<&Value>) -> SpecError {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        let path = match (path.is_empty(), spec.and_then(|s| offending_value(&message).and_then(|v| find_scalar(s, &v, "")))) {
            (true, Some(found)) => found,
            _ => path,
        };
        let full = match (prefix.is_empty(), path.is_empty()) {
            (_, true) => prefix.to_string(),
            (true, false) => path,
            (false, false) => join(prefix, &path),
        };
        // Fields of a flattened block (a train objective, a task generator)
        // report the enclosing path; point at the key itself.
        let full = match unknown_field(&message) {
            Some(f) if full.rsplit('.').next().is_none_or(|last| last != f) => join(&full, &f),
            _ => full,
        };
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

/// The value a serde type error quotes: `invalid type: string "many", ...`
/// -> `many`; `invalid value: integer `5`, ...` -> `5`.
fn offending_value(message: &str) -> Option<String> {
    if !(message.starts_with("invalid type") || message.starts_with("invalid value") || message.starts_with("unknown variant")) {
        return None;
    }
    let head = message.split(", expected").next().unwrap_or(message);
    if let Some((_, rest)) = head.split_once("string \"") {
        return rest.rsplit_once('"').map(|(v, _)| v.to_string());
    }
    let (_, rest) = head.split_once('`')?;
    rest.split_once('`').map(|(v, _)| v.to_string())
}

/// The path (under `prefix`) of the one scalar of `v` that reads `text`.
fn find_scalar(v: &Value, text: &str, prefix: &str) -> Option<String> {
    match v {
        Value::Mapping(m) => m.iter().find_map(|(k, x)| {
            let k = k.as_str()?;
            find_scalar(x, text, &join(prefix, k))
        }),
        Value::Sequence(items) => items.iter().enumerate().find_map(|(i, x)| find_scalar(x, text, &format!("{prefix}[{i}]"))),
        Value::String(s) if s == text => Some(prefix.to_string()),
        Value::Number(n) if n.to_string() == text => Some(prefix.to_string()),
        Value::Bool(b) if b.to_string() == text => Some(prefix.to_string()),
        _ => None,
    }
}

/// `unknown field `x`, expected ...` -> `x`.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(f, _)| f.to_string())
}

fn quoted(keys: &[String]) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

fn kinds_list(registry: &Registry) -> String {
    registry.kinds().map(|k| k.kind()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_models_identity_is_its_name_revision_endpoint_and_extra_body() {
        let spec = |m: OpenAiModel| ModelSpec { path: None, tiny: None, openai: Some(m) };
        let base: OpenAiModel = serde_yaml::from_str("{base_url: 'http://a:1/v1', model: m, revision: '1', api_key_env: K}").unwrap();
        let id = spec(base.clone()).identity();
        let same = [
            OpenAiModel { base_url: None, base_urls: vec!["http://b/v1".into(), "http://c/v1".into()], ..base.clone() },
            OpenAiModel { api_key_env: Some("OTHER".into()), max_concurrency: 1, timeout: 5.0, max_retries: 0, ..base.clone() },
        ];
        for m in same {
            assert_eq!(spec(m).identity(), id, "where and how fast to ask is not identity");
        }
        let differ = [
            OpenAiModel { model: "n".into(), ..base.clone() },
            OpenAiModel { revision: Some("2".into()), ..base.clone() },
            OpenAiModel { endpoint: Endpoint::Chat, ..base.clone() },
            OpenAiModel { extra_body: [("top_k".to_string(), serde_json::json!(5))].into(), ..base.clone() },
        ];
        for m in differ {
            assert_ne!(spec(m).identity(), id);
        }
        assert!(!id.to_string().contains("http") && !id.to_string().contains("\"K\""), "{id}");
    }

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
