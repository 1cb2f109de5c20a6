//! The retort engine: pipeline files in, a planned and executed DAG out.
//!
//! `spec` reads YAML into typed stages, `graph` resolves references and
//! orders them, `exec` plans them and runs the plan against the content-addressed
//! store of `retort-cache`, and `cli` is the command line on top. Stage kinds
//! live elsewhere (the `retort-stages` crate) and are registered into a
//! [`Registry`].
#![warn(missing_docs)]

pub mod cli;
mod context;
mod error;
pub mod events;
mod exec;
mod executor;
mod exports;
mod fingerprint;
mod graph;
mod matrix;
mod preflight;
mod schema;
mod source;
mod spec;
mod stage;
mod steplog;
mod summary;

pub use context::{read_jsonl, write_jsonl, InputArtifact, Producer, Row, StageCtx};
pub use error::{did_you_mean, BadInput, SpecError};
pub use exec::{Decision, Executor, Options, Outcome, Plan, Step};
pub use executor::{ExecutorSpec, SlurmSpec};
pub use exports::{Drift, Restore};
pub use fingerprint::{first_difference, Hashable, CACHE_KEY_VERSION};
pub use graph::{Graph, Input, Resolved};
pub use matrix::Families;
pub use preflight::{remote_models, DeviceCheck, ModelCheck};
pub use schema::pipeline_schema;
pub use source::{Pos, SourceMap};
pub use spec::load_str;
pub use spec::{apply_override, load, Device, Endpoint, ModelSpec, OpenAiModel, Pipeline, PipelineHeader, StageNode, TinyModel, TinyPreset};
pub use stage::{Artifact, Ask, FieldError, Fields, Hashed, InputDecl, Need, KindOf, Metrics, ParseError, Parsed, Registry, Source, Stage, StageImpl, StageKind};
pub use steplog::{read_step_log, StepRow};
pub use summary::{OutputSummary, RunSummary, StageSummary, Status};
