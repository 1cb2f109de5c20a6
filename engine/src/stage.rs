//! What a stage kind is, from the engine's point of view.
//!
//! A kind (`command`, `task`, `train`...) is a typed parameter struct that
//! implements [`Stage`]. The engine never looks inside it: it asks the stage
//! for its inputs (the DAG's edges), its outputs, and what it hashes.
//!
//! Three things that used to be one serde derive are kept apart on purpose:
//! - serde + schemars parse the YAML and describe it (`retort schema`);
//! - [`StageImpl::hashed`] says, field by field, what enters the
//!   fingerprint (built by exhaustive destructuring, so a new field does not
//!   compile until someone decides whether it changes the output);
//! - the lock file records the parameters as the user wrote them.
//!
//! So a serde attribute is never a cache decision. Adding a kind is writing
//! one struct, its `hashed` and its `run`, then registering it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;


use crate::context::StageCtx;

/// Metrics a stage reports (accuracy, rows kept...). Kept in the run cache
/// and the lock file, shown in the summary.
pub type Metrics = BTreeMap<String, serde_json::Value>;

/// Where one input of a stage comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An output of another stage, written `stage` (its first output) or
    /// `stage.output`.
    Stage {
        /// The producing stage.
        stage: String,
        /// The output name; `None` means the stage's first output.
        output: Option<String>,
    },
    /// A name that is either a stage (its first output) or an entry of the
    /// pipeline's `models:`; stages win.
    Model(String),
    /// A file or directory outside the cache, relative to the pipeline file.
    File(PathBuf),
}

impl Source {
    /// Parses `stage` or `stage.output`.
    pub fn stage_ref(text: &str) -> Source {
        match text.split_once('.') {
            Some((stage, output)) => Source::Stage { stage: stage.into(), output: Some(output.into()) },
            None => Source::Stage { stage: text.into(), output: None },
        }
    }
}

/// What an artifact holds. Inputs say what they need and outputs what they
/// are, so `export` pointed at a model, or `generate` at a `tiny:` spec, is a
/// load-time error naming the field instead of an OS error mid-run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// A JSON Lines dataset.
    Rows,
    /// A model: a checkpoint directory, a GGUF file, or a `models:` entry
    /// (which may be a `tiny:` spec without weights).
    Model,
    /// A model with weights: not a `tiny:` spec or a remote model (training
    /// and log-prob scoring need weights).
    Weights,
    /// A model behind an OpenAI-compatible server (`openai:`): it samples,
    /// but has no weights here.
    Endpoint,
    /// Anything that samples: a model with weights or a remote one
    /// (generate, evaluate).
    Sampler,
    /// A process reward model: weights trained by `train` with `objective:
    /// prm` (a model file may be one too; that is checked when it is read).
    Prm,
    /// Any other file (a Markdown table, a log).
    Text,
    /// Anything (a `command` stage's outputs, files outside the cache).
    Any,
}

impl Artifact {
    /// Whether an artifact of type `have` can feed an input that needs `self`.
    pub fn accepts(self, have: Artifact) -> bool {
        use Artifact::*;
        matches!(
            (self, have),
            (Any, _) | (_, Any) | (Rows, Rows) | (Text, Text) | (Model, Model | Weights | Prm) | (Weights, Weights | Prm) | (Sampler, Weights | Endpoint | Prm) | (Prm, Prm)
        )
    }

    /// In words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Artifact::Rows => "a dataset (JSON Lines rows)",
            Artifact::Model => "a model",
            Artifact::Weights => "a model with weights",
            Artifact::Endpoint => "a remote model",
            Artifact::Sampler => "a model with weights (or an `openai:` endpoint)",
            Artifact::Prm => "a process reward model",
            Artifact::Text => "a text file",
            Artifact::Any => "any artifact",
        }
    }
}

/// The fields every row of a dataset has, as far as is known at load time:
/// `None` when it depends on the data (a file, a command's output).
pub type Fields = Option<std::collections::BTreeSet<String>>;

/// A field each row of an input must have (any one of `any_of`), and why,
/// for the load-time message.
#[derive(Clone, Debug)]
pub struct Need {
    /// Acceptable field names (`prompt` or `messages`).
    pub any_of: Vec<&'static str>,
    /// Who reads it, e.g. "objective grpo's Countdown reward".
    pub why: &'static str,
}

