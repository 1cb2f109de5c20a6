//! Group-relative policy optimisation (METHODS §0.2), online: every round
//! samples fresh groups from the current policy.
//!
//! One round (`step`):
//! 1. take the next `prompts_per_step` prompts (a seeded shuffle, reshuffled
//!    when exhausted) and sample `group_size` responses for each from a
//!    frozen copy of the current policy, π_old, with the KV-cached batched
//!    [`generate`] (every response of the round in one batch);
//! 2. score them with `reward` (in parallel) and compute group-normalized
//!    advantages ([`group_advantages`]);
//! 3. for `ppo_epochs` passes over the round's responses (reshuffled per
//!    pass), cut into mini-batches of `batch_size × grad_accum` responses,
//!    take one optimizer step per mini-batch on
//!    `token_mean(−min(ρA, clip(ρ, 1±ε)A)) + kl_coef · token_mean(k3)`
//!    ([`grpo_loss`]), with `ρ = π_θ/π_old` per token and k3 against the
//!    frozen starting model; minus `entropy_coef · token_mean(H)` when that
//!    is not 0.
//!
//! All log-probs (π_θ, π_old, reference) and the entropy are taken at the
//! rollouts' sampling temperature, logits divided by it as verl does: the
//! ratio and the KL are then about the distribution the responses came
//! from. Greedy rollouts (temperature 0) use temperature 1.
//!
//! When a round makes a single optimizer step (`ppo_epochs = 1` and all
//! responses fit one mini-batch) π_θ = π_old during it, so the π_old
//! log-probs are the detached current ones (ρ = 1 exactly) and the extra
//! forward pass is skipped; otherwise π_old's log-probs are computed once
//! per round by the sampling copy. The reference forward is skipped when
//! `kl_coef` is 0.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::generate::{generate, Decode, GenerateRequest};
use crate::model::Llama;
use crate::rng::Rng;
use crate::sampling::SamplingParams;
use crate::train::advantages::{group_advantages, zero_advantage_fraction};
use crate::train::losses::{grpo_loss, token_entropy, token_logprobs};
use crate::train::trainer::{
    add_weighted, bad, check_ids, host, make_batch, micro_batches, shuffled,
    truncate, Batch, Seq, StepMetrics, TrainConfig, Trainer,
};

/// GRPO's own settings (the rest is [`TrainConfig`]: `lr`, `schedule`,
/// `batch_size`, `grad_accum`, `grad_clip`, `weight_decay`, `max_len`, `seed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpoConfig {
    /// Responses sampled per prompt (G; 16 in SkillFactory's run).
    pub group_size: usize,
    /// Prompts per round.
    pub prompts_per_step: usize,
    /// Rounds (sample, then update).
    pub steps: usize,
    /// Passes over each round's responses.
    pub ppo_epochs: usize,
    /// Clip range ε of the ratio (verl `clip_ratio` 0.2).
    pub clip: f32,
    /// Weight of the k3 KL to the starting model (0.001 in METHODS §0.2).
    pub kl_coef: f32,
    /// Weight of the entropy bonus (verl's `c_ent`); 0 turns it off.
    pub entropy_coef: f32,
    /// How responses are sampled. `seed` is mixed with the train seed;
    /// `stop` strings need a decoder.
    pub sampling: SamplingParams,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            group_size: 8,
            prompts_per_step: 8,
            steps: 100,
            ppo_epochs: 1,
            clip: 0.2,
            kl_coef: 0.001,
            entropy_coef: 0.0,
            sampling: SamplingParams {
                temperature: 1.0,
                ..SamplingParams::default()
            },
        }
    }
}

impl GrpoConfig {
    fn validate(&self) -> Result<(), LmError> {
        for (name, v) in [
            ("group_size", self.group_size),
            ("prompts_per_step", self.prompts_per_step),
            ("steps", self.steps),
            ("ppo_epochs", self.ppo_epochs),
            ("sampling.max_new_tokens", self.sampling.max_new_tokens),
        ] {
            if v == 0 {
                return Err(bad(format!("GRPO `{name}` is 0: set it to at least 1")));
            }
        }
        if !(self.clip > 0.0 && self.clip < 1.0) {
            return Err(bad(format!(
                "GRPO `clip` is {}: set it between 0 and 1 (0.2 is the usual value)",
                self.clip
            )));
        }
        if !(self.kl_coef >= 0.0 && self.kl_coef.is_finite()) {
            return Err(bad(format!(
                "GRPO `kl_coef` is {}: set it to a finite number ≥ 0 (0 turns the KL term off)",
                self.kl_coef
            )));
        }
        if !self.entropy_coef.is_finite() {
            return Err(bad(format!(
                "GRPO `entropy_coef` is {}: set it to a finite number (0 turns the bonus off)",
                self.entropy_coef
            )));
        }
        Ok(())
    }
}

