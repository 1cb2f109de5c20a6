//! Supervised fine-tuning on response tokens only: masked cross-entropy
//! (METHODS §0.4), or the re-weighted token losses of on-policy SFT, IDFT
//! and DFT (§4.2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::model::Llama;
use crate::train::losses::{idft_forward, sft_loss, IdftParams};
use crate::train::state::OptimState;
use crate::train::trainer::{
    bad, check_ids, host, make_batch, micro_batches, plan_steps, truncate, Seq, StepMetrics,
    TrainConfig, Trainer,
};

/// One SFT row: the loss is on `response` tokens only (each predicted
/// from everything before it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftExample {
    /// Context tokens (not scored). May be empty (then the response's
    /// first token is not scored either: nothing predicts it).
    pub prompt: Vec<u32>,
    /// Target tokens (include the EOS token if the model should learn to stop).
    pub response: Vec<u32>,
}

/// The token loss SFT trains with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SftLoss {
    /// Cross-entropy, `−log p_t`.
    Nll,
    /// IDFT (METHODS §4.2): `−p_t^{γ_t} log p_t`, `γ_t` from φ_t; λ ramps
    /// with the step (`warmup_ratio`, `transition_ratio`).
    Idft {
        /// β, the γ clamp and the λ ramp.
        params: IdftParams,
        /// `true`: the gradient stops at the whole weight `p^γ` (METHODS'
        /// `sg(p^γ)`); `false`: only at γ (the released code).
        detach_weight: bool,
    },
    /// DFT: `−sg(p_t) log p_t` (IDFT with γ ≡ 1), the baseline IDFT extends.
    Dft,
}

impl SftLoss {
    /// The IDFT settings this loss is (DFT is γ clamped to 1, weight detached).
    fn idft(&self) -> Option<(IdftParams, bool)> {
        match *self {
            SftLoss::Nll => None,
            SftLoss::Idft { params, detach_weight } => Some((params, detach_weight)),
            SftLoss::Dft => Some((IdftParams { gamma_min: 1.0, gamma_max: 1.0, ..IdftParams::default() }, true)),
        }
    }
}

/// Bins of the per-step φ histogram: 10 of width 1 over `[−9, 1]`, values
/// outside counted in the end bins.
const PHI_BINS: (f32, f32) = (-9.0, 1.0);

/// Adds to `extra` the token shares of `values` (where `mask` is 1) in 10
/// equal bins over `range` (`{name}_hist_0` .. `_9`), weighted by `w`.
fn add_histogram(extra: &mut BTreeMap<String, f64>, name: &str, values: &[f32], mask: &[f32], range: (f32, f32), w: f64) {
    let n: f32 = mask.iter().sum();
    if n <= 0.0 {
        return;
    }
    let width = ((range.1 - range.0) / 10.0).max(f32::MIN_POSITIVE);
    let mut bins = [0f64; 10];
    for (&v, &m) in values.iter().zip(mask) {
        if m > 0.0 {
            let b = (((v - range.0) / width).floor() as i64).clamp(0, 9) as usize;
            bins[b] += 1.0;
        }
    }
    for (i, c) in bins.iter().enumerate() {
        *extra.entry(format!("{name}_hist_{i}")).or_default() += c / n as f64 * w;
    }
}

fn to_vec(t: burn::tensor::Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
}

