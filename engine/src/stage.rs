//! What a stage kind is, from the engine's point of view.
//!
//! A kind (`command`, `task`, `train`...) is a typed parameter struct that
//! implements [`Stage`]. The engine never looks inside it: it asks the stage
//! for its inputs (the DAG's edges), its outputs, and hashes the struct's
//! serialized form (defaults filled in) as the stage's parameters. Adding a
//! kind is writing one struct and one `run`, then registering it.

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

/// One input of a stage: the name the stage knows it by, where it comes from,
/// and the field of the stage spec that named it (to point errors at).
#[derive(Clone, Debug)]
pub struct InputDecl {
    /// Name inside the stage (`src`, `model`, `data`).
    pub name: String,
    /// Where the bytes come from.
    pub source: Source,
    /// Path of the YAML field inside the stage spec, e.g. `inputs.src`.
    pub field: String,
}

impl InputDecl {
    /// Shorthand constructor.
    pub fn new(name: impl Into<String>, source: Source, field: impl Into<String>) -> Self {
        InputDecl { name: name.into(), source, field: field.into() }
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

/// A parsed stage with the canonical form of its parameters.
pub struct Parsed {
    /// The stage.
    pub stage: Box<dyn Stage>,
    /// Its parameters as serialized (defaults filled), hashed into the
    /// fingerprint and written to the lock file.
    pub params: serde_json::Value,
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
}

/// The usual way to write a kind: a serde struct that is also the stage.
pub trait StageImpl: Stage + Serialize + DeserializeOwned + JsonSchema + 'static {
    /// The `kind:` string.
    const KIND: &'static str;
    /// See [`StageKind::version`].
    const VERSION: u32;
    /// See [`StageKind::about`].
    const ABOUT: &'static str;
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
        // A struct of plain data always serializes; a failure here is a bug in
        // the kind, not bad input.
        let params = serde_json::to_value(&stage).expect("stage parameters serialize to JSON");
        Ok(Parsed { stage: Box::new(stage), params })
    }
    fn schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        gen.subschema_for::<T>()
    }
}

/// All stage kinds a binary knows, by `kind:` string.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Box<dyn StageKind>>,
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

    /// All kinds, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &dyn StageKind> {
        self.kinds.values().map(|k| k.as_ref())
    }
}