/// Host rows of per-position log-probs (`len − 1` values per sequence).
type Rows = Vec<Vec<f32>>;

/// `[B, T]` tensor of the rows of `mb`, zero-padded to `width`.
fn rows_tensor(rows: &Rows, mb: &[usize], width: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0f32; mb.len() * width];
    for (k, &i) in mb.iter().enumerate() {
        let r = &rows[i];
        v[k * width..k * width + r.len()].copy_from_slice(r);
    }
    Tensor::from_data(TensorData::new(v, [mb.len(), width]), device)
}

/// The temperature the log-probs of a round are taken at: the rollouts'
/// sampling temperature, so that π_θ, π_old and the reference are the
/// distributions the responses were drawn from (verl divides the logits by
/// the rollout temperature before the log-softmax of all three). Greedy
/// sampling (temperature 0) has no such distribution; it counts as 1.
pub(crate) fn logprob_temperature(sampling: &SamplingParams) -> f32 {
    if sampling.temperature > 0.0 {
        sampling.temperature
    } else {
        1.0
    }
}

/// `logits / temperature` (the identity at 1). Scaling before the fused
/// log-prob op keeps it one autodiff node plus a scalar division.
fn tempered(logits: Tensor<3>, temperature: f32) -> Tensor<3> {
    if temperature == 1.0 {
        logits
    } else {
        logits.div_scalar(f64::from(temperature))
    }
}

/// Per-target log-probs of `batch` under `model` at `temperature` (`[B, T]`).
pub(crate) fn tempered_logprobs(model: &Llama, batch: &Batch, temperature: f32) -> Tensor<2> {
    let [b, t] = batch.inputs.dims();
    let logits = model.forward(batch.inputs.clone(), &model.causal_layout(b, t), None);
    token_logprobs(tempered(logits, temperature), batch.targets.clone())
}

/// Per-position log-probs of `seqs[mb]` under `model` at `temperature`, into `out`.
fn fill_rows(model: &Llama, seqs: &[Seq], mb: &[usize], batch: &Batch, temperature: f32, out: &mut Rows) {
    let lp = tempered_logprobs(model, batch, temperature).into_data().convert::<f32>();
    let lp = lp.as_slice::<f32>().expect("f32 log-probs");
    for (k, &i) in mb.iter().enumerate() {
        let n = seqs[i].tokens.len().saturating_sub(1);
        out[i] = lp[k * batch.width..k * batch.width + n].to_vec();
    }
}

