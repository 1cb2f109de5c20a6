//! What the SFT, DPO and GRPO loops share: [`TrainConfig`], [`StepMetrics`],
//! truncation, padded batches, the step plan, and `Trainer` (the model on
//! the autodiff device plus its optimizer and schedule).
//!
//! # Batches
//!
//! A training sequence is `prompt ++ response`; the model reads tokens
//! `0..L-1` and is scored on tokens `1..L` where they are response tokens.
//! Sequences of a micro-batch are **right-padded** to the longest one: with a
//! causal mask a real position never attends to the padding after it, and
//! padded positions are masked out of every loss, so they contribute
//! nothing (not even to the token-mean denominator).
//!
//! # Truncation (`max_len`, counted in tokens of `prompt ++ response`)
//!
//! The response is kept whole when it fits beside at least one prompt
//! token; the prompt loses tokens **from its start** (its tail, next to the
//! response, is kept). Only a response longer than `max_len − 1` is cut,
//! at its end (then one prompt token remains).
//!
//! # Determinism
//!
//! Shuffling and GRPO sampling use seeded [`Rng`]s (never the OS), and
//! nothing depends on timing, so the same starting weights, data and config
//! give the same weights on the same backend (checked bit for bit on `flex`,
//! multithreaded, by the tests). The loops draw nothing from burn's device
//! RNG (no dropout), so they do not seed it: that RNG is process-wide, and
//! reseeding it here would disturb whatever else draws from it. A model
//! built from scratch comes from [`LlamaConfig::init_seeded`](crate::LlamaConfig::init_seeded),
//! which draws on the host from its own seeded streams, so it does not
//! depend on that RNG either.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::model::Llama;
use crate::threads::StepThreads;
use crate::rng::Rng;
use crate::train::losses::token_logprobs;
use crate::train::optim::Optim;
use crate::train::schedule::LrSchedule;
use crate::train::state::{canonical_ids, param_shapes, OptimState};

/// Id fed at padded positions (any valid id: they are masked).
pub(crate) const PAD_ID: u32 = 0;

/// Hyper-parameters shared by every objective (the `train` stage's
/// `lr`, `schedule`, `epochs`/`steps`, `batch_size`, `grad_accum`,
/// `grad_clip`, `weight_decay`, `max_len`, `seed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Learning-rate schedule over optimizer steps; a `total_steps` of 0
    /// is filled in with the run's length.
    pub schedule: LrSchedule,
    /// Passes over the data (SFT, DPO). `None` with `steps: None` means 1.
    pub epochs: Option<usize>,
    /// Optimizer steps (SFT, DPO); caps `epochs` when both are given, and
    /// cycles through reshuffled epochs when given alone. GRPO ignores
    /// `epochs`/`steps` (see [`GrpoConfig::steps`](crate::train::GrpoConfig)).
    pub steps: Option<usize>,
    /// Sequences (SFT, GRPO) or pairs (DPO) per micro-batch (one forward/backward).
    pub batch_size: usize,
    /// Micro-batches per optimizer step: an optimizer step sees
    /// `batch_size × grad_accum` examples (Hugging Face's convention).
    pub grad_accum: usize,
    /// Clip the global gradient norm (all parameters together, as
    /// PyTorch's `clip_grad_norm_`) to this value; `None` = no clipping.
    pub grad_clip: Option<f32>,
    /// AdamW's decoupled weight decay (on every parameter).
    pub weight_decay: f64,
    /// Longest training sequence, prompt plus response, in tokens (see the
    /// module docs on truncation). At most the model's `max_position_embeddings`.
    pub max_len: usize,
    /// Seed of the data order and (GRPO) of sampling.
    pub seed: u64,
    /// AdamW's `(β1, β2)`.
    pub betas: (f64, f64),
    /// AdamW's `ε` (PyTorch's default 1e-8).
    pub adam_eps: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 1e-4,
            schedule: LrSchedule::Constant,
            epochs: None,
            steps: None,
            batch_size: 8,
            grad_accum: 1,
            grad_clip: Some(1.0),
            weight_decay: 0.0,
            max_len: 512,
            seed: 0,
            betas: (0.9, 0.999),
            adam_eps: 1e-8,
        }
    }
}

