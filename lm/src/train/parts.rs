//! Supervised training with per-part token means: the one mechanism behind
//! CasCoD's loss (METHODS §3 C3), Std-CoT and the weighted Std-CoT control
//! (§9.2).
//!
//! Every scored token belongs to a *part* (say rationale or answer), and
//! each part has a weight `w_p`. An optimizer step's loss is
//!
//! ```text
//! L = Σ_p w_p · (Σ_{t ∈ p} −log π(y_t | ·)) / N_p
//! ```
//!
//! where `N_p` counts part `p`'s tokens in the whole step: each part is its
//! own token mean over the step, as CasCoD's code takes `L_r` and `L_a` over
//! its concatenated batch (`forward_type=concat`). So a token of part `p`
//! carries the weight `w_p / N_p` and the loss is a weighted token sum
//! ([`weighted_nll`]), which accumulates over micro-batches exactly.
//!
//! - Std-CoT: one part of weight 1, i.e. the step's token mean (plain SFT).
//! - CasCoD: an example is *two* sequences of one question, the rationale
//!   step (all tokens in part 0, weight `1 − α`) and the answer step (part 1,
//!   weight `α`), always in the same step.
//! - Weighted Std-CoT: one sequence whose rationale tokens are part 0 and
//!   answer tokens part 1, with CasCoD's weights.
//!
//! A part with no tokens in a step adds nothing (its weight is not moved to
//! the others). Batching, truncation and the step plan are the SFT loop's
//! ([`super::trainer`]); `batch_size` counts examples, so a CasCoD
//! micro-batch of `b` questions forwards `2b` sequences.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::model::Llama;
use crate::train::losses::{token_logprobs, weighted_nll};
use crate::train::trainer::{
    bad, check_ids, make_batch, micro_batches, plan_steps, truncate, Seq, StepMetrics,
    TrainConfig, Trainer,
};

/// One sequence of an example: `response[i]` is scored as part `parts[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSeq {
    /// Context tokens (not scored).
    pub prompt: Vec<u32>,
    /// Target tokens (include EOS if the model should learn to stop).
    pub response: Vec<u32>,
    /// The part of each response token (same length as `response`).
    pub parts: Vec<usize>,
}

impl PartSeq {
    /// A sequence whose response is all part `part`.
    pub fn uniform(prompt: Vec<u32>, response: Vec<u32>, part: usize) -> Self {
        let parts = vec![part; response.len()];
        PartSeq { prompt, response, parts }
    }
}

/// Sequences trained together, always in the same optimizer step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsExample {
    /// One or more sequences (CasCoD: rationale step, answer step).
    pub seqs: Vec<PartSeq>,
}

/// A loss part: its name (for the per-step logs) and weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// `loss_NAME` and `tokens_NAME` in the step metrics.
    pub name: String,
    /// `w_p`.
    pub weight: f64,
}

impl Part {
    /// A part called `name` with weight `weight`.
    pub fn new(name: &str, weight: f64) -> Self {
        Part { name: name.to_string(), weight }
    }
}

/// A truncated sequence and the parts of its kept response tokens.
struct Scored {
    seq: Seq,
    parts: Vec<usize>,
}

impl Scored {
    /// `(position of the shifted input, part)` of every scored token; the
    /// same positions `make_batch` puts in its mask.
    fn positions(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let start = self.seq.resp_start.max(1);
        (start..self.seq.tokens.len()).map(move |j| (j - 1, self.parts[j - self.seq.resp_start]))
    }
}

/// Per-token weight of each part in a step: `w_p / N_p`, 0 for an empty part.
pub fn part_token_weights(parts: &[Part], counts: &[usize]) -> Vec<f64> {
    parts
        .iter()
        .zip(counts)
        .map(|(p, &n)| if n == 0 { 0.0 } else { p.weight / n as f64 })
        .collect()
}

/// The step loss from per-part NLL sums and token counts:
/// `Σ_p w_p · nll_p / N_p`.
pub fn parts_loss(parts: &[Part], nll_sums: &[f64], counts: &[usize]) -> f64 {
    let w = part_token_weights(parts, counts);
    w.iter().zip(nll_sums).map(|(w, s)| w * s).sum()
}

