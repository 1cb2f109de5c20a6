//! Training objectives on burn tensors: masked SFT (METHODS §0.4), DPO
//! (§0.3) with RPO's optional NLL on the chosen responses (§2 P5), GRPO's
//! clipped surrogate with k3 KL (§0.2) and IDFT (§4.2).
//!
//! Every function takes the model's logits (or log-probs derived from
//! them) as [`Tensor`]s and works on any device; on an autodiff device
//! (`device.autodiff()`) the returned `loss` carries the graph and
//! `loss.backward()` gives the parameter gradients. Scalar diagnostics are
//! read back to the host as `f32` (they never carry gradients).
//!
//! # Conventions
//!
//! - **Shift.** A causal LM's logits at position `t` predict token `t+1`.
//!   Callers pass `logits` for positions `0..T-1` of a sequence of `T+1`
//!   tokens and `targets` = tokens `1..T`, so `logits[b, t]` scores
//!   `targets[b, t]`.
//! - **Masks** are float `0.0`/`1.0` tensors, `1.0` on the tokens that
//!   count (response tokens; never prompt or padding tokens). Masked
//!   positions may hold any target id (e.g. `-100` or the pad id): ids are
//!   clamped into the vocabulary before the gather, and every masked term is
//!   replaced by zero *before* any `exp`, so garbage there cannot produce
//!   `inf`/`NaN` in the loss or its gradient.
//! - **Means** are token means over the whole mini-batch: `Σ x·m / Σ m`
//!   (verl's aggregation). An all-zero mask gives a loss of `0`.
//!   With gradient accumulation over micro-batches of different token
//!   counts, weight each micro-batch's loss by `n_tokens / total_tokens` to
//!   get the token mean of the whole batch.

use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// Natural log of IDFT's probability floor `1e-10`.
const LN_P_FLOOR: f64 = -23.025_850_929_940_457;

/// Sum of a 0/1 mask read back to the host, as a token count.
fn count(mask: &Tensor<2>) -> usize {
    let n: f32 = mask.clone().sum().into_scalar();
    n.round().max(0.0) as usize
}

/// `Σ x·m / max(Σ m, 1)` over all elements (a `[1]` tensor).
fn masked_mean(x: Tensor<2>, mask: Tensor<2>, n_tokens: usize) -> Tensor<1> {
    (x * mask).sum().div_scalar(n_tokens.max(1) as f64)
}

/// `x` with every position where `mask == 0` set to `0` (before `exp`, so a
/// huge or infinite value at a padding position cannot reach the result
/// or the gradient).
fn zero_masked(x: Tensor<2>, mask: &Tensor<2>) -> Tensor<2> {
    x.mask_fill(mask.clone().equal_elem(0.0), 0.0)
}

fn scalar(x: Tensor<1>) -> f32 {
    x.detach().into_scalar()
}

/// Log-probability of each target token under the model: `log π(y_t | ·)`.
///
/// Numerically stable: `x[y] − max − log Σ exp(x − max)` with the max
/// detached (it cancels in the gradient). Target ids outside `0..V` are
/// clamped into range (see the module docs on masks).
///
/// # Shapes
/// - `logits`: `[B, T, V]` (position `t` predicts `targets[:, t]`)
/// - `targets`: `[B, T]` token ids
/// - returns `[B, T]`
pub fn token_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if crate::model::logprobs::fused_supported(&logits.device()) {
        return crate::model::logprobs::token_logprobs(logits, targets);
    }
    let [b, t, v] = logits.dims();
    let idx = targets.clamp(0, v as i64 - 1).reshape([b, t, 1]);
    let max = logits.clone().detach().max_dim(2);
    let shifted = logits - max;
    let lse = shifted.clone().exp().sum_dim(2).log();
    (shifted.gather(2, idx) - lse).reshape([b, t])
}

/// Entropy `H(p_t) = −Σ_v p_t(v) log p_t(v)` of each position's next-token
/// distribution (for IDFT's φ, or an entropy bonus).
///
/// # Shapes
/// - `logits`: `[B, T, V]`
/// - returns `[B, T]`
pub fn token_entropy(logits: Tensor<3>) -> Tensor<2> {
    let [b, t, _] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits, 2);
    (logp.clone().exp() * logp).sum_dim(2).neg().reshape([b, t])
}

/// Sequence log-probability: the masked sum of token log-probs, as DPO
/// needs (log-probs summed over response tokens only, METHODS §0.3).
///
/// # Shapes
/// - `token_lp`, `mask`: `[B, T]`
/// - returns `[B]`
pub fn sequence_logprobs(token_lp: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let [b, _] = token_lp.dims();
    let lp = zero_masked(token_lp, &mask);
    (lp * mask).sum_dim(1).reshape([b])
}

