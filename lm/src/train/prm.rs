//! Process reward models (METHODS §2, SPHERE's step scorer): a Llama
//! decoder that scores each step of a solution, trained from step labels.
//!
//! The PRM is the language model itself, read Math-Shepherd's way: at the
//! last token of each step, the logits of two chosen tokens (`good`, `bad`;
//! `+` and `-` by default in the stage) are a two-way classifier, and the
//! step's score is `σ(logit[good] − logit[bad])`. No new head, so a PRM
//! checkpoint is an ordinary checkpoint (it saves, loads, exports and runs
//! on every backend like any other) plus a note of its two tokens, which the
//! stage keeps beside the weights. Training touches only those two logits
//! at the marked positions ([`prm_loss`]): every other position and token
//! is free.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::model::Llama;
use crate::train::losses::{prm_loss, prm_score};
use crate::train::trainer::{bad, check_ids, host, micro_batches, plan_steps, StepMetrics, TrainConfig, Trainer, PAD_ID};

/// The two tokens whose logits a PRM reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrmTokens {
    /// The "this step is right" token.
    pub good: u32,
    /// The "this step is wrong" token.
    pub bad: u32,
}

/// One solution for PRM training: `tokens` (prompt and steps), and for each
/// step the position of its last token with the step's label in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrmExample {
    /// The whole sequence.
    pub tokens: Vec<u32>,
    /// `(position in tokens, label)`, one per scored step.
    pub marks: Vec<(usize, f32)>,
}

/// An example cut to `max_len` tokens (its head kept), with the marks that
/// still fall inside; `None` when none does.
fn cut(e: &PrmExample, max_len: usize) -> Option<PrmExample> {
    let marks: Vec<(usize, f32)> = e.marks.iter().copied().filter(|&(p, _)| p < max_len).collect();
    let last = marks.iter().map(|&(p, _)| p).max()?;
    Some(PrmExample { tokens: e.tokens[..=last].to_vec(), marks })
}

/// A padded micro-batch: inputs, labels and the mark mask, each `[B, T]`.
fn batch(rows: &[&PrmExample], device: &Device) -> (Tensor<2, burn::tensor::Int>, Tensor<2>, Tensor<2>) {
    let b = rows.len();
    let width = rows.iter().map(|e| e.tokens.len()).max().unwrap_or(1).max(1);
    let mut inputs = vec![PAD_ID as i32; b * width];
    let mut labels = vec![0f32; b * width];
    let mut mask = vec![0f32; b * width];
    for (r, e) in rows.iter().enumerate() {
        for (t, &id) in e.tokens.iter().enumerate() {
            inputs[r * width + t] = id as i32;
        }
        for &(p, y) in &e.marks {
            labels[r * width + p] = y;
            mask[r * width + p] = 1.0;
        }
    }
    (
        Tensor::from_data(TensorData::new(inputs, [b, width]), device),
        Tensor::from_data(TensorData::new(labels, [b, width]), device),
        Tensor::from_data(TensorData::new(mask, [b, width]), device),
    )
}

