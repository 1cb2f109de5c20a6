//! Training objectives and schedules: the numerics the `train` stage's
//! loop (SFT, DPO, GRPO, IDFT) calls. Pure functions on burn tensors and
//! plain numbers; no model, optimizer or I/O here.
//!
//! - [`losses`]: masked SFT, token log-probs, DPO, GRPO clipped surrogate
//!   with k3 KL, IDFT (METHODS §0.2–0.4, §4.2).
//! - [`advantages`]: GRPO group-normalized advantages (METHODS §0.2).
//! - [`schedule`]: learning-rate schedules.

pub mod advantages;
pub mod losses;
pub mod schedule;

pub use advantages::{group_advantages, zero_advantage_fraction, GRPO_EPS};
pub use losses::{
    dpo_loss, grpo_loss, idft_gamma, idft_loss, idft_weights, k3_kl, sequence_logprobs, sft_loss, token_entropy,
    token_logprobs, DpoOut, GrpoOut, IdftParams,
};
pub use schedule::LrSchedule;