/// Masked SFT loss (METHODS §0.4): the token mean of `−log π(y_t | x, y_<t)`
/// over the positions where `mask` is 1 (response tokens).
///
/// Returns `(loss, n_tokens)`: `loss` is a `[1]` tensor (graph attached on
/// an autodiff device), `n_tokens = Σ mask`. An all-zero mask gives loss 0.
///
/// # Shapes
/// - `logits`: `[B, T, V]`, logits of positions `0..T-1` of each sequence
/// - `targets`: `[B, T]` Int, the next tokens (sequence tokens `1..T`)
/// - `mask`: `[B, T]` float 0/1, 1 on response tokens
pub fn sft_loss(logits: Tensor<3>, targets: Tensor<2, Int>, mask: Tensor<2>) -> (Tensor<1>, usize) {
    let n = count(&mask);
    let lp = zero_masked(token_logprobs(logits, targets), &mask);
    (masked_mean(lp, mask, n).neg(), n)
}

/// Weighted NLL: `−Σ w_t · log π(y_t | ·)` over all positions (a `[1]`
/// tensor). With `w = mask / Σ mask` it is [`sft_loss`]; with per-part
/// weights `w_p / N_p` it is the per-part token means of
/// [`train_parts`](crate::train::parts::train_parts). Positions of weight 0
/// are zeroed before the product, so garbage there cannot leak in.
///
/// # Shapes
/// - `token_lp`, `weights`: `[B, T]`
pub fn weighted_nll(token_lp: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    let lp = zero_masked(token_lp, &weights);
    (lp * weights).sum().neg()
}

/// What [`dpo_loss`] returns. The rewards are DPO's implicit rewards
/// `β (log π_θ(y|x) − log π_ref(y|x))`, averaged over the batch.
#[derive(Debug, Clone)]
pub struct DpoOut {
    /// `mean −log σ(β[(π_c − ref_c) − (π_r − ref_r)])`, a `[1]` tensor.
    pub loss: Tensor<1>,
    /// Share of pairs with chosen reward strictly above rejected reward
    /// (ties, e.g. at initialisation where π_θ = π_ref, count as wrong; as in TRL).
    pub reward_accuracy: f32,
    /// Mean of `chosen_reward − rejected_reward`.
    pub margin: f32,
    /// Mean `β (log π_θ(y_w|x) − log π_ref(y_w|x))`.
    pub chosen_reward: f32,
    /// Mean `β (log π_θ(y_l|x) − log π_ref(y_l|x))`.
    pub rejected_reward: f32,
}

/// DPO loss (METHODS §0.3) from sequence log-probs (summed over response
/// tokens, see [`sequence_logprobs`]). The reference log-probs are treated
/// as constants (detached).
///
/// # Shapes
/// - `policy_chosen_lp`, `policy_rejected_lp`, `ref_chosen_lp`,
///   `ref_rejected_lp`: `[B]`
pub fn dpo_loss(
    policy_chosen_lp: Tensor<1>,
    policy_rejected_lp: Tensor<1>,
    ref_chosen_lp: Tensor<1>,
    ref_rejected_lp: Tensor<1>,
    beta: f64,
) -> DpoOut {
    let chosen = (policy_chosen_lp - ref_chosen_lp.detach()).mul_scalar(beta);
    let rejected = (policy_rejected_lp - ref_rejected_lp.detach()).mul_scalar(beta);
    let logits = chosen.clone() - rejected.clone();
    let loss = log_sigmoid(logits.clone()).mean().neg();
    let (chosen, rejected, logits) = (chosen.detach(), rejected.detach(), logits.detach());
    DpoOut {
        loss,
        reward_accuracy: scalar(logits.clone().greater_elem(0.0).float().mean()),
        margin: scalar(logits.mean()),
        chosen_reward: scalar(chosen.mean()),
        rejected_reward: scalar(rejected.mean()),
    }
}

/// RPO's NLL term on the chosen responses (METHODS §2 P5: DPO "optionally
/// add NLL on chosen, RPO-style"): each chosen response's negative
/// log-likelihood divided by its own token count, then the mean over the
/// pairs, `mean_i −log π_θ(y_w,i|x_i) / |y_w,i|`. METHODS does not say how
/// to normalise; this is the RPO paper's per-sequence length normalisation
/// (Pang et al. 2024, arXiv 2404.19733), which also makes it a per-pair
/// mean like [`dpo_loss`], so gradient accumulation weights both the same.
///
/// # Shapes
/// - `policy_chosen_lp`: `[B]` summed response log-probs (see [`sequence_logprobs`])
/// - `chosen_tokens`: `[B]` each response's scored token count (at least 1)
pub fn chosen_nll(policy_chosen_lp: Tensor<1>, chosen_tokens: Tensor<1>) -> Tensor<1> {
    (policy_chosen_lp / chosen_tokens.detach()).mean().neg()
}

