//! The stage kinds retort ships, and the registry that holds them.
//!
//! Where things go:
//! - [`kinds`]: one file per stage kind (`kind: train` is `kinds/train.rs`):
//!   its typed parameters, what it hashes, and its `run`. A new kind is a new
//!   file here plus one line in [`registry`].
//! - [`common`]: what kinds share — loading a model from an input, the
//!   item-cached sampler, sampling settings, prompt templates, the row
//!   fields that are the contract between kinds, and the rows-in/rows-out
//!   helper.
//! - [`methods`]: pure functions per method and task (Countdown, SkillFactory
//!   traces, CasCoD's split, evaluation metrics): rows in, rows out, no
//!   engine, no model, no files; tested exhaustively.
//! - [`verifiers`]: answer checkers (`verifier:` of verify and evaluate).
//! - [`stats`]: intervals and paired tests for comparing arms.
//! - [`openai`]: OpenAI-compatible servers as a model backend (`openai:`
//!   models), behind the same sampler and item cache as local models.
//!
//! A new training objective goes in `retort_lm::train` (the loss) and in
//! `kinds/train.rs`'s `Objective` (its parameters); a new verifier in
//! `verifiers/`.

pub mod common;
pub mod io;
pub mod kinds;
pub mod methods;
pub mod openai;
pub mod stats;
pub mod verifiers;

pub use kinds::{
    CascadeSplitStage, CllScoreStage, CommandStage, ComposeStage, DiversifyStage, EvaluateStage, ExportFormat, ExportStage, GenerateStage,
    HintRewriteStage, InfluenceStage, JudgeStage, PairsStage, PrmFilterStage, SelectStage, SynthesizeStage, TaskStage, TrainStage, VerifyStage,
};
pub use kinds::StepSearchStage;
#[doc(hidden)]
pub mod fuzzing;

use retort_engine::Registry;

/// Every kind this crate provides.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<CommandStage>()
        .register::<TaskStage>()
        .register::<VerifyStage>()
        .register::<SelectStage>()
        .register::<ComposeStage>()
        .register::<CascadeSplitStage>()
        .register::<ExportStage>()
        .register::<GenerateStage>()
        .register::<HintRewriteStage>()
        .register::<CllScoreStage>()
        .register::<SynthesizeStage>()
        .register::<InfluenceStage>()
        .register::<PairsStage>()
        .register::<JudgeStage>()
        .register::<PrmFilterStage>()
        .register::<DiversifyStage>()
        .register::<StepSearchStage>()
        .register::<EvaluateStage>()
        .register::<TrainStage>()
        .check_models_with(openai::check)
        .check_device_with(common::model::check_device);
    r
}