/// Trains `model` on `examples` with the per-part loss (see the module docs)
/// and returns it on the plain device.
///
/// `on_step` gets per optimizer step the loss before the update, the learning
/// rate, the gradient norm, and in `extra`: `tokens`, and per part
/// `loss_NAME` (that part's token mean) and `tokens_NAME`.
///
/// # Errors
/// An invalid `cfg`, no examples or no parts, a weight that is negative or
/// not finite, a sequence with no response tokens or whose `parts` do not
/// match its response, a part index out of range, or a token id outside the
/// vocabulary.
pub fn train_parts(
    model: Llama,
    examples: &[PartsExample],
    parts: &[Part],
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<Llama, LmError> {
    cfg.validate(&model)?;
    check(examples, parts, model.config().vocab_size)?;
    let items: Vec<Vec<Scored>> = examples
        .iter()
        .map(|e| e.seqs.iter().map(|s| scored(s, cfg.max_len)).collect())
        .collect();
    let steps = plan_steps(items.len(), cfg);
    let mut tr = Trainer::new(model, cfg, steps.len());
    let device = tr.device();
    for (index, step) in steps.into_iter().enumerate() {
        let mut counts = vec![0usize; parts.len()];
        for s in step.iter().flat_map(|&i| &items[i]) {
            for (_, p) in s.positions() {
                counts[p] += 1;
            }
        }
        let token_w = part_token_weights(parts, &counts);
        let (nll, lr, grad_norm) = tr.run_step(counts.iter().sum::<usize>(), |tr| {
            let mut nll = vec![0f64; parts.len()];
            let longest = |i: usize| items[i].iter().map(|s| s.seq.tokens.len()).max().unwrap_or(0);
            for mb in micro_batches(step, longest, cfg.batch_size) {
                let rows: Vec<&Scored> = mb.iter().flat_map(|&i| &items[i]).collect();
                let batch = make_batch(&rows.iter().map(|s| &s.seq).collect::<Vec<_>>(), &device);
                if batch.n_tokens == 0 {
                    continue;
                }
                let weights = weight_tensor(&rows, &token_w, batch.width, &device);
                let model = tr.model();
                let [b, t] = batch.inputs.dims();
                let logits = model.forward(batch.inputs, &model.causal_layout(b, t), None);
                let lp = token_logprobs(logits, batch.targets);
                add_part_nll(&mut nll, &rows, &lp, batch.width);
                tr.backward(weighted_nll(lp, weights));
            }
            let (lr, grad_norm) = tr.step();
            (nll, lr, grad_norm)
        });
        on_step(&StepMetrics {
            step: index,
            loss: parts_loss(parts, &nll, &counts),
            lr,
            grad_norm,
            extra: part_extras(parts, &nll, &counts),
            secs: Default::default(),
        });
    }
    Ok(tr.finish())
}

fn check(examples: &[PartsExample], parts: &[Part], vocab: usize) -> Result<(), LmError> {
    if examples.is_empty() {
        return Err(bad("no training examples: the data has no rows"));
    }
    if parts.is_empty() {
        return Err(bad("no loss parts: give at least one"));
    }
    if let Some(p) = parts.iter().find(|p| !(p.weight >= 0.0 && p.weight.is_finite())) {
        return Err(bad(format!("loss part `{}` has weight {}: weights must be finite and ≥ 0", p.name, p.weight)));
    }
    for (i, e) in examples.iter().enumerate() {
        if e.seqs.is_empty() {
            return Err(bad(format!("example {i} has no sequences")));
        }
        for s in &e.seqs {
            if s.response.is_empty() {
                return Err(bad(format!(
                    "example {i} has an empty response: every sequence needs at least one response token"
                )));
            }
            if s.parts.len() != s.response.len() {
                return Err(bad(format!(
                    "example {i}: {} part labels for {} response tokens",
                    s.parts.len(),
                    s.response.len()
                )));
            }
            if let Some(p) = s.parts.iter().find(|&&p| p >= parts.len()) {
                return Err(bad(format!("example {i}: part {p} but only {} parts", parts.len())));
            }
            check_ids("example", i, &s.prompt, vocab)?;
            check_ids("example", i, &s.response, vocab)?;
        }
    }
    Ok(())
}

/// `s` truncated to `max_len`, its part labels cut with its response.
fn scored(s: &PartSeq, max_len: usize) -> Scored {
    let seq = truncate(&s.prompt, &s.response, max_len);
    let kept = seq.tokens.len() - seq.resp_start;
    Scored { parts: s.parts[..kept].to_vec(), seq }
}

/// `[B, T]` per-token weights laid out like `make_batch`'s mask.
fn weight_tensor(rows: &[&Scored], token_w: &[f64], width: usize, device: &Device) -> Tensor<2> {
    let mut w = vec![0f32; rows.len() * width];
    for (r, s) in rows.iter().enumerate() {
        for (t, p) in s.positions() {
            w[r * width + t] = token_w[p] as f32;
        }
    }
    Tensor::from_data(TensorData::new(w, [rows.len(), width]), device)
}

/// Adds each part's `Σ −log π` over this micro-batch (read on the host).
fn add_part_nll(nll: &mut [f64], rows: &[&Scored], lp: &Tensor<2>, width: usize) {
    let data = lp.clone().detach().into_data().convert::<f32>();
    let lp = data.as_slice::<f32>().expect("f32 log-probs");
    for (r, s) in rows.iter().enumerate() {
        for (t, p) in s.positions() {
            nll[p] -= f64::from(lp[r * width + t]);
        }
    }
}

fn part_extras(parts: &[Part], nll: &[f64], counts: &[usize]) -> BTreeMap<String, f64> {
    let mut extra = BTreeMap::from([("tokens".to_string(), counts.iter().sum::<usize>() as f64)]);
    for ((p, s), &n) in parts.iter().zip(nll).zip(counts) {
        extra.insert(format!("loss_{}", p.name), if n == 0 { 0.0 } else { s / n as f64 });
        extra.insert(format!("tokens_{}", p.name), n as f64);
    }
    extra
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
