//! `kind: train` — SFT, DPO or GRPO on a model, from scratch or from a
//! checkpoint; writes a checkpoint directory and per-step metrics.
//!
//! - `sft`: masked cross-entropy on response tokens (METHODS §0.4); rows
//!   with `prompt` and `response` (or `messages` with `chat: true`).
//! - `idft`, `dft`: on-policy SFT's re-weighted token losses (METHODS §4.2)
//!   on the same rows; per-step φ and γ statistics in the step log.
//! - `dpo`: METHODS §0.3 against the frozen starting model; rows with
//!   `prompt`, `chosen`, `rejected`.
//! - `grpo`: METHODS §0.2, online groups from the current policy rewarded by
//!   the Countdown verifier; rows with `prompt`, `nums`, `target`.
//! - `cascod`, `std_cot` (with `alpha`: the weighted control): CasCoD and its
//!   baselines (METHODS §3, §9.2) on `cascade_split` rows; see `train_cascade`.
//! - `prm`: a process reward model (METHODS §2) on `prm_filter` rows, each
//!   step labelled by its score; the checkpoint carries `prm.json` (see
//!   `common::prm`), which `scorer: model` requires.
//!
//! A `models:` entry with `tiny:` starts from scratch: a character
//! tokenizer over printable ASCII (plus whatever else the data holds) and a
//! randomly initialised model seeded from the stage's seed.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{anyhow, Context};
use burn::tensor::Device;
use retort_engine::{Artifact, BadInput, FieldError, Fields, Hashed, InputArtifact, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl, TinyModel};
use retort_lm::config::TokenIds;
use retort_lm::tokenizer::Tokenizer;
use retort_lm::train::{self, DpoExample, GrpoConfig, LrSchedule, SftExample, StepMetrics, TrainConfig};
use retort_lm::{LlamaConfig, LoadedModel};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::model::{self, prompt_text};
use crate::common::prm::PrmCard;
use crate::common::round4;
use crate::common::rows::{field, int_field, ints_field, str_field};
use crate::common::sampling::Sampling;
use crate::kinds::train_cascade::CascadeLoss;
use crate::methods::verify_countdown;

/// The objective and its own settings: `objective: grpo` takes GRPO's keys
/// and no other objective's, so an SFT stage neither accepts nor hashes
/// `kl_coef`. A new objective is a variant here (and its loss in
/// `retort_lm::train`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(tag = "objective", rename_all = "snake_case")]
pub enum Objective {
    /// Masked supervised fine-tuning (METHODS §0.4).
    Sft(Sft),
    /// IDFT (METHODS §4.2): SFT with each token's loss re-weighted by
    /// `p^γ`, γ from its centred log-likelihood φ.
    Idft(Idft),
    /// DFT: SFT with each token's loss weighted by its (detached)
    /// probability, IDFT with γ ≡ 1.
    Dft(Sft),
    /// Direct preference optimisation (METHODS §0.3).
    Dpo(Dpo),
    /// Group-relative policy optimisation with the Countdown reward (METHODS §0.2).
    Grpo(Grpo),
    /// CasCoD (METHODS §3 C3): both steps of each question in one batch,
    /// `(1−α)·L_rationale + α·L_answer`, each its own token mean.
    Cascod(Cascod),
    /// Std-CoT (METHODS §9.2): q → rationale, marker and answer in one
    /// sequence; with `alpha`, the weighted control.
    StdCot(StdCot),
    /// A process reward model (METHODS §2, Math-Shepherd): at each step's
    /// last token, `σ(logit[good] − logit[bad])` learns the step's label
    /// from `prm_filter` rows (`rule` 0/1 or `mc` shares), by binary
    /// cross-entropy. For `prm_filter`'s and `step_search`'s `scorer: model`.
    Prm(Prm),
}

/// `objective: prm` (data: `prm_filter` rows: `prompt`, `response`, `step_scores`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prm {
    /// Passes over the solutions (or give `steps`).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// The token whose logit says "this step is right" (one token).
    #[serde(default = "default_good")]
    pub good: String,
    /// The token whose logit says "this step is wrong" (one token).
    #[serde(default = "default_bad")]
    pub bad: String,
    /// Where one step ends and the next begins (as `prm_filter`'s).
    #[serde(default = "crate::methods::steps::default_delimiter")]
    pub delimiter: String,
}

fn default_good() -> String {
    "+".into()
}
fn default_bad() -> String {
    "-".into()
}

/// `objective: cascod` (data: `cascade_split` rows).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cascod {
    /// Passes over the questions (or give `steps`).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// α in [0, 1], the answer step's weight (the released script's 0.1 by default).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

/// `objective: std_cot` (data: `cascade_split` rows).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdCot {
    /// Passes over the questions (or give `steps`).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// The weighted control (METHODS §9.2): (1−α)/|r| on rationale tokens and
    /// α/|a| on answer tokens, CasCoD's weights in one sequence. Leave out for
    /// one token mean.
    #[serde(default)]
    pub alpha: Option<f64>,
}

/// `objective: sft`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sft {
    /// Passes over the data (or give `steps`).
    #[serde(default)]
    pub epochs: Option<usize>,
}

/// `objective: idft` (defaults: the released ones).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Idft {
    /// Passes over the data (or give `steps`).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// β, the temperature of `γ = exp(−φ/β)`.
    #[serde(default = "default_idft_beta")]
    pub beta: f64,
    /// Lower clamp of γ.
    #[serde(default = "default_gamma_min")]
    pub gamma_min: f64,
    /// Upper clamp of γ.
    #[serde(default = "default_gamma_max")]
    pub gamma_max: f64,
    /// Share of the steps with λ = 0 (γ = 1: DFT-like) before the ramp.
    #[serde(default)]
    pub warmup_ratio: f64,
    /// Share of the steps over which λ ramps from 0 to 1.
    #[serde(default)]
    pub transition_ratio: f64,
    /// Stop the gradient at the whole weight `p^γ` (METHODS §4.2's
    /// `sg(p^γ)`, as the issue reads the cited code: the default). `false`
    /// is the other reading, the gradient also through `p^γ`, which pushes
    /// a token below `p = e^{−1/γ}` further down (measured in the README:
    /// it collapses the tiny model even on on-policy data).
    #[serde(default = "yes")]
    pub detach_weight: bool,
}