/// One optimizer step's (GRPO: one sampling round's) numbers, passed to
/// the `on_step` callback as they happen.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 0-based step.
    pub step: usize,
    /// The objective's loss (token mean for SFT/GRPO, pair mean for DPO),
    /// before the update.
    pub loss: f64,
    /// Learning rate of the update.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Objective-specific numbers (see each `train_*`); always `tokens`
    /// (loss tokens in the step).
    pub extra: BTreeMap<String, f64>,
    /// Wall-clock seconds by phase (GRPO: `sample_secs`, `update_secs`).
    /// Not serialized: the step log is a cached artifact and must be the
    /// same bytes on every run; callers log these instead.
    #[serde(skip)]
    pub secs: BTreeMap<String, f64>,
}

/// A training error (a data or settings problem found before training):
/// `what` names the example or field and says what to change.
pub(crate) fn bad(what: impl Into<String>) -> LmError {
    LmError::Train { what: what.into() }
}

impl TrainConfig {
    /// Checks ranges; `model` bounds `max_len`.
    pub fn validate(&self, model: &Llama) -> Result<(), LmError> {
        let max_pos = model.config().max_position_embeddings;
        if !self.lr.is_finite() || self.lr < 0.0 {
            return Err(bad(format!(
                "`lr` is {}: set it to a finite number ≥ 0 (e.g. 1e-4)",
                self.lr
            )));
        }
        for (name, v) in [("batch_size", self.batch_size), ("grad_accum", self.grad_accum)] {
            if v == 0 {
                return Err(bad(format!("`{name}` is 0: set it to at least 1")));
            }
        }
        for (name, v) in [("epochs", self.epochs), ("steps", self.steps)] {
            if v == Some(0) {
                return Err(bad(format!("`{name}` is 0: set it to at least 1, or leave it out")));
            }
        }
        if self.max_len < 2 || self.max_len > max_pos {
            return Err(bad(format!(
                "`max_len` is {}: set it between 2 and {max_pos} (the model's max_position_embeddings)",
                self.max_len
            )));
        }
        if let Some(c) = self.grad_clip.filter(|c| !(*c > 0.0 && c.is_finite())) {
            return Err(bad(format!(
                "`grad_clip` is {c}: set it to a positive number (e.g. 1.0), or leave it out for no clipping"
            )));
        }
        let beta_ok = |b: f64| (0.0..1.0).contains(&b);
        if !beta_ok(self.betas.0) || !beta_ok(self.betas.1) {
            return Err(bad(format!(
                "`betas` is {:?}: both must be in [0, 1) (e.g. [0.9, 0.999])",
                self.betas
            )));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(bad(format!(
                "`weight_decay` is {}: set it to a finite number ≥ 0",
                self.weight_decay
            )));
        }
        self.schedule.validate().map_err(|e| bad(format!("schedule: {e}")))?;
        if !(self.adam_eps > 0.0 && self.adam_eps.is_finite()) {
            return Err(bad(format!(
                "`adam_eps` is {}: set it to a small positive number (e.g. 1e-8)",
                self.adam_eps
            )));
        }
        Ok(())
    }
}

/// Checks that every id is in the model's vocabulary.
pub(crate) fn check_ids(
    what: &str,
    index: usize,
    ids: &[u32],
    vocab: usize,
) -> Result<(), LmError> {
    match ids.iter().find(|&&t| t as usize >= vocab) {
        Some(t) => Err(bad(format!(
            "{what} {index}: token id {t} is outside the vocabulary (size {vocab}); \
             tokenize the data with the model's own tokenizer"
        ))),
        None => Ok(()),
    }
}

/// A training sequence: `tokens[resp_start..]` are scored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seq {
    pub tokens: Vec<u32>,
    pub resp_start: usize,
}

impl Seq {
    /// Positions (of the shifted, `len − 1`-long input) that are scored.
    pub fn n_scored(&self) -> usize {
        self.tokens.len().saturating_sub(self.resp_start.max(1))
    }
}

/// Tokens kept of a `(prompt, response)` pair under `max_len`:
/// `(prompt_keep, response_keep)`; the prompt keeps its tail, the response its head.
pub(crate) fn keep_lens(prompt: usize, response: usize, max_len: usize) -> (usize, usize) {
    let resp = response.min(max_len - prompt.min(1));
    (prompt.min(max_len - resp), resp)
}

