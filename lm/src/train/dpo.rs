//! Direct preference optimisation (METHODS §0.3) against the frozen
//! starting model, with RPO's optional NLL term on the chosen responses
//! (METHODS §2 P5).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::model::Llama;
use crate::train::losses::{dpo_loss, rpo_loss, sequence_logprobs};
use crate::train::trainer::{
    add_weighted, bad, batch_logprobs, check_ids, host, keep_lens, make_batch, micro_batches,
    plan_steps, seq_with, Seq, StepMetrics, TrainConfig, Trainer,
};

/// One preference pair: `chosen` is preferred to `rejected` after `prompt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpoExample {
    /// Shared context (not scored).
    pub prompt: Vec<u32>,
    /// Preferred response.
    pub chosen: Vec<u32>,
    /// Dispreferred response.
    pub rejected: Vec<u32>,
}

/// DPO's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpoParams {
    /// β, the strength of the implicit KL to the reference (0.1 in the
    /// reference configs).
    pub beta: f64,
    /// α of RPO: the loss is `DPO + α·NLL(chosen)` (see
    /// [`chosen_nll`](crate::train::chosen_nll) for the normalisation).
    /// 0 is plain DPO: the term is not computed at all.
    pub nll_weight: f64,
}

impl Default for DpoParams {
    fn default() -> Self {
        DpoParams {
            beta: 0.1,
            nll_weight: 0.0,
        }
    }
}

/// Both sequences of a pair, truncated with the same prompt tail.
fn pair_seqs(e: &DpoExample, max_len: usize) -> (Seq, Seq) {
    let (_, rc) = keep_lens(e.prompt.len(), e.chosen.len(), max_len);
    let (_, rr) = keep_lens(e.prompt.len(), e.rejected.len(), max_len);
    let p = e.prompt.len().min(max_len - rc.max(rr));
    (
        seq_with(&e.prompt, &e.chosen, p, rc),
        seq_with(&e.prompt, &e.rejected, p, rr),
    )
}

/// Summed response log-probs of the pairs `mb` under `model`:
/// `[2b]` tensor, chosen rows then rejected rows.
fn pair_logprobs(model: &Llama, pairs: &[(Seq, Seq)], mb: &[usize], device: &Device) -> Tensor<1> {
    let rows: Vec<&Seq> = mb
        .iter()
        .map(|&i| &pairs[i].0)
        .chain(mb.iter().map(|&i| &pairs[i].1))
        .collect();
    let batch = make_batch(&rows, device);
    let lp = batch_logprobs(model, &batch);
    sequence_logprobs(lp, batch.mask)
}