impl Idft {
    fn loss(&self) -> train::SftLoss {
        let params = train::IdftParams {
            beta: self.beta,
            gamma_min: self.gamma_min,
            gamma_max: self.gamma_max,
            warmup_ratio: self.warmup_ratio,
            transition_ratio: self.transition_ratio,
        };
        train::SftLoss::Idft { params, detach_weight: self.detach_weight }
    }

    /// The first setting out of range, as a field error.
    fn check(&self) -> Result<(), FieldError> {
        if self.beta.is_nan() || self.beta <= 0.0 {
            return Err(FieldError::new("beta", format!("`beta` is {}: IDFT's temperature must be above 0 (released: 1.0)", self.beta)));
        }
        if !(self.gamma_min > 0.0 && self.gamma_min <= self.gamma_max) {
            return Err(FieldError::new(
                "gamma_min",
                format!("need 0 < gamma_min <= gamma_max (got {} and {}; released: 0.1 and 2.0)", self.gamma_min, self.gamma_max),
            ));
        }
        for (name, v) in [("warmup_ratio", self.warmup_ratio), ("transition_ratio", self.transition_ratio)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(FieldError::new(name, format!("`{name}` is {v}: a share of the steps, between 0 and 1")));
            }
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
// The released defaults live in lm's `IdftParams`.
fn default_idft_beta() -> f64 {
    train::IdftParams::default().beta
}
fn default_gamma_min() -> f64 {
    train::IdftParams::default().gamma_min
}
fn default_gamma_max() -> f64 {
    train::IdftParams::default().gamma_max
}

/// `objective: dpo`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dpo {
    /// Passes over the pairs (or give `steps`).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// β, the strength of the implicit KL to the starting model.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// RPO: add this times the chosen response's NLL (per-token mean of
    /// each chosen response, then the mean over pairs) to the DPO loss.
    /// 0 or absent: plain DPO (METHODS §2 suggests 1).
    #[serde(default)]
    pub nll_weight: Option<f64>,
}

impl Dpo {
    /// The runtime's settings.
    fn params(&self) -> train::DpoParams {
        train::DpoParams { beta: self.beta, nll_weight: self.nll_weight.unwrap_or(0.0) }
    }
}

/// `objective: grpo` (`steps` = sampling rounds, required).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grpo {
    /// Samples per prompt.
    #[serde(default = "default_group")]
    pub group_size: usize,
    /// Prompts per round.
    #[serde(default = "default_group")]
    pub prompts_per_step: usize,
    /// Passes over each round's samples.
    #[serde(default = "one")]
    pub ppo_epochs: usize,
    /// Ratio clip ε.
    #[serde(default = "default_clip_eps")]
    pub clip: f64,
    /// k3 KL coefficient to the starting model.
    #[serde(default = "default_kl")]
    pub kl_coef: f64,
    /// Reward for an answer that exists but is wrong (SkillFactory: 0).
    #[serde(default)]
    pub format_reward: f64,
    /// How rollouts are sampled (temperature 1 by default).
    #[serde(default = "Sampling::unit_temperature")]
    pub sampling: Sampling,
}

impl Objective {
    fn name(&self) -> &'static str {
        match self {
            Objective::Sft(_) => "sft",
            Objective::Idft(_) => "idft",
            Objective::Dft(_) => "dft",
            Objective::Dpo(_) => "dpo",
            Objective::Grpo(_) => "grpo",
            Objective::Cascod(_) => "cascod",
            Objective::StdCot(_) => "std_cot",
            Objective::Prm(_) => "prm",
        }
    }

    /// The per-part loss of the objectives over `cascade_split` rows.
    fn cascade_loss(&self) -> Option<CascadeLoss> {
        match self {
            Objective::Cascod(c) => Some(CascadeLoss::Cascod { alpha: c.alpha }),
            Objective::StdCot(StdCot { alpha: None, .. }) => Some(CascadeLoss::StdCot),
            Objective::StdCot(StdCot { alpha: Some(alpha), .. }) => Some(CascadeLoss::WeightedStdCot { alpha: *alpha }),
            _ => None,
        }
    }

    /// `alpha`, when it is outside [0, 1].
    fn bad_alpha(&self) -> Option<f64> {
        let alpha = match self {
            Objective::Cascod(c) => Some(c.alpha),
            Objective::StdCot(c) => c.alpha,
            _ => None,
        };
        alpha.filter(|a| !(0.0..=1.0).contains(a))
    }

    fn epochs(&self) -> Option<usize> {
        match self {
            Objective::Sft(o) | Objective::Dft(o) => o.epochs,
            Objective::Idft(o) => o.epochs,
            Objective::Dpo(o) => o.epochs,
            Objective::Cascod(o) => o.epochs,
            Objective::StdCot(o) => o.epochs,
            Objective::Prm(o) => o.epochs,
            Objective::Grpo(_) => None,
        }
    }

    fn hashed(&self) -> Hashed {
        let h = Hashed::new().field("objective", self.name());
        match self {
            Objective::Sft(Sft { epochs }) | Objective::Dft(Sft { epochs }) => h.opt("epochs", epochs),
            Objective::Idft(Idft { epochs, beta, gamma_min, gamma_max, warmup_ratio, transition_ratio, detach_weight }) => h
                .opt("epochs", epochs)
                .field("beta", beta)
                .field("gamma_min", gamma_min)
                .field("gamma_max", gamma_max)
                .field("warmup_ratio", warmup_ratio)
                .field("transition_ratio", transition_ratio)
                .field("detach_weight", detach_weight),
            // A zero NLL weight is plain DPO: hashed as if absent, so
            // stages without it keep their fingerprints.
            Objective::Dpo(Dpo { epochs, beta, nll_weight }) => {
                h.opt("epochs", epochs).field("beta", beta).opt("nll_weight", &nll_weight.filter(|w| *w != 0.0))
            }
            Objective::Cascod(Cascod { epochs, alpha }) => h.opt("epochs", epochs).field("alpha", alpha),
            Objective::StdCot(StdCot { epochs, alpha }) => h.opt("epochs", epochs).opt("alpha", alpha),
            Objective::Prm(Prm { epochs, good, bad, delimiter }) => {
                h.opt("epochs", epochs).field("good", good).field("bad", bad).field("delimiter", delimiter)
            }
            Objective::Grpo(Grpo { group_size, prompts_per_step, ppo_epochs, clip, kl_coef, format_reward, sampling }) => {
                // The ratio and KL are now taken at the rollout temperature
                // (verl's convention; before, at temperature 1). That changes
                // the result only when rollouts are sampled at another
                // positive temperature, so only those stages get a new
                // fingerprint, instead of bumping every train stage.
                let h = if sampling.temperature > 0.0 && sampling.temperature != 1.0 {
                    h.field("logprobs_at_rollout_temperature", true)
                } else {
                    h
                };
                h
                .field("group_size", group_size)
                .field("prompts_per_step", prompts_per_step)
                .field("ppo_epochs", ppo_epochs)
                .field("clip", clip)
                .field("kl_coef", kl_coef)
                .field("format_reward", format_reward)
                .field("sampling", sampling.hashed().into_value())
            }
        }
    }
}

/// Learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The same rate every step.
    #[default]
    Constant,
    /// Linear warmup over `warmup` (a share of the steps), then cosine to `min_lr_ratio`.
    WarmupCosine,
    /// Warmup-stable-decay (Montessori-Instruct's): linear warmup over
    /// `warmup` (default 0.1), the full rate for `stable` (default 0.5),
    /// cosine decay to `min_lr_ratio` (default 0.001) over the rest.
    Wsd,
}

/// Train a model. The optimizer settings are shared by every objective;
/// `objective:` selects the objective and its own keys.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
pub struct TrainStage {
    /// Where to start: a `models:` entry (a checkpoint, a GGUF, or `tiny:` for from scratch) or a stage's model.
    pub model: String,
    /// Training rows: `STAGE` or `STAGE.OUTPUT`.
    pub data: String,
    /// sft, idft, dft, dpo, grpo, cascod or std_cot, with that objective's settings beside it.
    #[serde(flatten)]
    pub objective: Objective,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// constant (default), warmup_cosine or wsd.
    #[serde(default)]
    pub schedule: Schedule,
    /// warmup_cosine, wsd: share of the steps spent warming up (default 0; wsd 0.1).
    #[serde(default)]
    pub warmup: Option<f64>,
    /// wsd: share of the steps at the full rate after the warmup (default 0.5).
    #[serde(default)]
    pub stable: Option<f64>,
    /// warmup_cosine, wsd: final rate as a share of `lr` (default 0; wsd 0.001).
    #[serde(default)]
    pub min_lr_ratio: Option<f64>,
    /// Optimizer steps (SFT, DPO) or sampling rounds (GRPO).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Sequences (pairs for DPO) per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (null = off).
    #[serde(default = "default_clip")]
    pub grad_clip: Option<f64>,
    /// AdamW weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Longest sequence (prompt + response) in tokens.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Apply the tokenizer's chat template to prompts.
    #[serde(default)]
    pub chat: bool,
    /// Save AdamW's moments and the step count with the checkpoint
    /// (`optimizer.bpk`, `trainer_state.json`), for a later `resume` or
    /// `influence` (sft, idft, dft).
    #[serde(default)]
    pub save_optimizer: bool,
    /// Continue the run the starting checkpoint was saved from: restore its
    /// optimizer state (it needs `save_optimizer: true`), skip the steps it
    /// took and go on with the schedule from there; `steps` is the total,
    /// counting those (sft, idft, dft).
    #[serde(default)]
    pub resume: bool,
}

fn default_lr() -> f64 {
    1e-4
}
fn default_batch() -> usize {
    8
}
fn one() -> usize {
    1
}
fn default_clip() -> Option<f64> {
    Some(1.0)
}
fn default_max_len() -> usize {
    512
}
fn default_beta() -> f64 {
    0.1
}
fn default_group() -> usize {
    8
}
fn default_clip_eps() -> f64 {
    0.2
}
fn default_kl() -> f64 {
    0.001
}
fn default_alpha() -> f64 {
    0.1
}

impl StageImpl for TrainStage {
    const KIND: &'static str = "train";
    // 2: from-scratch weights come from a host PRNG (`init_seeded`), not
    // burn's global one, so the same seed gives other bytes than version 1.
    // 3: the step log (`metrics` output) no longer holds wall-clock timings,
    // so it is the same bytes on every run (the timings go to the stage log).
    const VERSION: u32 = 3;
    const ABOUT: &'static str = "Train a model (sft, idft, dft, dpo, grpo, cascod, std_cot), from scratch or from a checkpoint; outputs a checkpoint.";

