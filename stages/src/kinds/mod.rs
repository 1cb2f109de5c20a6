//! One module per stage kind. Each is a serde parameter struct that
//! implements the engine's `Stage` (inputs, outputs, run) and `StageImpl`
//! (kind name, version, and `hashed`: exactly what enters the fingerprint).

pub mod cascade_split;
pub mod cll_score;
pub mod command;
pub mod compose;
pub mod diversify;
pub mod evaluate;
pub mod evaluate_cascade;
pub mod export;
pub mod generate;
pub mod hint_rewrite;
pub mod influence;
pub mod judge;
pub mod pairs;
pub mod prm_filter;
pub mod select;
pub mod step_search;
pub mod synthesize;
pub mod task;
pub mod train;
mod train_cascade;
pub mod verify;

pub use cascade_split::CascadeSplitStage;
pub use cll_score::CllScoreStage;
pub use command::CommandStage;
pub use compose::ComposeStage;
pub use diversify::DiversifyStage;
pub use evaluate::EvaluateStage;
pub use export::{ExportFormat, ExportStage};
pub use generate::GenerateStage;
pub use hint_rewrite::HintRewriteStage;
pub use influence::InfluenceStage;
pub use judge::JudgeStage;
pub use pairs::PairsStage;
pub use prm_filter::PrmFilterStage;
pub use select::SelectStage;
pub use step_search::StepSearchStage;
pub use synthesize::SynthesizeStage;
pub use task::TaskStage;
pub use train::TrainStage;
pub use verify::VerifyStage;