fn vector(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Trains `model` with DPO (plus `α·NLL(chosen)` when `params.nll_weight`
/// is above 0) and returns it on the plain device. The reference is
/// the starting model: its log-probs are computed once, before training.
///
/// An optimizer step takes `batch_size × grad_accum` pairs; its loss is the
/// mean over the step's pairs. `extra`: `reward_accuracy` (share of pairs with
/// chosen reward > rejected reward), `margin` (mean reward difference),
/// `chosen_reward` and `rejected_reward` (mean `β·(log π − log π_ref)`, i.e.
/// the log-prob drift from the start, scaled by β), `tokens`; all measured
/// on the step's pairs before its update; with an NLL weight, also `nll`
/// (the unweighted term, so `loss = DPO loss + α·nll`).
///
/// # Errors
/// An invalid `cfg`, `beta` or `nll_weight`, no pairs, an empty chosen or rejected
/// response, or a token id outside the vocabulary.
pub fn train_dpo(
    model: Llama,
    examples: &[DpoExample],
    params: DpoParams,
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<Llama, LmError> {
    cfg.validate(&model)?;
    let DpoParams { beta, nll_weight } = params;
    if !(nll_weight >= 0.0 && nll_weight.is_finite()) {
        return Err(bad(format!(
            "DPO `nll_weight` is {nll_weight}: set it to 0 (plain DPO) or above (RPO uses 1)"
        )));
    }
    if !(beta > 0.0 && beta.is_finite()) {
        return Err(bad(format!(
            "DPO `beta` is {beta}: set it to a positive number (0.1 is the usual default)"
        )));
    }
    if examples.is_empty() {
        return Err(bad("no DPO pairs: the data has no rows"));
    }
    let vocab = model.config().vocab_size;
    for (i, e) in examples.iter().enumerate() {
        if e.chosen.is_empty() || e.rejected.is_empty() {
            let side = if e.chosen.is_empty() { "chosen" } else { "rejected" };
            return Err(bad(format!(
                "DPO pair {i} has an empty {side} response: both responses need at least one token"
            )));
        }
        for ids in [&e.prompt, &e.chosen, &e.rejected] {
            check_ids("DPO pair", i, ids, vocab)?;
        }
    }
    let pairs: Vec<(Seq, Seq)> = examples.iter().map(|e| pair_seqs(e, cfg.max_len)).collect();
    let len = |i: usize| pairs[i].0.tokens.len().max(pairs[i].1.tokens.len());

    // Reference log-probs, once, on the plain device.
    let reference = model.valid();
    let ref_device = reference.device();
    let (mut ref_c, mut ref_r) = (vec![0f32; pairs.len()], vec![0f32; pairs.len()]);
    for mb in micro_batches((0..pairs.len()).collect(), len, cfg.batch_size) {
        let lp = pair_logprobs(&reference, &pairs, &mb, &ref_device)
            .into_data()
            .convert::<f32>();
        let lp = lp.as_slice::<f32>().expect("f32 log-probs");
        for (k, &i) in mb.iter().enumerate() {
            ref_c[i] = lp[k];
            ref_r[i] = lp[mb.len() + k];
        }
    }
    drop(reference);

    let steps = plan_steps(pairs.len(), cfg);
    let mut tr = Trainer::new(model, cfg, steps.len());
    let device = tr.device();
    for (index, step) in steps.into_iter().enumerate() {
        let n_pairs = step.len() as f64;
        let tokens: usize = step
            .iter()
            .map(|&i| pairs[i].0.n_scored() + pairs[i].1.n_scored())
            .sum();
        let (extra, loss_sum, lr, grad_norm) = tr.run_step(tokens, |tr| {
            let mut extra = BTreeMap::new();
            let mut loss_sum = 0.0;
            for mb in micro_batches(step, len, cfg.batch_size) {
                let b = mb.len();
                let lp = pair_logprobs(tr.model(), &pairs, &mb, &device);
                let rc = vector(mb.iter().map(|&i| ref_c[i]).collect(), &device);
                let rr = vector(mb.iter().map(|&i| ref_r[i]).collect(), &device);
                let chosen_lp = lp.clone().narrow(0, 0, b);
                let out = dpo_loss(chosen_lp.clone(), lp.narrow(0, b, b), rc, rr, beta);
                let w = b as f64 / n_pairs;
                let n_chosen = mb.iter().map(|&i| pairs[i].0.n_scored().max(1) as f32);
                let n_chosen = vector(n_chosen.collect(), &device);
                let (loss, nll) = rpo_loss(out.loss, chosen_lp, n_chosen, nll_weight);
                if let Some(nll) = nll {
                    add_weighted(&mut extra, "nll", nll.into(), w);
                }
                loss_sum += host(loss.clone()) * w;
                add_weighted(&mut extra, "reward_accuracy", out.reward_accuracy.into(), w);
                add_weighted(&mut extra, "margin", out.margin.into(), w);
                add_weighted(&mut extra, "chosen_reward", out.chosen_reward.into(), w);
                add_weighted(&mut extra, "rejected_reward", out.rejected_reward.into(), w);
                tr.backward(loss.mul_scalar(w));
            }
            extra.insert("tokens".into(), tokens as f64);
            let (lr, grad_norm) = tr.step();
            (extra, loss_sum, lr, grad_norm)
        });
        on_step(&StepMetrics {
            step: index,
            loss: loss_sum,
            lr,
            grad_norm,
            extra,
            secs: Default::default(),
        });
    }
    Ok(tr.finish())
}