    fn hashed(&self) -> Hashed {
        let TrainStage {
            model: _,
            data: _,
            objective,
            lr,
            schedule,
            warmup,
            stable: _, // hashed through `self.wsd()`
            min_lr_ratio,
            steps,
            batch_size,
            grad_accum,
            grad_clip,
            weight_decay,
            max_len,
            chat,
            save_optimizer,
            resume,
        } = self;
        let mut h = Hashed::new().field("lr", lr).field("schedule", schedule);
        match schedule {
            Schedule::Constant => {}
            Schedule::WarmupCosine => h = h.field("warmup", warmup.unwrap_or(0.0)).field("min_lr_ratio", min_lr_ratio.unwrap_or(0.0)),
            Schedule::Wsd => {
                let (w, s, m) = self.wsd();
                h = h.field("warmup", w).field("stable", s).field("min_lr_ratio", m);
            }
        }
        // Hashed only when on, so every existing stage keeps its fingerprint.
        if *save_optimizer {
            h = h.field("save_optimizer", true);
        }
        if *resume {
            h = h.field("resume", true);
        }
        h.opt("steps", steps)
            .field("batch_size", batch_size)
            .field("grad_accum", grad_accum)
            .field("grad_clip", grad_clip)
            .field("weight_decay", weight_decay)
            .field("max_len", max_len)
            .field("chat", chat)
            .extend(objective.hashed())
    }
}