/// Trains `model` on `examples` with the masked SFT loss and returns it on
/// the plain (non-autodiff) device.
///
/// Each optimizer step takes `batch_size × grad_accum` examples (see
/// [`TrainConfig`]); its loss is the token mean over all the step's
/// response tokens (micro-batches are weighted by their token counts).
/// `on_step` gets, per optimizer step, the loss before the update, the
/// learning rate, the global gradient norm, and `extra.tokens`.
///
/// # Errors
/// An invalid `cfg`, no examples, an example with no response tokens, or
/// a token id outside the vocabulary.
pub fn train_sft(
    model: Llama,
    examples: &[SftExample],
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<Llama, LmError> {
    train_sft_with(model, examples, SftLoss::Nll, cfg, on_step)
}

/// [`train_sft`] with another token loss. With IDFT or DFT, each step's
/// `extra` also holds the token means `phi_mean` and `gamma_mean`, `lambda`,
/// and 10-bin token-share histograms of φ (`phi_hist_*`, over `[−9, 1]`) and
/// γ (`gamma_hist_*`, over `[γ_min, γ_max]`), as the reference trainer logs.
///
/// # Errors
/// As [`train_sft`]'s.
pub fn train_sft_with(
    model: Llama,
    examples: &[SftExample],
    loss: SftLoss,
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<Llama, LmError> {
    Ok(train_sft_resumable(model, examples, loss, cfg, None, on_step)?.0)
}

/// [`train_sft_with`], optionally continuing from `resume` (a saved
/// [`OptimState`]: AdamW's moments, and the run's step, so the steps
/// already taken are skipped and the schedule goes on where it was), and
/// returning the optimizer state at the end too. With the same data and
/// `cfg`, N steps, save, restore, and the rest give the same weights as
/// the whole run at once (tested bit for bit).
///
/// # Errors
/// As [`train_sft`]'s; a `resume` state from another architecture, or
/// one that has already taken every step of this run.
pub fn train_sft_resumable(
    model: Llama,
    examples: &[SftExample],
    loss: SftLoss,
    cfg: &TrainConfig,
    resume: Option<&OptimState>,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<(Llama, OptimState), LmError> {
    cfg.validate(&model)?;
    let idft = loss.idft();
    if examples.is_empty() {
        return Err(bad("no SFT examples: the data has no rows"));
    }
    let vocab = model.config().vocab_size;
    for (i, e) in examples.iter().enumerate() {
        if e.response.is_empty() {
            return Err(bad(format!(
                "SFT example {i} has an empty response: every example needs at least one response token"
            )));
        }
        check_ids("SFT example", i, &e.prompt, vocab)?;
        check_ids("SFT example", i, &e.response, vocab)?;
    }
    let seqs: Vec<Seq> = examples
        .iter()
        .map(|e| truncate(&e.prompt, &e.response, cfg.max_len))
        .collect();
    let steps = plan_steps(seqs.len(), cfg);
    let n_steps = steps.len();
    let mut tr = match resume {
        Some(state) if state.step >= n_steps => {
            return Err(bad(format!(
                "the checkpoint to resume has already taken {} optimizer steps and this run has {n_steps}: \
                 ask for more `steps` (the total, counting those already taken)",
                state.step
            )))
        }
        Some(state) => Trainer::resume(model, cfg, n_steps, state)?,
        None => Trainer::new(model, cfg, n_steps),
    };
    let device = tr.device();
    let first = tr.step;
    for (index, step) in steps.into_iter().enumerate().skip(first) {
        let total: usize = step.iter().map(|&i| seqs[i].n_scored()).sum();
        let lambda = idft.map(|(p, _)| p.lambda(index as f64 / n_steps as f64));
        let (loss_sum, mut extra, lr, grad_norm) = tr.run_step(total, |tr| {
            let mut loss_sum = 0.0;
            let mut extra = BTreeMap::from([("tokens".to_string(), total as f64)]);
            for mb in micro_batches(step, |i| seqs[i].tokens.len(), cfg.batch_size) {
                let rows: Vec<&Seq> = mb.iter().map(|&i| &seqs[i]).collect();
                let batch = make_batch(&rows, &device);
                if batch.n_tokens == 0 {
                    continue;
                }
                let model = tr.model();
                let [b, t] = batch.inputs.dims();
                let logits = model.forward(batch.inputs, &model.causal_layout(b, t), None);
                let (loss, n) = match (idft, lambda) {
                    (Some((params, detach)), Some(lambda)) => {
                        let mask = to_vec(batch.mask.clone());
                        let out = idft_forward(logits, batch.targets, batch.mask, lambda, &params, detach);
                        let w = out.n_tokens as f64 / total as f64;
                        let (phi, gamma) = (to_vec(out.phi), to_vec(out.gamma));
                        let mean = |v: &[f32]| v.iter().zip(&mask).map(|(x, m)| (x * m) as f64).sum::<f64>() / out.n_tokens.max(1) as f64;
                        *extra.entry("phi_mean".into()).or_default() += mean(&phi) * w;
                        *extra.entry("gamma_mean".into()).or_default() += mean(&gamma) * w;
                        add_histogram(&mut extra, "phi", &phi, &mask, PHI_BINS, w);
                        add_histogram(&mut extra, "gamma", &gamma, &mask, (params.gamma_min as f32, params.gamma_max as f32), w);
                        (out.loss, out.n_tokens)
                    }
                    _ => sft_loss(logits, batch.targets, batch.mask),
                };
                let w = n as f64 / total as f64;
                loss_sum += host(loss.clone()) * w;
                tr.backward(loss.mul_scalar(w));
            }
            let (lr, grad_norm) = tr.step();
            (loss_sum, extra, lr, grad_norm)
        });
        if let Some(l) = lambda {
            extra.insert("lambda".into(), l);
        }
        on_step(&StepMetrics {
            step: index,
            loss: loss_sum,
            lr,
            grad_norm,
            extra,
            secs: Default::default(),
        });
    }
    let state = tr.state();
    Ok((tr.finish(), state))
}