/// What a stage asks of the model it samples beyond samples, checked at load
/// time against the `models:` entry it names: a remote server answers chat
/// turns only on its chat endpoint and plain continuations only on its
/// completions endpoint, and only a server returns the top alternatives'
/// log-probs. So a mismatch fails before the run, at the stage field that
/// asked, instead of at the first request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Chat turns (`chat: true`): a local model applies its own template, a
    /// remote one needs `endpoint: chat`.
    ChatTurns,
    /// Text the model continues as is (a cascade's answer step, which
    /// follows the model's own rationale): a remote one needs
    /// `endpoint: completions`.
    PlainText,
    /// The top alternatives' log-probs at each generated token: a remote
    /// model only (a local one gives the sampled tokens' log-probs).
    TopLogprobs,
}

/// One input of a stage: the name the stage knows it by, where it comes from,
/// the field of the stage spec that named it (to point errors at), and what
/// it must hold.
#[derive(Clone, Debug)]
pub struct InputDecl {
    /// Name inside the stage (`src`, `model`, `data`).
    pub name: String,
    /// Where the bytes come from.
    pub source: Source,
    /// Path of the YAML field inside the stage spec, e.g. `inputs.src`.
    pub field: String,
    /// What the stage needs there; checked against the producer at load time.
    pub expects: Artifact,
    /// Row fields the stage reads; checked at load time against what the
    /// producer is known to write (see [`Stage::output_fields`]).
    pub needs: Vec<Need>,
    /// What the stage asks of the model here, each with the stage field
    /// that asks it (`chat`, `cascade`, `logprobs`), for the message.
    pub asks: Vec<(Ask, String)>,
}

impl InputDecl {
    /// An input that takes any artifact.
    pub fn new(name: impl Into<String>, source: Source, field: impl Into<String>) -> Self {
        InputDecl { name: name.into(), source, field: field.into(), expects: Artifact::Any, needs: vec![], asks: vec![] }
    }

    /// A dataset read from `STAGE` or `STAGE.OUTPUT`, named by `field`.
    pub fn rows(name: impl Into<String>, reference: &str, field: impl Into<String>) -> Self {
        InputDecl { expects: Artifact::Rows, ..Self::new(name, Source::stage_ref(reference), field) }
    }

    /// Each row must have one of `any_of` (read by `why`).
    pub fn needing(mut self, any_of: &[&'static str], why: &'static str) -> Self {
        self.needs.push(Need { any_of: any_of.to_vec(), why });
        self
    }

    /// The model must give `ask`, which the stage's `field` requests.
    pub fn asking(mut self, ask: Ask, field: impl Into<String>) -> Self {
        self.asks.push((ask, field.into()));
        self
    }

    /// A model that samples (a model with weights, or an `openai:` entry),
    /// named by `field`: what generate and evaluate read.
    pub fn sampler(name: impl Into<String>, reference: &str, field: impl Into<String>) -> Self {
        InputDecl { expects: Artifact::Sampler, ..Self::new(name, Source::Model(reference.to_string()), field) }
    }

    /// A model (stage output or `models:` entry), named by `field`.
    pub fn model(name: impl Into<String>, reference: &str, field: impl Into<String>, needs_weights: bool) -> Self {
        let expects = if needs_weights { Artifact::Weights } else { Artifact::Model };
        InputDecl { expects, ..Self::new(name, Source::Model(reference.to_string()), field) }
    }
}

/// A configured stage, ready to plan and run.
pub trait Stage: Send + Sync + fmt::Debug {
    /// The inputs; their content hashes enter the fingerprint.
    fn inputs(&self) -> Vec<InputDecl>;
    /// The names of the artifacts `run` writes (at `ctx.output_path(name)`).
    fn outputs(&self) -> Vec<String>;
    /// Whether the pipeline seed affects the result. Stages that make no
    /// random choice say no, so changing the seed does not re-run them.
    fn uses_seed(&self) -> bool {
        true
    }
    /// Checks combinations of parameters that serde types cannot express.
    /// An error names the field (path inside the stage, e.g. `numbers`)
    /// and what is wrong; it is reported with the file's line and column.
    fn check(&self) -> Result<(), FieldError> {
        Ok(())
    }
    /// What output `name` holds (default: a dataset).
    fn output_type(&self, _name: &str) -> Artifact {
        Artifact::Rows
    }
    /// The fields every row of output `name` has, given what is known of
    /// each input's (`input(NAME)`); `None` (the default) when that depends
    /// on the data. Lets a wrong pairing (GRPO on rows without `nums`) fail
    /// at load time.
    fn output_fields(&self, _name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        None
    }
    /// The output holding a per-step log (one JSON object per line), which
    /// `retort show --metrics` renders as a table; `None` if the kind has none.
    fn step_log(&self) -> Option<&'static str> {
        None
    }
    /// Does the work. Errors are reported with the stage's name; the
    /// stage's partial outputs are discarded.
    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics>;
    /// Files `run` also writes outside the cache, as (output name, path
    /// relative to the pipeline file), each a copy of that output's bytes.
    /// A cache hit does not run the stage, so the engine checks these
    /// instead and restores one that is missing or changed from the stored
    /// output, as DVC's checkout does.
    fn exports(&self) -> Vec<(String, PathBuf)> {
        Vec::new()
    }
}