impl Stage for TrainStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let data = InputDecl::rows("data", &self.data, "data");
        let data = match &self.objective {
            Objective::Sft(_) | Objective::Idft(_) | Objective::Dft(_) => {
                let why = match self.objective {
                    Objective::Idft(_) => "objective idft",
                    Objective::Dft(_) => "objective dft",
                    _ => "objective sft",
                };
                data.needing(&[field::PROMPT, field::MESSAGES], why).needing(&[field::RESPONSE, field::MESSAGES], why)
            }
            Objective::Dpo(_) => data
                .needing(&[field::PROMPT], "objective dpo")
                .needing(&[field::CHOSEN], "objective dpo")
                .needing(&[field::REJECTED], "objective dpo"),
            Objective::Cascod(_) | Objective::StdCot(_) => {
                let why = "cascade_split rows";
                data.needing(&["source_id"], why).needing(&["step"], why).needing(&[field::PROMPT], why).needing(&[field::RESPONSE], why)
            }
            Objective::Grpo(_) => data
                .needing(&[field::PROMPT], "objective grpo")
                .needing(&[field::NUMS], "objective grpo's Countdown reward")
                .needing(&[field::TARGET], "objective grpo's Countdown reward"),
            Objective::Prm(_) => {
                let why = "objective prm (prm_filter rows)";
                data.needing(&[field::PROMPT], why).needing(&[field::RESPONSE], why).needing(&["step_scores"], why)
            }
        };
        vec![InputDecl::model("model", &self.model, "model", false), data]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["model".into(), "metrics".into()]
    }

    fn output_type(&self, name: &str) -> Artifact {
        if name == "model" {
            if matches!(self.objective, Objective::Prm(_)) {
                Artifact::Prm
            } else {
                Artifact::Weights
            }
        } else {
            Artifact::Rows
        }
    }

    fn output_fields(&self, name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        (name == "metrics").then(|| ["step", "loss", "lr"].iter().map(|s| s.to_string()).collect())
    }

    fn step_log(&self) -> Option<&'static str> {
        Some("metrics")
    }

    fn check(&self) -> Result<(), FieldError> {
        if matches!(self.objective, Objective::Grpo(_)) && self.steps.is_none() {
            return Err(FieldError::new("objective", "grpo needs `steps` (sampling rounds)"));
        }
        if let Objective::Idft(idft) = &self.objective {
            idft.check()?;
        }
        if let Objective::Dpo(Dpo { nll_weight: Some(w), .. }) = &self.objective {
            if !(*w >= 0.0 && w.is_finite()) {
                return Err(FieldError::new("nll_weight", format!("`nll_weight` is {w}: set it to 0 (plain DPO) or above (RPO uses 1)")));
            }
        }
        if let Some(a) = self.objective.bad_alpha() {
            return Err(FieldError::new("alpha", format!("`alpha` is {a}: set it between 0 and 1 (the answer step's weight)")));
        }
        if let Objective::Prm(prm) = &self.objective {
            if self.chat {
                return Err(FieldError::new("chat", "a PRM reads the prompt as text, as the scorers do: leave `chat` out with `objective: prm`"));
            }
            for (name, v) in [("good", &prm.good), ("bad", &prm.bad), ("delimiter", &prm.delimiter)] {
                if v.is_empty() {
                    return Err(FieldError::new(name, format!("`{name}` is empty: give it a string (defaults: good \"+\", bad \"-\", delimiter \"\\n\")")));
                }
            }
            if prm.good == prm.bad {
                return Err(FieldError::new("bad", "`good` and `bad` are the same: the PRM tells them apart, so pick two different tokens"));
            }
        }
        if self.chat && self.objective.cascade_loss().is_some() {
            return Err(FieldError::new("chat", "`chat: true` applies to sft, dpo and grpo; cascod and std_cot train on cascade_split's plain prompts"));
        }
        if self.schedule == Schedule::Constant {
            for (name, v) in [("warmup", self.warmup), ("min_lr_ratio", self.min_lr_ratio)] {
                if v.is_some() {
                    return Err(FieldError::new(name, format!("`{name}` applies only to `schedule: warmup_cosine` or `wsd`")));
                }
            }
        }
        if self.stable.is_some() && self.schedule != Schedule::Wsd {
            return Err(FieldError::new("stable", "`stable` applies only to `schedule: wsd`"));
        }
        if self.schedule == Schedule::Wsd {
            let (warmup, stable, min_lr_ratio) = self.wsd();
            LrSchedule::Wsd { warmup_ratio: warmup, stable_ratio: stable, total_steps: 0, min_lr_ratio }
                .validate()
                .map_err(|e| FieldError::new("schedule", e.replace("warmup_ratio", "warmup").replace("stable_ratio", "stable")))?;
        }
        let sft_family = matches!(self.objective, Objective::Sft(_) | Objective::Idft(_) | Objective::Dft(_));
        for (name, on) in [("save_optimizer", self.save_optimizer), ("resume", self.resume)] {
            if on && !sft_family {
                return Err(FieldError::new(name, format!("`{name}` applies to objectives sft, idft and dft, not {}", self.objective.name())));
            }
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let device = model::burn_device(ctx)?;
        let rows = ctx.read_rows_nonempty("data", "training examples")?;
        let input = ctx.input("model")?.clone();
        let (model, tokenizer) = start_model(&input, &self.model, &rows, ctx, &device)?;
        let cfg = self.train_config(ctx.seed);
        let mut log = Vec::new();
        let total = self.steps;
        let mut on_step = |m: &StepMetrics| {
            log.push(m.clone());
            ctx.progress_with(m.step as u64 + 1, total.map(|t| t as u64), "steps", postfix(m));
        };
        let eos = tokenizer.eos_id();
        let mut optimizer = None;
        let mut prm_card = None;
        let mut note = None;
        let model = match &self.objective {
            Objective::Sft(_) | Objective::Idft(_) | Objective::Dft(_) => {
                let loss = match &self.objective {
                    Objective::Idft(idft) => idft.loss(),
                    Objective::Dft(_) => train::SftLoss::Dft,
                    _ => train::SftLoss::Nll,
                };
                let ex = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| self.sft_example(r, &tokenizer, eos).with_context(|| format!("data row {i}")))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let resume = if self.resume { Some(model::optimizer_state(&input, &self.model, "`resume: true`", &cfg)?) } else { None };
                let (model, state) = train::train_sft_resumable(model, &ex, loss, &cfg, resume.as_ref(), &mut on_step)?;
                optimizer = self.save_optimizer.then_some(state);
                model
            }
            Objective::Dpo(dpo) => {
                let ex = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| self.dpo_example(r, &tokenizer, eos).with_context(|| format!("data row {i}")))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                train::train_dpo(model, &ex, dpo.params(), &cfg, &mut on_step)?
            }
            Objective::Grpo(grpo) => self.grpo(grpo, model, &tokenizer, &rows, &cfg, ctx.seed, &mut on_step)?,
            Objective::Cascod(_) | Objective::StdCot(_) => {
                let loss = self.objective.cascade_loss().expect("a cascade objective");
                let ex = loss.examples(&rows, &tokenizer, eos)?;
                train::train_parts(model, &ex, &loss.parts(), &cfg, &mut on_step)?
            }
            Objective::Prm(prm) => {
                let card = PrmCard::new(&tokenizer, &prm.good, &prm.bad, &prm.delimiter).map_err(|e| anyhow::Error::new(BadInput(format!("{e:#}").into())))?;
                let mut ex = Vec::with_capacity(rows.len());
                for (i, r) in rows.iter().enumerate() {
                    ex.push(prm_example(r, &tokenizer, &card).with_context(|| format!("data row {i}"))?);
                }
                // A solution that answers at once has no step to learn from.
                let stepless = ex.iter().filter(|e| e.marks.is_empty()).count();
                ex.retain(|e| !e.marks.is_empty());
                if ex.is_empty() {
                    let e = format!("none of the {} data rows has a step (a line before its `<answer>`): a PRM learns from step labels", rows.len());
                    return Err(anyhow::Error::new(BadInput(e.into())));
                }
                if stepless > 0 {
                    note = Some(format!("{stepless} of {} rows have no step before their answer: left out", rows.len()));
                }
                let model = train::train_prm(model, &ex, card.tokens, &cfg, &mut on_step)?;
                prm_card = Some(card);
                model
            }
        };
        if let Some(note) = note {
            ctx.log(note);
        }
        let dir = ctx.output_path("model");
        retort_lm::weights::save_safetensors_dir(&model, &dir)?;
        tokenizer.save_dir(&dir)?;
        if let Some(state) = optimizer {
            state.save_dir(&dir)?;
        }
        if let Some(card) = prm_card {
            card.save_dir(&dir)?;
        }
        // Wall-clock timings are not in the step log (`StepMetrics::secs` is
        // not serialized): they go to the stage log.
        let mut secs: BTreeMap<&str, f64> = BTreeMap::new();
        let mut per_step: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut f = std::io::BufWriter::new(std::fs::File::create(ctx.output_path("metrics"))?);
        for m in &log {
            for (k, v) in &m.secs {
                *secs.entry(k).or_default() += v;
                per_step.entry(k).or_default().push(*v);
            }
            serde_json::to_writer(&mut f, m)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        if !secs.is_empty() {
            let parts: Vec<String> = secs.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
            ctx.log(format!("time over all steps: {}", parts.join(", ")));
        }
        // Per step, for `retort report` (a phase every step reports only).
        for (phase, values) in per_step {
            if values.len() == log.len() {
                ctx.timings(phase, values);
            }
        }
        Ok(headline(&log))
    }
}

/// A `prm_filter` row as a PRM example: its prompt and steps as the PRM
/// reads them, each step's last token labelled with its score.
fn prm_example(row: &Row, tok: &Tokenizer, card: &PrmCard) -> anyhow::Result<train::PrmExample> {
    let (tokens, marks) = crate::common::prm::sequence(tok, str_field(row, field::PROMPT)?, str_field(row, field::RESPONSE)?, &card.delimiter)?;
    let labels: Vec<f64> = match row.get("step_scores") {
        Some(Value::Array(a)) => a.iter().map(|v| v.as_f64().filter(|y| (0.0..=1.0).contains(y))).collect::<Option<_>>(),
        _ => None,
    }
    .ok_or_else(|| anyhow::Error::new(BadInput("`step_scores` is not a list of numbers in [0, 1]: train a PRM on `prm_filter` rows".into())))?;
    if labels.len() != marks.len() {
        let e = format!(
            "the response has {} steps split at {:?} but `step_scores` has {} scores: use the same `delimiter` as the prm_filter stage that scored it",
            marks.len(),
            card.delimiter,
            labels.len()
        );
        return Err(anyhow::Error::new(BadInput(e.into())));
    }
    Ok(train::PrmExample { tokens, marks: marks.into_iter().zip(labels).map(|(p, y)| (p, y as f32)).collect() })
}

