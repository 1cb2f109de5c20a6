//! Supervised fine-tuning: masked cross-entropy on response tokens only
//! (METHODS §0.4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::model::Llama;
use crate::train::losses::sft_loss;
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
    cfg.validate(&model)?;
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
    let mut tr = Trainer::new(model, cfg, steps.len());
    let device = tr.device();
    for (index, step) in steps.into_iter().enumerate() {
        let total: usize = step.iter().map(|&i| seqs[i].n_scored()).sum();
        let mut loss_sum = 0.0;
        for mb in micro_batches(step, |i| seqs[i].tokens.len(), cfg.batch_size) {
            let rows: Vec<&Seq> = mb.iter().map(|&i| &seqs[i]).collect();
            let batch = make_batch(&rows, &device);
            if batch.n_tokens == 0 {
                continue;
            }
            let model = tr.model();
            let [b, t] = batch.inputs.dims();
            let logits = model.forward(batch.inputs, &model.causal_layout(b, t), None);
            let (loss, n) = sft_loss(logits, batch.targets, batch.mask);
            let w = n as f64 / total as f64;
            loss_sum += host(loss.clone()) * w;
            tr.backward(loss.mul_scalar(w));
        }
        let (lr, grad_norm) = tr.step();
        on_step(&StepMetrics {
            step: index,
            loss: loss_sum,
            lr,
            grad_norm,
            extra: BTreeMap::from([("tokens".to_string(), total as f64)]),
            secs: Default::default(),
        });
    }
    Ok(tr.finish())
}
