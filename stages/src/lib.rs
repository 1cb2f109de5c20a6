//! The stage kinds retort ships, and the registry that holds them.
//!
//! Each module is one kind: a serde parameter struct that implements the
//! engine's `Stage` trait. `data/` holds the pure row-processing functions
//! (Countdown, verifier, SkillFactory composition, CasCoD split) that the
//! kinds wrap, so they are testable without the engine.

pub mod data;

mod cascade;
mod command;
mod compose;
mod evaluate;
mod export;
#[doc(hidden)]
pub mod fuzzing;
mod generate;
pub mod model_io;
mod sampler;
mod task;
mod template;
mod train;
mod verify;

pub use cascade::CascadeSplitStage;
pub use command::CommandStage;
pub use compose::{ComposeStage, ReflectFrom};
pub use evaluate::EvaluateStage;
pub use export::{ExportFormat, ExportStage};
pub use generate::{GenerateStage, Sampling};
pub use task::{Arity, TaskName, TaskStage};
pub use train::{Objective, Schedule, TrainStage};
pub use verify::{Verifier, VerifyStage};

use retort_engine::Registry;

/// Every kind this crate provides.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<CommandStage>()
        .register::<TaskStage>()
        .register::<VerifyStage>()
        .register::<ComposeStage>()
        .register::<CascadeSplitStage>()
        .register::<ExportStage>()
        .register::<GenerateStage>()
        .register::<EvaluateStage>()
        .register::<TrainStage>();
    r
}