impl TrainStage {
    /// WSD's `(warmup, stable, min_lr_ratio)` with their defaults.
    fn wsd(&self) -> (f64, f64, f64) {
        (self.warmup.unwrap_or(0.1), self.stable.unwrap_or(0.5), self.min_lr_ratio.unwrap_or(1e-3))
    }

    /// The trainer's settings: spec numbers narrow to the runtime's types here.
    fn train_config(&self, seed: u64) -> TrainConfig {
        let grpo = matches!(self.objective, Objective::Grpo(_));
        let steps = if grpo { None } else { self.steps };
        let schedule = match self.schedule {
            Schedule::Constant => LrSchedule::Constant,
            Schedule::WarmupCosine => {
                // The trainer fills total_steps with the run's length; warmup
                // is given as a fraction, so resolve it against `steps` when known.
                let warmup = self.warmup.unwrap_or(0.0);
                let warmup_steps = self.steps.map_or(0, |s| (warmup * s as f64).round() as usize);
                LrSchedule::WarmupCosine { warmup_steps, total_steps: 0, min_lr_ratio: self.min_lr_ratio.unwrap_or(0.0) }
            }
            Schedule::Wsd => {
                let (warmup_ratio, stable_ratio, min_lr_ratio) = self.wsd();
                LrSchedule::Wsd { warmup_ratio, stable_ratio, total_steps: 0, min_lr_ratio }
            }
        };
        TrainConfig {
            lr: self.lr,
            schedule,
            epochs: self.objective.epochs(),
            steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            grad_clip: self.grad_clip.map(|c| c as f32),
            weight_decay: self.weight_decay,
            max_len: self.max_len,
            seed,
            ..TrainConfig::default()
        }
    }

    fn prompt(&self, row: &Row, tok: &Tokenizer) -> anyhow::Result<Vec<u32>> {
        Ok(tok.encode(&prompt_text(row, tok, self.chat, None)?, false)?)
    }