/// RPO's loss: `dpo_loss + α·chosen_nll` (METHODS §2 P5), and the
/// unweighted NLL for the step log. At `nll_weight == 0` the NLL is not
/// computed and the loss is `dpo_loss` itself, bit for bit (plain DPO).
///
/// # Shapes
/// - `dpo_loss`: `[1]` ([`DpoOut::loss`]); the rest as in [`chosen_nll`]
pub fn rpo_loss(
    dpo_loss: Tensor<1>,
    policy_chosen_lp: Tensor<1>,
    chosen_tokens: Tensor<1>,
    nll_weight: f64,
) -> (Tensor<1>, Option<f32>) {
    if nll_weight == 0.0 {
        return (dpo_loss, None);
    }
    let nll = chosen_nll(policy_chosen_lp, chosen_tokens);
    let logged = scalar(nll.clone());
    (dpo_loss + nll.mul_scalar(nll_weight), Some(logged))
}

/// What [`grpo_loss`] returns.
#[derive(Debug, Clone)]
pub struct GrpoOut {
    /// `pg_loss + kl_coef · kl`, a `[1]` tensor.
    pub loss: Tensor<1>,
    /// Token mean of the clipped surrogate `−min(ρA, clip(ρ, 1−ε, 1+ε)A)`.
    pub pg_loss: f32,
    /// Token mean of the k3 KL estimate to the reference (0 without one).
    pub kl: f32,
    /// Share of tokens where clipping binds (verl's `pg_clipfrac`: the
    /// clipped term is the larger loss).
    pub clip_fraction: f32,
    /// `Σ mask`.
    pub n_tokens: usize,
}

/// k3 ("low-variance") KL estimate per token (METHODS §0.2, verl
/// `low_var_kl`): with `d = log π_ref − log π_θ`,
/// `exp(d) − d − 1`, clamped to `[−10, 10]`. Masked positions give 0.
///
/// # Shapes
/// - `new_lp`, `ref_lp`, `mask`: `[B, T]`; returns `[B, T]`
pub fn k3_kl(new_lp: Tensor<2>, ref_lp: Tensor<2>, mask: &Tensor<2>) -> Tensor<2> {
    let d = zero_masked(ref_lp.detach() - new_lp, mask);
    (d.clone().exp() - d).sub_scalar(1.0).clamp(-10.0, 10.0)
}

/// GRPO / PPO clipped policy loss with a k3 KL penalty (METHODS §0.2).
///
/// Per token, with `ρ = exp(new_lp − old_lp)` and the sequence's advantage
/// `A`: `ℓ = −min(ρA, clip(ρ, 1−ε, 1+ε)A)`; `L = mean_tok(ℓ) + β·mean_tok(k3)`,
/// token means over the whole mini-batch (verl). `old_lp` and `ref_lp` are
/// constants (detached). Pass `ref_lp = None` for no KL term (`kl` is then 0;
/// this saves the reference forward when `kl_coef` is 0). The entropy bonus
/// of §0.2 (`c_ent`) is not included; see [`token_entropy`].
///
/// # Shapes
/// - `new_lp`, `old_lp`, `ref_lp`: `[B, T]` token log-probs of the sampled
///   responses under the current policy, the sampling policy and the reference
/// - `advantages`: `[B]`, one per sequence (see `advantages::group_advantages`)
/// - `mask`: `[B, T]` float 0/1, 1 on response tokens
pub fn grpo_loss(
    new_lp: Tensor<2>,
    old_lp: Tensor<2>,
    ref_lp: Option<Tensor<2>>,
    advantages: Tensor<1>,
    mask: Tensor<2>,
    clip_eps: f64,
    kl_coef: f64,
) -> GrpoOut {
    let [b, t] = new_lp.dims();
    let n = count(&mask);
    let adv = advantages.detach().reshape([b, 1]).expand([b, t]);
    let log_ratio = zero_masked(new_lp.clone() - old_lp.detach(), &mask);
    let ratio = log_ratio.exp();
    let unclipped = (ratio.clone() * adv.clone()).neg();
    let clipped = (ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv).neg();
    let binds = clipped
        .clone()
        .detach()
        .greater(unclipped.clone().detach())
        .float();
    let per_token = unclipped.max_pair(clipped);
    let pg = masked_mean(per_token, mask.clone(), n);
    let clip_fraction = scalar(masked_mean(binds, mask.clone(), n));
    let (loss, kl) = match ref_lp {
        Some(ref_lp) => {
            let kl = masked_mean(k3_kl(new_lp, ref_lp, &mask), mask, n);
            (pg.clone() + kl.clone().mul_scalar(kl_coef), scalar(kl))
        }
        None => (pg.clone(), 0.0),
    };
    GrpoOut {
        loss,
        pg_loss: scalar(pg),
        kl,
        clip_fraction,
        n_tokens: n,
    }
}