/// Exactly what a stage's parameters contribute to its fingerprint: named
/// values in the order the kind lists them (the canonical JSON sorts keys,
/// so the order is for readers). Built by [`StageImpl::hashed`].
///
/// Numbers go in as the spec holds them (f64, never a widened f32), and
/// fields that name inputs stay out: inputs enter by content hash, so
/// renaming the stage or file they come from keeps the cache.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hashed(serde_json::Map<String, serde_json::Value>);

impl Hashed {
    /// Nothing hashed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name = value`.
    pub fn field(mut self, name: &str, value: impl Serialize) -> Self {
        // Plain data (numbers, strings, lists, maps of them) always
        // serializes; a failure is a bug in the kind.
        let v = serde_json::to_value(value).expect("hashed parameters serialize to JSON");
        self.0.insert(name.to_string(), v);
        self
    }

    /// Adds `name = value` only when `value` is `Some`: an option that is
    /// absent hashes like a stage written before the option existed.
    pub fn opt<T: Serialize>(self, name: &str, value: &Option<T>) -> Self {
        match value {
            Some(v) => self.field(name, v),
            None => self,
        }
    }

    /// Adds every field of `other` (e.g. an objective's own block).
    pub fn extend(mut self, other: Hashed) -> Self {
        self.0.extend(other.0);
        self
    }

    /// The JSON object that is hashed.
    pub fn into_value(self) -> serde_json::Value {
        serde_json::Value::Object(self.0)
    }
}

/// A problem with one field of a stage spec.
#[derive(Debug, Clone)]
pub struct FieldError {
    /// Path of the field inside the stage spec (`numbers`, `inputs.src`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// Shorthand constructor.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// A parsed stage with what it hashes.
pub struct Parsed {
    /// The stage.
    pub stage: Box<dyn Stage>,
    /// What enters the fingerprint ([`StageImpl::hashed`]).
    pub hashed: serde_json::Value,
}

/// Error from typed deserialization, with the path of the offending field.
pub type ParseError = serde_path_to_error::Error<serde_yaml::Error>;

/// A stage kind: the factory the registry keeps for each `kind:` value.
pub trait StageKind: Send + Sync {
    /// The `kind:` string.
    fn kind(&self) -> &'static str;
    /// Bumped whenever the kind's output for the same parameters and inputs
    /// may change, so old cache entries are not reused.
    fn version(&self) -> u32;
    /// One line for `retort schema` and error hints.
    fn about(&self) -> &'static str;
    /// Builds a stage from its spec (without the common keys `kind`, `seed`,
    /// `description`).
    fn parse(&self, spec: serde_yaml::Value) -> Result<Parsed, ParseError>;
    /// JSON Schema of the kind's parameters, as a `$ref` into `gen`'s
    /// definitions (which then hold the full schema).
    fn schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema;
    /// The keys a stage of this kind may have given its spec (a train
    /// objective or task generator adds its own), for error messages.
    fn valid_keys(&self, spec: &serde_yaml::Value) -> Vec<String>;
}

/// The usual way to write a kind: a serde struct that is also the stage.
pub trait StageImpl: Stage + DeserializeOwned + JsonSchema + 'static {
    /// The `kind:` string.
    const KIND: &'static str;
    /// See [`StageKind::version`].
    const VERSION: u32;
    /// See [`StageKind::about`].
    const ABOUT: &'static str;
    /// What the parameters contribute to the fingerprint. Write it as
    /// `let Self { a, b, input: _ } = self;` so that adding a field is a
    /// compile error here until someone decides whether it is hashed.
    fn hashed(&self) -> Hashed;
}