/// Trains `model` with online GRPO and returns it on the plain device.
///
/// `reward(prompt_index, response_tokens)` scores one response to
/// `prompts[prompt_index]` (the response includes its EOS token when it
/// ended with one); it is called from several threads. `decode` is needed
/// only for `grpo.sampling.stop` strings. Sampling seeds derive from
/// `(cfg.seed, sampling.seed, sample number)`, so a run is reproducible.
/// Training sequences are `prompt ++ response` truncated to `cfg.max_len`
/// (choose `max_len ≥` prompt length + `max_new_tokens` to score whole responses).
///
/// `on_step` is called once per round with: `loss` (mean over the round's
/// optimizer steps, each a token mean), `lr` (of the round's last update),
/// `grad_norm` (mean), and `extra`: `reward_mean`, `reward_std`,
/// `zero_adv_fraction` (share of groups with all-equal rewards), `kl`,
/// `pg_loss`, `clip_fraction`, `entropy` (when `entropy_coef` ≠ 0),
/// `response_len` (mean tokens), `tokens`, `updates`, and the round's
/// wall-clock split (where a round's time goes decides what to optimize):
/// `sample_secs` (the rollouts: generation with the frozen copy, plus the
/// rewards) and `update_secs` (everything after: advantages, π_old and
/// reference log-probs, then every forward/backward/optimizer step of the
/// `ppo_epochs` passes).
///
/// # Errors
/// An invalid config, no prompts, an empty prompt, a token id outside the
/// vocabulary, a prompt that cannot fit `max_new_tokens` more positions, or
/// stop strings without `decode`.
pub fn train_grpo(
    model: Llama,
    prompts: &[Vec<u32>],
    reward: &(dyn Fn(usize, &[u32]) -> f32 + Sync),
    decode: Option<&(dyn Decode + Sync)>,
    grpo: &GrpoConfig,
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<Llama, LmError> {
    cfg.validate(&model)?;
    grpo.validate()?;
    if prompts.is_empty() {
        return Err(bad("no GRPO prompts: the data has no rows"));
    }
    if !grpo.sampling.stop.is_empty() && decode.is_none() {
        return Err(bad(
            "GRPO `sampling.stop` strings need a decoder to read the responses: pass one, or drop the stop strings",
        ));
    }
    let (vocab, max_pos) = (
        model.config().vocab_size,
        model.config().max_position_embeddings,
    );
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(bad(format!(
                "GRPO prompt {i} is empty: every prompt needs at least one token"
            )));
        }
        check_ids("GRPO prompt", i, p, vocab)?;
        if p.len() + grpo.sampling.max_new_tokens > max_pos {
            return Err(bad(format!(
                "GRPO prompt {i} is too long: its {} tokens + `sampling.max_new_tokens` {} exceed the \
                 model's max_position_embeddings {max_pos}; shorten the prompt or lower max_new_tokens",
                p.len(),
                grpo.sampling.max_new_tokens
            )));
        }
    }
    let group = grpo.group_size;
    let n = grpo.prompts_per_step * group;
    let per_update = cfg.batch_size * cfg.grad_accum;
    let updates_per_round = grpo.ppo_epochs * n.div_ceil(per_update);
    let need_old = updates_per_round > 1;
    let temp = logprob_temperature(&grpo.sampling);
    let mut sampling = grpo.sampling.clone();
    sampling.seed = Rng::for_item(cfg.seed, grpo.sampling.seed).next_u64();

    let reference = (grpo.kl_coef > 0.0).then(|| model.valid());
    let mut tr = Trainer::new(model, cfg, grpo.steps * updates_per_round);
    let device = tr.device();
    let mut prompt_rng = Rng::for_item(cfg.seed, 0x5052_4d54); // "PRMT"
    let mut batch_rng = Rng::for_item(cfg.seed, 0x4d42_4154); // "MBAT"
    let mut queue: Vec<usize> = Vec::new();
    let mut score_threads = crate::threads::StepThreads::default();

    for round in 0..grpo.steps {
        // 1. Sample from the current policy.
        let t0 = Instant::now();
        let mut picked = Vec::with_capacity(grpo.prompts_per_step);
        while picked.len() < grpo.prompts_per_step {
            if queue.is_empty() {
                queue = shuffled(prompts.len(), &mut prompt_rng);
                queue.reverse();
            }
            picked.push(queue.pop().expect("refilled"));
        }
        let owner: Vec<usize> = picked
            .iter()
            .flat_map(|&p| std::iter::repeat_n(p, group))
            .collect();
        let inputs: Vec<Vec<u32>> = owner.iter().map(|&p| prompts[p].clone()).collect();
        let ids: Vec<u64> = (0..n as u64).map(|k| (round * n) as u64 + k).collect();
        let policy = tr.snapshot();
        let gens = generate(
            &policy,
            &GenerateRequest {
                prompts: &inputs,
                item_ids: &ids,
                params: &sampling,
                decode,
            },
        )?;
        let rewards: Vec<f32> = gens
            .par_iter()
            .zip(owner.par_iter())
            .map(|(g, &p)| reward(p, &g.tokens))
            .collect();
        let sample_secs = t0.elapsed().as_secs_f64();

        // 2. Advantages and sequences.
        let t1 = Instant::now();
        let adv = group_advantages(&rewards, group);
        let seqs: Vec<Seq> = owner
            .iter()
            .zip(&gens)
            .map(|(&p, g)| truncate(&prompts[p], &g.tokens, cfg.max_len))
            .collect();
        let len = |i: usize| seqs[i].tokens.len();
        let mut old: Rows = vec![Vec::new(); n];
        let mut refs: Rows = vec![Vec::new(); n];
        if need_old || reference.is_some() {
            let plain = policy.device();
            let tokens: usize = seqs.iter().map(|s| s.tokens.len()).sum();
            // These forward passes choose their pool too (their own timings:
            // a forward pass costs less per token than a training step).
            score_threads.run(tokens, || {
                for mb in micro_batches((0..n).collect(), len, cfg.batch_size) {
                    let rows: Vec<&Seq> = mb.iter().map(|&i| &seqs[i]).collect();
                    let batch = make_batch(&rows, &plain);
                    if need_old {
                        fill_rows(&policy, &seqs, &mb, &batch, temp, &mut old);
                    }
                    if let Some(r) = &reference {
                        fill_rows(r, &seqs, &mb, &batch, temp, &mut refs);
                    }
                }
            });
        }
        drop(policy);

        // 3. Updates.
        let has_reference = reference.is_some();
        let mut extra = BTreeMap::new();
        let (mut loss_sum, mut norm_sum, mut lr, mut updates) = (0.0, 0.0, 0.0, 0usize);
        for _ in 0..grpo.ppo_epochs {
            let order = shuffled(n, &mut batch_rng);
            for chunk in order.chunks(per_update) {
                let total: usize = chunk.iter().map(|&i| seqs[i].n_scored()).sum();
                // One optimizer step, on the pool that has been faster (the same bits either way).
                let (step_lr, norm) = tr.run_step(total, |tr| {
                    for mb in micro_batches(chunk.to_vec(), len, cfg.batch_size) {
                        let rows: Vec<&Seq> = mb.iter().map(|&i| &seqs[i]).collect();
                        let batch = make_batch(&rows, &device);
                        if batch.n_tokens == 0 {
                            continue;
                        }
                        let model = tr.model();
                        let [b, t] = batch.inputs.dims();
                        let logits = tempered(
                            model.forward(batch.inputs.clone(), &model.causal_layout(b, t), None),
                            temp,
                        );
                        let new_lp = token_logprobs(logits.clone(), batch.targets.clone());
                        let old_lp = if need_old {
                            rows_tensor(&old, &mb, t, &device)
                        } else {
                            new_lp.clone().detach()
                        };
                        let ref_lp = has_reference.then(|| rows_tensor(&refs, &mb, t, &device));
                        let a: Vec<f32> = mb.iter().map(|&i| adv[i]).collect();
                        let a = Tensor::from_data(TensorData::new(a, [b]), &device);
                        let out = grpo_loss(
                            new_lp,
                            old_lp,
                            ref_lp,
                            a,
                            batch.mask.clone(),
                            f64::from(grpo.clip),
                            f64::from(grpo.kl_coef),
                        );
                        let mut loss = out.loss;
                        let w = out.n_tokens as f64 / total as f64;
                        if grpo.entropy_coef != 0.0 {
                            let h = (token_entropy(logits) * batch.mask)
                                .sum()
                                .div_scalar(out.n_tokens as f64);
                            add_weighted(&mut extra, "entropy", host(h.clone()), w);
                            loss = loss - h.mul_scalar(f64::from(grpo.entropy_coef));
                        }
                        loss_sum += host(loss.clone()) * w;
                        add_weighted(&mut extra, "pg_loss", out.pg_loss.into(), w);
                        add_weighted(&mut extra, "kl", out.kl.into(), w);
                        add_weighted(&mut extra, "clip_fraction", out.clip_fraction.into(), w);
                        tr.backward(loss.mul_scalar(w));
                    }
                    tr.step()
                });
                lr = step_lr;
                norm_sum += norm;
                updates += 1;
            }
        }

        let u = updates as f64;
        for v in extra.values_mut() {
            *v /= u;
        }
        let mean = rewards.iter().map(|&r| f64::from(r)).sum::<f64>() / n as f64;
        let var = rewards
            .iter()
            .map(|&r| (f64::from(r) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        let resp_len = gens.iter().map(|g| g.tokens.len()).sum::<usize>() as f64 / n as f64;
        let tokens: usize = seqs.iter().map(Seq::n_scored).sum();
        extra.insert("reward_mean".into(), mean);
        extra.insert("reward_std".into(), var.sqrt());
        extra.insert(
            "zero_adv_fraction".into(),
            zero_advantage_fraction(&rewards, group).into(),
        );
        extra.insert("response_len".into(), resp_len);
        extra.insert("tokens".into(), tokens as f64);
        extra.insert("updates".into(), u);
        let secs = BTreeMap::from([("sample_secs".to_string(), sample_secs), ("update_secs".to_string(), t1.elapsed().as_secs_f64())]);
        on_step(&StepMetrics {
            step: round,
            loss: loss_sum / u,
            lr,
            grad_norm: norm_sum / u,
            extra,
            secs,
        });
    }
    Ok(tr.finish())
}