/// IDFT hyper-parameters (METHODS §4.2); defaults are the released ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdftParams {
    /// Temperature of `γ_raw = exp(−φ/β)`.
    pub beta: f64,
    /// Lower clamp of `γ_raw`.
    pub gamma_min: f64,
    /// Upper clamp of `γ_raw`.
    pub gamma_max: f64,
    /// Share of training (by step) with `λ = 0` (plain SFT-like `γ = 1`).
    pub warmup_ratio: f64,
    /// Share of training over which `λ` ramps linearly from 0 to 1.
    pub transition_ratio: f64,
}

impl Default for IdftParams {
    fn default() -> Self {
        IdftParams {
            beta: 1.0,
            gamma_min: 0.1,
            gamma_max: 2.0,
            warmup_ratio: 0.0,
            transition_ratio: 0.0,
        }
    }
}

impl IdftParams {
    /// `λ` at training progress `step / total_steps` (the reference code's
    /// schedule: 0 before `warmup_ratio`, a linear ramp over
    /// `transition_ratio`, then 1).
    pub fn lambda(&self, progress: f64) -> f64 {
        if progress < self.warmup_ratio {
            0.0
        } else if progress < self.warmup_ratio + self.transition_ratio {
            (progress - self.warmup_ratio) / self.transition_ratio
        } else {
            1.0
        }
    }
}

/// IDFT's per-token exponent `γ_t = 1 + λ (clamp(exp(−φ_t/β), γ_min, γ_max) − 1)`
/// with the centered log-likelihood `φ_t = log p_t(y_t) + H(p_t)` (METHODS
/// §4.1–4.2). Computed on detached logits: γ never carries a gradient.
///
/// # Shapes
/// - `logits`: `[B, T, V]`; `targets`: `[B, T]`; returns `[B, T]`
pub fn idft_gamma(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    lambda: f64,
    params: &IdftParams,
) -> Tensor<2> {
    phi_and_gamma(logits, targets, lambda, params).1
}

/// φ and γ of [`idft_gamma`], both detached.
fn phi_and_gamma(logits: Tensor<3>, targets: Tensor<2, Int>, lambda: f64, params: &IdftParams) -> (Tensor<2>, Tensor<2>) {
    let logits = logits.detach();
    let phi = token_logprobs(logits.clone(), targets) + token_entropy(logits);
    let raw = phi.clone().div_scalar(-params.beta).exp().clamp(params.gamma_min, params.gamma_max);
    (phi, raw.sub_scalar(1.0).mul_scalar(lambda).add_scalar(1.0))
}

/// IDFT's token weights `p_t^{γ_t}` (`p_t` floored at `1e-10`, `γ_t` from
/// [`idft_gamma`]), detached: the `sg(p^γ)` of METHODS §4.2, for logging or
/// for a caller that builds its own loss.
///
/// # Shapes
/// - `logits`: `[B, T, V]`; `targets`: `[B, T]`; returns `[B, T]`
pub fn idft_weights(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    lambda: f64,
    params: &IdftParams,
) -> Tensor<2> {
    let logits = logits.detach();
    let gamma = idft_gamma(logits.clone(), targets.clone(), lambda, params);
    (token_logprobs(logits, targets).clamp_min(LN_P_FLOOR) * gamma).exp()
}

/// IDFT loss (METHODS §4.2): the masked token mean of `−p_t^{γ_t} log p_t`,
/// `p_t = π(y_t|·)` floored at `1e-10`, `γ_t` from [`idft_gamma`] (no gradient).
///
/// **Gradient through the weight.** METHODS §4.2 writes the weight as
/// `sg(p^γ)` (DFT-style, gradient `−p^γ ∇log p`): `detach_weight = true`,
/// the `train` stage's default. With `false` the gradient also flows
/// through `p^γ` (per token `−p^γ (1 + γ log p) ∇log p`), as
/// `-(p ** γ.detach()) * log p` in torch would: that pushes every token
/// with `p < e^{−1/γ}` further down.
///
/// Returns `(loss, n_tokens)` like [`sft_loss`]. With `λ = 0` and
/// `detach_weight = true` the weight is `p` (DFT); the loss equals SFT only in
/// the limit `γ → 0` (`γ_min = 0`, `φ ≫ 0`).
///
/// # Shapes
/// - `logits`: `[B, T, V]`; `targets`: `[B, T]` Int; `mask`: `[B, T]` float 0/1
pub fn idft_loss(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
    lambda: f64,
    params: &IdftParams,
    detach_weight: bool,
) -> (Tensor<1>, usize) {
    let out = idft_forward(logits, targets, mask, lambda, params, detach_weight);
    (out.loss, out.n_tokens)
}