/// Adapts a [`StageImpl`] to a [`StageKind`].
pub struct KindOf<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for KindOf<T> {
    fn default() -> Self {
        KindOf(std::marker::PhantomData)
    }
}

impl<T: StageImpl> StageKind for KindOf<T> {
    fn kind(&self) -> &'static str {
        T::KIND
    }
    fn version(&self) -> u32 {
        T::VERSION
    }
    fn about(&self) -> &'static str {
        T::ABOUT
    }
    fn parse(&self, spec: serde_yaml::Value) -> Result<Parsed, ParseError> {
        let stage: T = serde_path_to_error::deserialize(spec)?;
        let hashed = stage.hashed().into_value();
        Ok(Parsed { stage: Box::new(stage), hashed })
    }
    fn schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        gen.subschema_for::<T>()
    }
    fn valid_keys(&self, spec: &serde_yaml::Value) -> Vec<String> {
        let schema = schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator()
            .into_root_schema_for::<T>();
        let spec = serde_json::to_value(spec).unwrap_or_default();
        let mut keys = std::collections::BTreeSet::new();
        collect_keys(schema.as_value(), &spec, &mut keys);
        keys.into_iter().collect()
    }
}

/// Property names of `schema` that apply to `spec`: its own, plus those of
/// every `oneOf`/`anyOf`/`allOf` branch whose constant-valued properties
/// (an internally tagged enum's tag) match the spec's values.
fn collect_keys(schema: &serde_json::Value, spec: &serde_json::Value, keys: &mut std::collections::BTreeSet<String>) {
    let Some(obj) = schema.as_object() else { return };
    if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            let tag = v.get("const").or_else(|| v.get("enum").and_then(|e| e.as_array()).filter(|a| a.len() == 1).map(|a| &a[0]));
            if let (Some(tag), Some(have)) = (tag, spec.get(k)) {
                if tag != have {
                    return;
                }
            }
        }
    }
    // A branch whose tag does not match contributes nothing (checked above
    // before any key is taken).
    if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
        keys.extend(props.keys().cloned());
    }
    for comb in ["oneOf", "anyOf", "allOf"] {
        for branch in obj.get(comb).and_then(|b| b.as_array()).into_iter().flatten() {
            collect_keys(branch, spec, keys);
        }
    }
}

/// All stage kinds a binary knows, by `kind:` string.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Box<dyn StageKind>>,
    model_check: Option<crate::preflight::ModelCheck>,
    device_check: Option<crate::preflight::DeviceCheck>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a kind written as a [`StageImpl`].
    pub fn register<T: StageImpl>(&mut self) -> &mut Self {
        self.add(Box::new(KindOf::<T>::default()))
    }

    /// Registers any [`StageKind`].
    pub fn add(&mut self, kind: Box<dyn StageKind>) -> &mut Self {
        self.kinds.insert(kind.kind(), kind);
        self
    }

    /// Looks a kind up.
    pub fn get(&self, kind: &str) -> Option<&dyn StageKind> {
        self.kinds.get(kind).map(|k| k.as_ref())
    }

    /// Sets how `run` checks a remote model before the stages that read it
    /// run (see [`crate::preflight`]).
    pub fn check_models_with(&mut self, check: crate::preflight::ModelCheck) -> &mut Self {
        self.model_check = Some(check);
        self
    }

    /// The remote-model check, if one is registered.
    pub fn model_check(&self) -> Option<crate::preflight::ModelCheck> {
        self.model_check
    }

    /// Sets how `run` checks the pipeline's `device:` before anything runs
    /// (see [`crate::preflight`]).
    pub fn check_device_with(&mut self, check: crate::preflight::DeviceCheck) -> &mut Self {
        self.device_check = Some(check);
        self
    }

    /// The device check, if one is registered.
    pub fn device_check(&self) -> Option<crate::preflight::DeviceCheck> {
        self.device_check
    }

    /// All kinds, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &dyn StageKind> {
        self.kinds.values().map(|k| k.as_ref())
    }
}
