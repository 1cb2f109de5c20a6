//! Training: the loops the `train` stage calls ([`train_sft`],
//! [`train_dpo`], [`train_grpo`]) and the numerics they use.
//!
//! - [`trainer`]: [`TrainConfig`], [`StepMetrics`], batching, truncation,
//!   the step plan; `optim` (private): AdamW, accumulation, global-norm clipping;
//!   `adamw` (private): AdamW fused into one pass per parameter on the CPU.
//! - [`sft`] (with IDFT and DFT's token losses), [`dpo`], [`grpo`]: the objectives' loops; [`parts`]:
//!   SFT with per-part token means (CasCoD, Std-CoT, the weighted control).
//! - [`losses`]: masked SFT, token log-probs, DPO, GRPO clipped surrogate
//!   with k3 KL, IDFT (METHODS §0.2–0.4, §4.2).
//! - [`advantages`]: GRPO group-normalized advantages (METHODS §0.2).
//! - [`schedule`]: learning-rate schedules.
//! - [`state`]: the optimizer's half of a checkpoint (AdamW moments, step).
//! - [`prm`]: process reward models, Math-Shepherd's two-token classifier at each step's end.
//! - [`influence`]: local data influence, one AdamW step per example (METHODS §5 M5).

mod adamw;
pub mod advantages;
pub mod dpo;
pub mod grpo;
pub mod influence;
pub mod losses;
mod optim;
pub mod parts;
pub mod prm;
pub mod schedule;
pub mod sft;
pub mod state;
pub mod trainer;

#[cfg(test)]
mod loop_tests;
#[cfg(test)]
mod state_tests;
#[cfg(all(test, feature = "wgpu"))]
mod wgpu_tests;

pub use advantages::{group_advantages, zero_advantage_fraction, GRPO_EPS};
pub use dpo::{train_dpo, DpoExample, DpoParams};
pub use grpo::{train_grpo, GrpoConfig};
pub use influence::Influence;
pub use losses::{
    chosen_nll, dpo_loss, grpo_loss, idft_forward, idft_gamma, idft_loss, idft_weights, k3_kl, prm_loss, prm_score, rpo_loss, sequence_logprobs, sft_loss, PrmOut,
    token_entropy, token_logprobs, weighted_nll, DpoOut, GrpoOut, IdftOut, IdftParams,
};
pub use parts::{train_parts, Part, PartSeq, PartsExample};
pub use prm::{step_scores, train_prm, PrmExample, PrmTokens};
pub use schedule::LrSchedule;
pub use sft::{train_sft, train_sft_resumable, train_sft_with, SftExample, SftLoss};
pub use state::OptimState;
pub use trainer::{StepMetrics, TrainConfig};