    fn completion(&self, row: &Row, key: &str, tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<Vec<u32>> {
        let mut ids = tok.encode(str_field(row, key)?, false)?;
        ids.extend(eos);
        Ok(ids)
    }

    fn sft_example(&self, row: &Row, tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<SftExample> {
        if self.chat && row.contains_key(field::MESSAGES) && !row.contains_key(field::RESPONSE) {
            // Conversational rows: everything before the last assistant turn is the prompt.
            let mut msgs: Vec<retort_lm::chat::ChatMessage> =
                serde_json::from_value(row[field::MESSAGES].clone()).context("`messages` must be [{role, content}]")?;
            let last = msgs.pop().filter(|m| m.role == "assistant").ok_or_else(|| anyhow!("last message must be the assistant's"))?;
            let prompt = tok.apply_chat_template(&msgs, true)?;
            let mut response = tok.encode(&last.content, false)?;
            response.extend(eos);
            return Ok(SftExample { prompt: tok.encode(&prompt, false)?, response });
        }
        Ok(SftExample { prompt: self.prompt(row, tok)?, response: self.completion(row, field::RESPONSE, tok, eos)? })
    }

    fn dpo_example(&self, row: &Row, tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<DpoExample> {
        Ok(DpoExample {
            prompt: self.prompt(row, tok)?,
            chosen: self.completion(row, field::CHOSEN, tok, eos)?,
            rejected: self.completion(row, field::REJECTED, tok, eos)?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn grpo(
        &self,
        spec: &Grpo,
        model: retort_lm::Llama,
        tok: &Tokenizer,
        rows: &[Row],
        cfg: &TrainConfig,
        seed: u64,
        on_step: &mut dyn FnMut(&StepMetrics),
    ) -> anyhow::Result<retort_lm::Llama> {
        let mut prompts = Vec::with_capacity(rows.len());
        let mut tasks = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let task = (|| -> anyhow::Result<_> {
                let prompt = self.prompt(r, tok)?;
                let nums = ints_field(r, field::NUMS).context("grpo's reward is the Countdown verifier")?;
                let target = int_field(r, field::TARGET).context("grpo's reward is the Countdown verifier")?;
                Ok((prompt, (nums, target)))
            })()
            .with_context(|| format!("data row {i}"))?;
            prompts.push(task.0);
            tasks.push(task.1);
        }
        let format_reward = spec.format_reward;
        let reward = |i: usize, response: &[u32]| -> f32 {
            let text = tok.decode_skip_special(response);
            verify_countdown(&text, &tasks[i].0, tasks[i].1, format_reward).reward as f32
        };
        let decode = |t: &[u32]| tok.decode(t);
        let grpo = GrpoConfig {
            group_size: spec.group_size,
            prompts_per_step: spec.prompts_per_step,
            steps: self.steps.expect("checked at load"),
            ppo_epochs: spec.ppo_epochs,
            clip: spec.clip as f32,
            kl_coef: spec.kl_coef as f32,
            sampling: spec.sampling.params(seed),
            ..GrpoConfig::default()
        };
        Ok(train::train_grpo(model, &prompts, &reward, Some(&decode), &grpo, cfg, on_step)?)
    }
}

/// The model to start from: loaded, or (for `tiny:`) built from scratch.
fn start_model(
    input: &InputArtifact,
    name: &str,
    rows: &[Row],
    ctx: &StageCtx<'_>,
    burn_device: &Device,
) -> anyhow::Result<(retort_lm::Llama, Tokenizer)> {
    let seed = ctx.seed;
    if input.path.is_some() {
        let lm: LoadedModel = model::load(input, name, ctx)?;
        let (model, tokenizer) = lm.into_parts();
        return Ok((model, tokenizer.expect("model::load checks for a tokenizer")));
    }
    let tiny = input.model_spec.as_ref().and_then(|s| s.tiny.as_ref()).ok_or_else(|| anyhow!("model `{name}` has no path and no `tiny:`"))?;
    let tokenizer = char_tokenizer(rows)?;
    let mut cfg = tiny_config(tiny, tokenizer.vocab_size())?;
    cfg.eos_token_id = tokenizer.eos_id().map(TokenIds::One);
    cfg.bos_token_id = tokenizer.bos_id();
    Ok((cfg.init_seeded(seed, burn_device), tokenizer))
}

/// Printable ASCII, newline and tab, plus every other character in the
/// data: what a from-scratch model can read and write.
fn char_tokenizer(rows: &[Row]) -> anyhow::Result<Tokenizer> {
    let mut texts: Vec<String> = vec![(32u8..127).map(char::from).chain(['\n', '\t']).collect()];
    for r in rows {
        for v in r.values() {
            if let Value::String(s) = v {
                texts.push(s.clone());
            }
        }
    }
    Ok(Tokenizer::train_char_level(texts, &retort_lm::tokenizer::DEFAULT_SPECIALS)?)
}

/// A preset's architecture with the spec's overrides (typed at load time,
/// so a misspelt key never gets here).
fn tiny_config(t: &TinyModel, vocab: usize) -> anyhow::Result<LlamaConfig> {
    let TinyModel {
        preset,
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        max_position_embeddings,
        rms_norm_eps,
        rope_theta,
        tie_word_embeddings,
    } = t;
    let mut cfg = LlamaConfig::preset(preset.as_str(), vocab)?;
    let set = |dst: &mut usize, v: &Option<usize>| {
        if let Some(v) = v {
            *dst = *v;
        }
    };
    set(&mut cfg.hidden_size, hidden_size);
    set(&mut cfg.intermediate_size, intermediate_size);
    set(&mut cfg.num_hidden_layers, num_hidden_layers);
    set(&mut cfg.num_attention_heads, num_attention_heads);
    set(&mut cfg.max_position_embeddings, max_position_embeddings);
    if num_key_value_heads.is_some() {
        cfg.num_key_value_heads = *num_key_value_heads;
    }
    if head_dim.is_some() {
        cfg.head_dim = *head_dim;
    }
    if let Some(e) = rms_norm_eps {
        cfg.rms_norm_eps = *e;
    }
    if let Some(r) = rope_theta {
        cfg.rope_theta = *r;
    }
    if let Some(t) = tie_word_embeddings {
        cfg.tie_word_embeddings = *t;
    }
    Ok(cfg)
}

/// Loss of the first and last steps, and the last step's extras.
/// The progress bar's postfix after a step, as TRL and tqdm show it: GRPO's
/// mean reward and KL, DPO's loss and margin, everyone else's loss.
fn postfix(m: &StepMetrics) -> String {
    if let Some(r) = m.extra.get("reward_mean") {
        let kl = m.extra.get("kl").map_or(String::new(), |k| format!(" kl={k:.4}"));
        return format!("reward={r:.3}{kl}");
    }
    let margin = m.extra.get("margin").map_or(String::new(), |x| format!(" margin={x:.3}"));
    let nll = m.extra.get("nll").map_or(String::new(), |x| format!(" nll={x:.3}"));
    format!("loss={:.4}{margin}{nll}", m.loss)
}

fn headline(log: &[StepMetrics]) -> Metrics {
    let mut m = Metrics::new();
    m.insert("steps".into(), log.len().into());
    if let (Some(first), Some(last)) = (log.first(), log.last()) {
        m.insert("loss_first".into(), round4(first.loss).into());
        m.insert("loss_last".into(), round4(last.loss).into());
        let tail: BTreeMap<&String, f64> = last.extra.iter().map(|(k, v)| (k, round4(*v))).collect();
        for (k, v) in tail {
            // Histograms stay in the step log (`metrics`), not the headline.
            if !k.starts_with("tokens") && !k.contains("_hist_") {
                m.insert(format!("last_{k}"), v.into());
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postfix_shows_reward_for_grpo_and_loss_otherwise() {
        let mut m = StepMetrics { step: 0, loss: 1.23456, lr: 1e-3, grad_norm: 1.0, extra: BTreeMap::new(), secs: BTreeMap::new() };
        assert_eq!(postfix(&m), "loss=1.2346");
        m.extra.insert("margin".into(), 0.5);
        assert_eq!(postfix(&m), "loss=1.2346 margin=0.500");
        m.extra.insert("reward_mean".into(), 0.25);
        m.extra.insert("kl".into(), 0.00123);
        assert_eq!(postfix(&m), "reward=0.250 kl=0.0012");
    }

    fn parse(yaml: &str) -> TrainStage {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn keys(stage: &TrainStage) -> Vec<String> {
        stage.hashed().into_value().as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn an_sft_stage_hashes_only_sft_and_optimizer_settings() {
        // If a GRPO or DPO field were hashed here, changing its default
        // would retrain every SFT model.
        let sft = parse("{model: m, data: d, objective: sft, steps: 5}");
        let mut k = keys(&sft);
        k.sort();
        assert_eq!(k, ["batch_size", "chat", "grad_accum", "grad_clip", "lr", "max_len", "objective", "schedule", "steps", "weight_decay"]);
        let grpo = parse("{model: m, data: d, objective: grpo, steps: 5}");
        assert!(keys(&grpo).contains(&"kl_coef".to_string()));
        // The references are not hashed (they enter by content hash).
        assert_eq!(sft.hashed(), parse("{model: other, data: elsewhere, objective: sft, steps: 5}").hashed());
    }

    #[test]
    fn numbers_are_hashed_as_written() {
        let g = parse("{model: m, data: d, objective: grpo, steps: 1, kl_coef: 0.04, sampling: {temperature: 0.8}}");
        let v = g.hashed().into_value();
        assert_eq!(v["kl_coef"].to_string(), "0.04");
        assert_eq!(v["sampling"]["temperature"].to_string(), "0.8");
    }

    #[test]
    fn keys_of_other_objectives_are_rejected() {
        let e = serde_yaml::from_str::<TrainStage>("{model: m, data: d, objective: sft, beta: 0.1}").unwrap_err();
        assert!(e.to_string().contains("unknown field `beta`"), "{e}");
        let e = serde_yaml::from_str::<TrainStage>("{model: m, data: d, objective: dpo, group_size: 4}").unwrap_err();
        assert!(e.to_string().contains("unknown field `group_size`"), "{e}");
    }

    #[test]
    fn cascade_objectives_hash_alpha_and_check_its_range() {
        let c = parse("{model: m, data: d, objective: cascod, alpha: 0.3}");
        assert_eq!(c.hashed().into_value()["alpha"].to_string(), "0.3");
        assert_eq!(c.objective.cascade_loss(), Some(CascadeLoss::Cascod { alpha: 0.3 }));
        let s = parse("{model: m, data: d, objective: std_cot}");
        assert!(!keys(&s).contains(&"alpha".to_string()));
        assert_eq!(s.objective.cascade_loss(), Some(CascadeLoss::StdCot));
        let w = parse("{model: m, data: d, objective: std_cot, alpha: 0.1}");
        assert_eq!(w.objective.cascade_loss(), Some(CascadeLoss::WeightedStdCot { alpha: 0.1 }));
        for bad in ["{model: m, data: d, objective: cascod, alpha: 1.5}", "{model: m, data: d, objective: std_cot, alpha: -0.1}"] {
            let e = parse(bad).check().unwrap_err();
            assert_eq!(e.field, "alpha");
            assert!(e.message.contains("between 0 and 1"), "{}", e.message);
        }
        let e = serde_yaml::from_str::<TrainStage>("{model: m, data: d, objective: sft, alpha: 0.1}").unwrap_err();
        assert!(e.to_string().contains("unknown field `alpha`"), "{e}");
    }

    #[test]
    fn wsd_hashes_its_defaults_and_checks_its_shares() {
        let w = parse("{model: m, data: d, objective: sft, schedule: wsd}");
        let v = w.hashed().into_value();
        assert_eq!((v["warmup"].as_f64(), v["stable"].as_f64(), v["min_lr_ratio"].as_f64()), (Some(0.1), Some(0.5), Some(0.001)));
        assert_eq!(
            w.train_config(1).schedule,
            LrSchedule::Wsd { warmup_ratio: 0.1, stable_ratio: 0.5, total_steps: 0, min_lr_ratio: 1e-3 }
        );
        let e = parse("{model: m, data: d, objective: sft, schedule: wsd, warmup: 0.6, stable: 0.6}").check().unwrap_err();
        assert!(e.message.contains("`warmup` + `stable`"), "{}", e.message);
        let e = parse("{model: m, data: d, objective: sft, stable: 0.5}").check().unwrap_err();
        assert_eq!(e.field, "stable");
    }

    #[test]
    fn optimizer_state_options_are_for_sft_objectives_and_hashed_only_when_on() {
        let plain = parse("{model: m, data: d, objective: sft, steps: 5}");
        assert!(!keys(&plain).contains(&"save_optimizer".to_string()));
        let saved = parse("{model: m, data: d, objective: sft, steps: 5, save_optimizer: true}");
        assert_ne!(plain.hashed(), saved.hashed());
        assert!(parse("{model: m, data: d, objective: idft, resume: true}").check().is_ok());
        let e = parse("{model: m, data: d, objective: dpo, save_optimizer: true}").check().unwrap_err();
        assert_eq!(e.field, "save_optimizer");
        assert!(e.message.contains("not dpo"), "{}", e.message);
    }

    #[test]
    fn rpo_nll_weight_is_hashed_only_when_above_zero_and_checked() {
        let plain = parse("{model: m, data: d, objective: dpo, steps: 5}");
        assert!(!keys(&plain).contains(&"nll_weight".to_string()));
        assert_eq!(plain.hashed(), parse("{model: m, data: d, objective: dpo, steps: 5, nll_weight: 0}").hashed(), "0 is plain DPO");
        let rpo = parse("{model: m, data: d, objective: dpo, steps: 5, nll_weight: 1.0}");
        assert_eq!(rpo.hashed().into_value()["nll_weight"].as_f64(), Some(1.0));
        let Objective::Dpo(d) = &rpo.objective else { panic!("dpo") };
        assert_eq!(d.params(), train::DpoParams { beta: 0.1, nll_weight: 1.0 });
        let e = parse("{model: m, data: d, objective: dpo, nll_weight: -1}").check().unwrap_err();
        assert_eq!(e.field, "nll_weight");
        let e = serde_yaml::from_str::<TrainStage>("{model: m, data: d, objective: sft, nll_weight: 1}").unwrap_err();
        assert!(e.to_string().contains("unknown field `nll_weight`"), "{e}");
    }

    #[test]
    fn warmup_only_with_a_warmup_schedule() {
        assert!(parse("{model: m, data: d, objective: sft, warmup: 0.1}").check().is_err());
        assert!(parse("{model: m, data: d, objective: sft, schedule: warmup_cosine, warmup: 0.1}").check().is_ok());
    }
}