/// `prompt ++ response` truncated to `max_len` (see the module docs).
pub(crate) fn truncate(prompt: &[u32], response: &[u32], max_len: usize) -> Seq {
    let (p, r) = keep_lens(prompt.len(), response.len(), max_len);
    seq_with(prompt, response, p, r)
}

/// `prompt`'s last `p` tokens then `response`'s first `r`.
pub(crate) fn seq_with(prompt: &[u32], response: &[u32], p: usize, r: usize) -> Seq {
    let mut tokens = Vec::with_capacity(p + r);
    tokens.extend_from_slice(&prompt[prompt.len() - p..]);
    tokens.extend_from_slice(&response[..r]);
    Seq {
        tokens,
        resp_start: p,
    }
}

/// A right-padded micro-batch on the model's device.
///
/// # Shapes
/// - `inputs`, `targets`: `[B, T]` Int; `mask`: `[B, T]` float 0/1
pub(crate) struct Batch {
    pub inputs: Tensor<2, Int>,
    pub targets: Tensor<2, Int>,
    pub mask: Tensor<2>,
    /// `Σ mask`.
    pub n_tokens: usize,
    /// `T`.
    pub width: usize,
}

/// Pads `seqs` to the longest and builds inputs, shifted targets and the
/// response mask on `device`.
pub(crate) fn make_batch(seqs: &[&Seq], device: &Device) -> Batch {
    let b = seqs.len();
    let width = seqs
        .iter()
        .map(|s| s.tokens.len())
        .max()
        .unwrap_or(0)
        .saturating_sub(1)
        .max(1);
    let mut inputs = vec![PAD_ID as i32; b * width];
    let mut targets = vec![PAD_ID as i32; b * width];
    let mut mask = vec![0f32; b * width];
    let mut n_tokens = 0;
    for (row, s) in seqs.iter().enumerate() {
        let at = row * width;
        let n = s.tokens.len().saturating_sub(1);
        for t in 0..n {
            inputs[at + t] = s.tokens[t] as i32;
            targets[at + t] = s.tokens[t + 1] as i32;
            if t + 1 >= s.resp_start {
                mask[at + t] = 1.0;
                n_tokens += 1;
            }
        }
    }
    Batch {
        inputs: Tensor::from_data(TensorData::new(inputs, [b, width]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, width]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, width]), device),
        n_tokens,
        width,
    }
}

/// Log-probability of every target of `batch` under `model` (`[B, T]`;
/// padded positions hold garbage, mask them).
pub(crate) fn batch_logprobs(model: &Llama, batch: &Batch) -> Tensor<2> {
    let [b, t] = batch.inputs.dims();
    let logits = model.forward(batch.inputs.clone(), &model.causal_layout(b, t), None);
    token_logprobs(logits, batch.targets.clone())
}