/// What [`idft_forward`] returns: the loss and, for the step logs, the
/// per-token φ and γ it used (detached).
#[derive(Debug, Clone)]
pub struct IdftOut {
    /// As [`idft_loss`]'s.
    pub loss: Tensor<1>,
    /// `Σ mask`.
    pub n_tokens: usize,
    /// `φ_t = log p_t(y_t) + H(p_t)`, `[B, T]`.
    pub phi: Tensor<2>,
    /// `γ_t`, `[B, T]`.
    pub gamma: Tensor<2>,
}

/// [`idft_loss`], also returning φ and γ (one entropy pass for both).
pub fn idft_forward(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
    lambda: f64,
    params: &IdftParams,
    detach_weight: bool,
) -> IdftOut {
    let n = count(&mask);
    let (phi, gamma) = phi_and_gamma(logits.clone(), targets.clone(), lambda, params);
    // log of p clamped at 1e-10 (the clamp also zeroes the gradient below it, as torch.clamp does)
    let log_p = zero_masked(token_logprobs(logits, targets).clamp_min(LN_P_FLOOR), &mask);
    let log_p_w = if detach_weight {
        log_p.clone().detach()
    } else {
        log_p.clone()
    };
    let weight = (log_p_w * zero_masked(gamma.clone(), &mask)).exp(); // p^γ
    IdftOut { loss: masked_mean(weight * log_p, mask, n).neg(), n_tokens: n, phi, gamma }
}

#[cfg(test)]
#[path = "losses_tests.rs"]
mod tests;

/// A process reward model's loss (Math-Shepherd, Wang et al. 2024): the
/// model's logits at a step's last token, read as a two-way classifier
/// over a `good` and a `bad` token, `z = logit[good] − logit[bad]`,
/// `score = σ(z)`, and binary cross-entropy against the step's label
/// `y ∈ [0, 1]` (a hard rule label, or an MC share of verified rollouts):
/// `−(y·log σ(z) + (1 − y)·log σ(−z))`, the token mean over the marked
/// positions. Only those two logits get a gradient at those positions; the
/// rest of the vocabulary is left alone.
///
/// # Shapes
/// - `logits`: `[B, T, V]`; `labels`, `mask`: `[B, T]` (mask 1 at the
///   marked positions)
pub fn prm_loss(logits: Tensor<3>, good: u32, bad: u32, labels: Tensor<2>, mask: Tensor<2>) -> PrmOut {
    let [b, t, _] = logits.dims();
    let device = logits.device();
    let column = |id: u32| {
        let idx = Tensor::<3, Int>::full([b, t, 1], id as i64, &device);
        logits.clone().gather(2, idx).reshape([b, t])
    };
    let z = column(good) - column(bad);
    let n = count(&mask);
    let z = zero_masked(z, &mask);
    let bce = (labels.clone() * log_sigmoid(z.clone()) + labels.neg().add_scalar(1.0) * log_sigmoid(z.clone().neg())).neg();
    PrmOut { loss: masked_mean(bce, mask, n), n_marks: n, gap: z.detach() }
}

/// What [`prm_loss`] returns.
#[derive(Debug, Clone)]
pub struct PrmOut {
    /// The mean binary cross-entropy over the marks, a `[1]` tensor.
    pub loss: Tensor<1>,
    /// `Σ mask`.
    pub n_marks: usize,
    /// `z = logit[good] − logit[bad]` at every position (`[B, T]`, 0 where
    /// masked; detached): `σ(z)` is the score, for the caller's metrics.
    pub gap: Tensor<2>,
}

/// The score a process reward model gives each marked position: `σ(z)`
/// with `z = logit[good] − logit[bad]` (see [`prm_loss`]), from one
/// position's logits row.
pub fn prm_score(logits_row: &[f32], good: u32, bad: u32) -> f32 {
    let z = logits_row[good as usize] - logits_row[bad as usize];
    1.0 / (1.0 + (-z).exp())
}