/// Trains `model` as a PRM on `examples` and returns it on the plain device.
///
/// Each optimizer step takes `batch_size × grad_accum` examples; its loss
/// is the mean binary cross-entropy over all the step's marked steps
/// (micro-batches weighted by their mark counts). `extra` holds `marks`
/// (marks in the step) and `accuracy`: the share of marks whose score is on
/// the label's side of ½ (labels of exactly ½ count as wrong either way).
///
/// # Errors
/// An invalid `cfg`, no examples, an example with no marks, a mark outside
/// its tokens or a label outside `[0, 1]`, every mark past `max_len`, or a
/// token id outside the vocabulary.
pub fn train_prm(
    model: Llama,
    examples: &[PrmExample],
    tokens: PrmTokens,
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<Llama, LmError> {
    cfg.validate(&model)?;
    if examples.is_empty() {
        return Err(bad("no PRM examples: the data has no rows"));
    }
    let vocab = model.config().vocab_size;
    check_ids("PRM token", 0, &[tokens.good, tokens.bad], vocab)?;
    let mut kept = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        if e.marks.is_empty() {
            return Err(bad(format!("PRM example {i} has no scored step: every example needs at least one")));
        }
        if let Some(&(p, y)) = e.marks.iter().find(|&&(p, y)| p >= e.tokens.len() || !(0.0..=1.0).contains(&y)) {
            return Err(bad(format!(
                "PRM example {i} marks position {p} with label {y}: positions must be inside its {} tokens and labels in [0, 1]",
                e.tokens.len()
            )));
        }
        check_ids("PRM example", i, &e.tokens, vocab)?;
        kept.extend(cut(e, cfg.max_len));
    }
    if kept.is_empty() {
        return Err(bad(format!("no PRM example has a step within max_len = {}: raise `max_len`", cfg.max_len)));
    }
    let steps = plan_steps(kept.len(), cfg);
    let mut tr = Trainer::new(model, cfg, steps.len());
    let device = tr.device();
    for (index, step) in steps.into_iter().enumerate() {
        let total: usize = step.iter().map(|&i| kept[i].marks.len()).sum();
        let (loss_sum, right, lr, grad_norm) = tr.run_step(total, |tr| {
            let (mut loss_sum, mut right) = (0.0, 0usize);
            for mb in micro_batches(step, |i| kept[i].tokens.len(), cfg.batch_size) {
                let rows: Vec<&PrmExample> = mb.iter().map(|&i| &kept[i]).collect();
                let (inputs, labels, mask) = batch(&rows, &device);
                let model = tr.model();
                let [b, t] = inputs.dims();
                let logits = model.forward(inputs, &model.causal_layout(b, t), None);
                let out = prm_loss(logits, tokens.good, tokens.bad, labels, mask);
                right += agreeing(out.gap, &rows);
                let w = out.n_marks as f64 / total as f64;
                loss_sum += host(out.loss.clone()) * w;
                tr.backward(out.loss.mul_scalar(w));
            }
            let (lr, grad_norm) = tr.step();
            (loss_sum, right, lr, grad_norm)
        });
        let extra = BTreeMap::from([("marks".to_string(), total as f64), ("accuracy".to_string(), right as f64 / total as f64)]);
        on_step(&StepMetrics { step: index, loss: loss_sum, lr, grad_norm, extra, secs: Default::default() });
    }
    Ok(tr.finish())
}

/// How many marks of `rows` the logit gaps (`[B, T]`, see [`prm_loss`]) put
/// on their label's side of ½ (a score above ½ is a gap above 0).
fn agreeing(gap: Tensor<2>, rows: &[&PrmExample]) -> usize {
    let [_, t] = gap.dims();
    let gap: Vec<f32> = gap.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 gaps");
    let mut right = 0;
    for (r, e) in rows.iter().enumerate() {
        for &(p, y) in &e.marks {
            let z = gap[r * t + p];
            right += usize::from((z > 0.0 && y > 0.5) || (z < 0.0 && y < 0.5));
        }
    }
    right
}

/// A PRM's score of each marked position of `tokens` (the positions in
/// any order; each must be inside `tokens`).
pub fn step_scores(model: &Llama, tokens: &[u32], positions: &[usize], prm: PrmTokens) -> Vec<f32> {
    let Some(&first) = positions.iter().min() else {
        return Vec::new();
    };
    assert!(positions.iter().all(|&p| p < tokens.len()), "a PRM position is outside its tokens");
    // `scored_logits` returns the logits that predict tokens `start..`:
    // positions `start − 1 ..` of the input. One dummy token past the end
    // makes the last real position one of them.
    let mut padded = tokens.to_vec();
    padded.push(PAD_ID);
    let logits = crate::generate::scored_logits(model, &padded, first + 1);
    let v = model.config().vocab_size;
    positions.iter().map(|&p| prm_score(&logits[(p - first) * v..(p - first + 1) * v], prm.good, prm.bad)).collect()
}