/// `0..n` in a seeded random order.
pub(crate) fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Splits one optimizer step's examples into micro-batches of at most
/// `batch_size`, grouping similar lengths (less padding; the step's
/// gradient is the same whatever the grouping, as losses are weighted by
/// their share of the step).
pub(crate) fn micro_batches(
    mut step: Vec<usize>,
    len: impl Fn(usize) -> usize,
    batch_size: usize,
) -> Vec<Vec<usize>> {
    step.sort_by_key(|&i| (len(i), i));
    step.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// The example indices of each optimizer step of an SFT/DPO run over `n`
/// examples: per epoch a fresh shuffle cut into steps of
/// `batch_size × grad_accum` (the last one of an epoch may be smaller).
pub(crate) fn plan_steps(n: usize, cfg: &TrainConfig) -> Vec<Vec<usize>> {
    let per_step = cfg.batch_size * cfg.grad_accum;
    let per_epoch = n.div_ceil(per_step);
    let total = match (cfg.epochs, cfg.steps) {
        (Some(e), Some(s)) => (e * per_epoch).min(s),
        (Some(e), None) => e * per_epoch,
        (None, Some(s)) => s,
        (None, None) => per_epoch,
    };
    let mut rng = Rng::for_item(cfg.seed, 0x5348_5546); // "SHUF"
    let mut steps = Vec::with_capacity(total);
    while steps.len() < total {
        let order = shuffled(n, &mut rng);
        steps.extend(
            order
                .chunks(per_step)
                .map(<[usize]>::to_vec)
                .take(total - steps.len()),
        );
    }
    steps
}

/// The model being trained (on the autodiff device), its optimizer and
/// its learning-rate schedule.
pub(crate) struct Trainer {
    /// Always `Some` between calls (taken by the optimizer step).
    model: Option<Llama>,
    optim: Optim,
    schedule: LrSchedule,
    base_lr: f64,
    /// Optimizer steps taken.
    pub step: usize,
    /// The learning rate of the last step.
    last_lr: f64,
    /// Which pool runs the steps ([`crate::threads`]).
    threads: StepThreads,
}

impl Trainer {
    /// Puts `model` on its device's autodiff variant with every parameter
    /// requiring gradients (burn's `Module::train`), its parameters under
    /// canonical ids (so the optimizer state can be saved and restored).
    pub fn new(model: Llama, cfg: &TrainConfig, total_steps: usize) -> Self {
        Self::start(model, cfg, total_steps, Optim::new(cfg), 0, 0.0)
    }

    /// [`new`](Self::new), continuing from `state`: AdamW's moments and
    /// step count, and the schedule at step `state.step` of `total_steps`.
    ///
    /// # Errors
    /// A state from another architecture.
    pub fn resume(model: Llama, cfg: &TrainConfig, total_steps: usize, state: &OptimState) -> Result<Self, LmError> {
        state.check_model(&model)?;
        Ok(Self::start(model, cfg, total_steps, Optim::with(state.optim.clone(), cfg), state.step, state.last_lr))
    }

    fn start(model: Llama, cfg: &TrainConfig, total_steps: usize, optim: Optim, step: usize, last_lr: f64) -> Self {
        Trainer {
            model: Some(canonical_ids(model.train())),
            optim,
            schedule: cfg.schedule.with_run_steps(total_steps),
            base_lr: cfg.lr,
            step,
            last_lr,
            threads: StepThreads::default(),
        }
    }

    /// Runs one optimizer step's work (`f`: its micro-batches and
    /// [`Trainer::step`]) over `tokens` tokens on the pool that has been
    /// faster, one thread or rayon's ([`crate::threads`]; the same bits either way).
    pub fn run_step<R: Send>(&mut self, tokens: usize, f: impl FnOnce(&mut Trainer) -> R + Send) -> R {
        let mut threads = std::mem::take(&mut self.threads);
        let out = threads.run(tokens, || f(self));
        self.threads = threads;
        out
    }

    /// The optimizer's state now (cheap: the moments are shared handles).
    pub fn state(&self) -> OptimState {
        OptimState { step: self.step, last_lr: self.last_lr, shapes: param_shapes(self.model()), optim: self.optim.inner().clone() }
    }

    /// The model being trained.
    pub fn model(&self) -> &Llama {
        self.model.as_ref().expect("model present between steps")
    }

    /// The autodiff device.
    pub fn device(&self) -> Device {
        self.model().device()
    }

    /// Back-propagates one micro-batch's (weighted) loss.
    pub fn backward(&mut self, loss: Tensor<1>) {
        let model = self.model.as_ref().expect("model present between steps");
        self.optim.backward(model, loss);
    }

    /// Applies the accumulated gradients: returns `(lr, grad_norm)`.
    pub fn step(&mut self) -> (f64, f64) {
        let lr = self.schedule.lr_at(self.step, self.base_lr);
        let model = self.model.take().expect("model present between steps");
        let (model, norm) = self.optim.step(model, lr);
        self.model = Some(model);
        self.step += 1;
        self.last_lr = lr;
        (lr, norm)
    }

    /// A frozen copy of the current weights on the plain (non-autodiff)
    /// device, for sampling and reference log-probs (burn's `Module::valid`;
    /// it shares buffers with the training model until the next update,
    /// which then writes new buffers, so the copy stays as it was).
    pub fn snapshot(&self) -> Llama {
        self.model().valid()
    }

    /// The trained model on the plain device.
    pub fn finish(self) -> Llama {
        self.model().valid()
    }
}

/// Adds `x` weighted by `w` to a running `(Σ w·x)` entry of `extra`.
pub(crate) fn add_weighted(extra: &mut BTreeMap<String, f64>, key: &str, x: f64, w: f64) {
    *extra.entry(key.to_string()).or_insert(0.0) += x * w;
}

/// Reads a `[1]` tensor back to the host.
pub(crate) fn host(x: Tensor<1>) -> f64 {
    let v: f32 = x.detach().into_scalar();
    f64::from(v)
}
