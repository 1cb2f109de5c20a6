//! Pure functions per method and task, which the stage kinds wrap: rows to rows.
//!
//! Nothing here touches a model, the file system or the cache; the engine adapters
//! read JSONL into [`Row`]s, call these functions and write the result. Keeping the
//! cores pure is what lets them be tested exhaustively and cached by content.
//!
//! - [`countdown`]: solvable Countdown instances (METHODS §0.1).
//! - [`verify`]: the exact-rational Countdown verifier / reward (METHODS §0.1).
//! - [`compose`]: SkillFactory silver traces (METHODS §1, S4–S5).
//! - [`cascade`]: CasCoD rationale/answer split (METHODS §3, C1–C2).
//! - [`hinted`]: Hinted Decoding's λ schedules and stream mix (METHODS §4.3).
//! - [`arithmetic`]: a tiny arithmetic task for smoke tests.
//! - [`dedupe`]: near-duplicates by word n-gram Jaccard (`diversify`, SPHERE §2 P3).
//! - [`rouge`]: ROUGE-L F1 as `rouge_score` computes it (near-duplicate rejection).
//! - [`instructions`]: Montessori-Instruct's few-shot prompts, tag extraction, dedupe (METHODS §5 M1).
//! - [`steps`]: solutions as steps, the Countdown rule scorer, trajectory values (SPHERE, METHODS §2).
//! - [`mc`]: Math-Shepherd's Monte-Carlo step scores from rollouts (SPHERE's `mc` scorer).
//! - [`search`]: SPHERE's PRM-guided search: max/min branches, self-correction, diversity, pairs (METHODS §9.1).
//! - [`judge`]: pairwise verdicts with position swapping, win rates (the `judge` kind).
//! - [`metrics`]: accuracy by arity, pass@k, SkillFactory skill use (METHODS §1).

pub mod arithmetic;
pub mod cascade;
pub mod hinted;
pub mod compose;
pub mod countdown;
pub mod dedupe;
mod error;
pub mod instructions;
pub mod judge;
pub mod mc;
pub mod metrics;
mod ratio;
pub mod rouge;
pub mod search;
pub mod steps;
pub mod verify;

/// One JSONL record (the engine's: one alias for the whole workspace).
/// `serde_json` is built with `preserve_order`, so key order is the
/// insertion order and output files are byte-stable.
pub use retort_engine::Row;

pub use arithmetic::generate_arithmetic;
pub use cascade::{answer_sft_row, cascade_pairs, cascade_split, CascadePair, CascadeSpec, CascadeStats};
pub use compose::{compose, ComposeSpec, Reflect};
pub use countdown::{countdown_prompt, instances, solve, CountdownSpec, Split};
pub use error::DataError;
pub use metrics::{accuracy_by, arity, pass_at_k, pass_at_k_by, skill_use, PassAtK, SkillUse};
pub use retort_lm::rng::Rng;
pub use verify::{verify_countdown, verify_rows, Verdict};
