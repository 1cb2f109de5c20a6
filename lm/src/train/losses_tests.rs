//! Hand-computed checks of the training objectives, plus finite-difference
//! gradient checks on the autodiff device.

use super::*;
use burn::tensor::{Device, TensorData};

const LN2: f32 = std::f32::consts::LN_2;

fn device() -> Device {
    crate::DeviceKind::Cpu.device().expect("cpu backend built")
}

fn t1(v: &[f32], d: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), d)
}

fn t2(v: &[f32], shape: [usize; 2], d: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), d)
}

fn t3(v: &[f32], shape: [usize; 3], d: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), d)
}

fn ids(v: &[i64], shape: [usize; 2], d: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), d)
}

fn vec_of<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

fn one(t: Tensor<1>) -> f32 {
    t.into_scalar()
}

#[track_caller]
fn close(got: f32, want: f32, tol: f32) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "got {got}, want {want}"
    );
}

#[track_caller]
fn all_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "at {i}: got {g}, want {w}"
        );
    }
}

/// The 2×3×4 SFT example. Rows of logits and their softmax:
/// - `U = [0,0,0,0]` → uniform, every log-prob `−ln 4`
/// - `P = [0,0,ln2,ln4]` → probs `[1/8, 1/8, 1/4, 1/2]`
/// - `Q = [ln4,0,0,0]` → probs `[4/7, 1/7, 1/7, 1/7]`
/// - `H = [1000;4]` → uniform (only finite with a max-shifted log-softmax)
/// - `M = [100,0,0,0]` (masked)
///
/// batch 0: (U, y=1) (P, y=3) (Q, y=0), mask 1 1 1
/// batch 1: (P, y=0) (H, y=2) (M, y=-100), mask 1 1 0
fn sft_example(d: &Device) -> (Tensor<3>, Tensor<2, Int>, Tensor<2>) {
    let (l2, l4) = (LN2, 2.0 * LN2);
    let logits = [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, l2, l4],
        [l4, 0.0, 0.0, 0.0],
        [0.0, 0.0, l2, l4],
        [1000.0; 4],
        [100.0, 0.0, 0.0, 0.0],
    ]
    .concat();
    (
        t3(&logits, [2, 3, 4], d),
        ids(&[1, 3, 0, 0, 2, -100], [2, 3], d),
        t2(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [2, 3], d),
    )
}

#[test]
fn token_logprobs_by_hand() {
    let d = device();
    let (logits, targets, _) = sft_example(&d);
    let lp = vec_of(token_logprobs(logits, targets));
    // −ln4, ln(1/2), ln(4/7), ln(1/8), −ln4, and the masked one: y=-100 clamps to
    // id 0 → log softmax([100,0,0,0])[0] = −ln(1 + 3e−100) ≈ 0
    let want = [
        -2.0 * LN2,
        -LN2,
        (4.0f32 / 7.0).ln(),
        -3.0 * LN2,
        -2.0 * LN2,
        0.0,
    ];
    all_close(&lp, &want, 1e-5);
}

#[test]
fn sft_loss_masked_mean_by_hand() {
    let d = device();
    let (logits, targets, mask) = sft_example(&d);
    let (loss, n) = sft_loss(logits, targets, mask);
    // NLLs of the 5 unmasked tokens: ln4 + ln2 + ln(7/4) + ln8 + ln4
    //   = 2ln2 + ln2 + (ln7 − 2ln2) + 3ln2 + 2ln2 = 6 ln2 + ln7 = 6.1047932
    // mean over 5 tokens = 1.2209586
    assert_eq!(n, 5);
    close(one(loss), 1.220_958_6, 1e-5);
}

#[test]
fn sft_loss_empty_mask_is_zero() {
    let d = device();
    let (logits, targets, _) = sft_example(&d);
    let (loss, n) = sft_loss(logits, targets, Tensor::zeros([2, 3], &d));
    assert_eq!(n, 0);
    assert_eq!(one(loss), 0.0);
}

#[test]
fn entropy_and_sequence_logprobs() {
    let d = device();
    let (logits, targets, mask) = sft_example(&d);
    let h = vec_of(token_entropy(logits.clone()));
    // H(U) = ln4; H(P) = 2·(1/8)·3ln2 + (1/4)·2ln2 + (1/2)·ln2 = 1.75 ln2
    close(h[0], 2.0 * LN2, 1e-5);
    close(h[1], 1.75 * LN2, 1e-5);
    close(h[4], 2.0 * LN2, 1e-5);
    let seq = vec_of(sequence_logprobs(token_logprobs(logits, targets), mask));
    // batch 0: −ln4 − ln2 + ln(4/7) = −ln2 − ln7 ; batch 1: −3ln2 − 2ln2 = −5 ln2
    all_close(&seq, &[-LN2 - 7f32.ln(), -5.0 * LN2], 1e-5);
}

#[test]
fn dpo_loss_by_hand() {
    let d = device();
    // β = 0.1
    // chosen rewards   = 0.1·([−10, −5] − [−11, −5]) = [0.1, 0.0]
    // rejected rewards = 0.1·([−12, −4] − [−11, −5]) = [−0.1, 0.1]
    // logits = [0.2, −0.1]; loss = mean(softplus(−0.2), softplus(0.1))
    //        = mean(0.5981389, 0.7443967) = 0.6712678
    let out = dpo_loss(
        t1(&[-10.0, -5.0], &d),
        t1(&[-12.0, -4.0], &d),
        t1(&[-11.0, -5.0], &d),
        t1(&[-11.0, -5.0], &d),
        0.1,
    );
    close(one(out.loss), 0.671_267_8, 1e-5);
    close(out.reward_accuracy, 0.5, 1e-6);
    close(out.margin, 0.05, 1e-5);
    close(out.chosen_reward, 0.05, 1e-5);
    close(out.rejected_reward, 0.0, 1e-5);
}

#[test]
fn dpo_loss_at_init_is_ln2_with_zero_accuracy() {
    let d = device();
    let lp = t1(&[-3.0, -7.0, -1.5], &d);
    // policy = reference ⇒ all rewards 0 ⇒ loss = −log σ(0) = ln 2, ties are not "accurate"
    let out = dpo_loss(lp.clone(), lp.clone(), lp.clone(), lp, 0.5);
    close(one(out.loss), LN2, 1e-6);
    assert_eq!(out.reward_accuracy, 0.0);
}

#[test]
fn dpo_gradient_on_autodiff() {
    let d = device().autodiff();
    let pc = t1(&[-10.0, -5.0], &d).require_grad();
    let pr = t1(&[-12.0, -4.0], &d).require_grad();
    let refs = t1(&[-11.0, -5.0], &device());
    let out = dpo_loss(pc.clone(), pr.clone(), refs.clone(), refs, 0.1);
    let grads = out.loss.backward();
    // ∂L/∂pc_i = −β σ(−z_i) / B with z = [0.2, −0.1]; ∂L/∂pr_i = −∂L/∂pc_i
    let s = |z: f32| 1.0 / (1.0 + z.exp());
    let want = [-0.1 * s(0.2) / 2.0, -0.1 * s(-0.1) / 2.0];
    all_close(&vec_of(pc.grad(&grads).unwrap()), &want, 1e-5);
    all_close(
        &vec_of(pr.grad(&grads).unwrap()),
        &[-want[0], -want[1]],
        1e-5,
    );
}

#[test]
fn rpo_nll_by_hand() {
    let d = device();
    // Summed chosen log-probs [−6, −1] over [3, 2] tokens: per-token NLLs
    // [2, 0.5], mean over pairs 1.25.
    close(one(chosen_nll(t1(&[-6.0, -1.0], &d), t1(&[3.0, 2.0], &d))), 1.25, 1e-6);
    // dpo_loss_by_hand's pairs (DPO loss 0.6712678), chosen over [4, 2]
    // tokens: NLLs [2.5, 2.5], mean 2.5; α = 0.5 ⇒ 0.6712678 + 1.25.
    let (pc, n) = (t1(&[-10.0, -5.0], &d), t1(&[4.0, 2.0], &d));
    let refs = t1(&[-11.0, -5.0], &d);
    let dpo = dpo_loss(pc.clone(), t1(&[-12.0, -4.0], &d), refs.clone(), refs, 0.1);
    let (loss, nll) = rpo_loss(dpo.loss.clone(), pc.clone(), n.clone(), 0.5);
    close(one(loss), 1.921_267_8, 1e-5);
    close(nll.unwrap(), 2.5, 1e-6);
    // Weight 0 is plain DPO, bit for bit, and logs no NLL.
    let (plain, none) = rpo_loss(dpo.loss.clone(), pc, n, 0.0);
    assert!(none.is_none());
    assert_eq!(one(plain).to_bits(), one(dpo.loss).to_bits());
}

#[test]
fn rpo_gradient_on_autodiff() {
    let d = device().autodiff();
    let pc = t1(&[-10.0, -5.0], &d).require_grad();
    let pr = t1(&[-12.0, -4.0], &d).require_grad();
    let refs = t1(&[-11.0, -5.0], &device());
    let out = dpo_loss(pc.clone(), pr.clone(), refs.clone(), refs, 0.1);
    let (loss, _) = rpo_loss(out.loss, pc.clone(), t1(&[4.0, 2.0], &d), 1.0);
    let grads = loss.backward();
    // DPO's part as in dpo_gradient_on_autodiff, plus α·∂NLL/∂pc_i =
    // −1/(n_i·B) = [−1/8, −1/4]; the rejected side has DPO's part only.
    let s = |z: f32| 1.0 / (1.0 + z.exp());
    let dpo = [-0.1 * s(0.2) / 2.0, -0.1 * s(-0.1) / 2.0];
    all_close(&vec_of(pc.grad(&grads).unwrap()), &[dpo[0] - 0.125, dpo[1] - 0.25], 1e-5);
    all_close(&vec_of(pr.grad(&grads).unwrap()), &[-dpo[0], -dpo[1]], 1e-5);
}

// GRPO example, ε = 0.2, old log-probs 0 so ρ = exp(new_lp):
//   seq 0, A = +1: ρ = 1.5 → −min(1.5, 1.2) = −1.2 (clip binds, upper side)
//                  ρ = 0.5 → −min(0.5, 0.8) = −0.5
//   seq 1, A = −1: ρ = 0.5 → −min(−0.5, −0.8) = +0.8 (clip binds, lower side)
//                  ρ = 1.5 → −min(−1.5, −1.2) = +1.5
//   seq 2, A = +2: ρ = 1.0 → −2.0; second token masked, with old_lp = −1e30
//                  there (exp would overflow if it were not zeroed first)
// pg = (−1.2 − 0.5 + 0.8 + 1.5 − 2.0) / 5 = −0.28, clip fraction 2/5.
fn grpo_example(d: &Device) -> (Tensor<2>, Tensor<2>, Tensor<1>, Tensor<2>) {
    let (up, down) = (1.5f32.ln(), 0.5f32.ln());
    (
        t2(&[up, down, down, up, 0.0, 0.0], [3, 2], d),
        t2(&[0.0, 0.0, 0.0, 0.0, 0.0, -1e30], [3, 2], d),
        t1(&[1.0, -1.0, 2.0], d),
        t2(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [3, 2], d),
    )
}

#[test]
fn grpo_clipped_surrogate_by_hand() {
    let d = device();
    let (new_lp, old_lp, adv, mask) = grpo_example(&d);
    let out = grpo_loss(new_lp, old_lp, None, adv, mask, 0.2, 0.5);
    close(one(out.loss), -0.28, 1e-5);
    close(out.pg_loss, -0.28, 1e-5);
    close(out.clip_fraction, 0.4, 1e-6);
    assert_eq!(out.kl, 0.0);
    assert_eq!(out.n_tokens, 5);
}

#[test]
fn grpo_gradient_is_zero_where_clipping_binds() {
    let d = device().autodiff();
    let (new_lp, old_lp, adv, mask) = grpo_example(&d);
    let new_lp = new_lp.require_grad();
    let out = grpo_loss(new_lp.clone(), old_lp, None, adv, mask, 0.2, 0.0);
    let g = vec_of(new_lp.grad(&out.loss.backward()).unwrap());
    // unclipped tokens: ∂(−ρA)/∂new_lp / 5 = −ρA/5; clipped tokens and the masked one: 0
    //   seq0: [0, −0.5/5]; seq1: [0, +1.5/5]; seq2: [−2/5, 0]
    all_close(&g, &[0.0, -0.1, 0.0, 0.3, -0.4, 0.0], 1e-5);
    assert!(g.iter().all(|x| x.is_finite()));
}

#[test]
fn k3_kl_by_hand() {
    let d = device();
    let mask = t2(&[1.0, 1.0, 1.0, 0.0], [2, 2], &d);
    let lp = t2(&[-1.0, -2.0, -0.5, -3.0], [2, 2], &d);
    // equal log-probs ⇒ d = 0 ⇒ e⁰ − 0 − 1 = 0
    assert!(vec_of(k3_kl(lp.clone(), lp.clone(), &mask))
        .iter()
        .all(|&x| x == 0.0));
    // d = ref − new: +1 → e − 2 = 0.7182818; −1 → e⁻¹ + 1 − 1 = 0.3678794;
    // +5 → e⁵ − 6 = 142.4 → clamped to 10; masked (d = 1e30) → 0
    let new = t2(&[0.0, 0.0, 0.0, 0.0], [2, 2], &d);
    let reff = t2(&[1.0, -1.0, 5.0, 1e30], [2, 2], &d);
    let k = vec_of(k3_kl(new, reff, &mask));
    all_close(&k, &[0.718_281_8, 0.367_879_4, 10.0, 0.0], 1e-5);
}

#[test]
fn grpo_total_loss_adds_kl() {
    let d = device();
    let (new_lp, old_lp, adv, mask) = grpo_example(&d);
    // ref = new + 1 on every token ⇒ k3 = e − 2 = 0.7182818 per token ⇒ kl = 0.7182818
    // loss = −0.28 + 0.5 · 0.7182818 = 0.0791409
    let ref_lp = new_lp.clone().add_scalar(1.0);
    let out = grpo_loss(new_lp, old_lp, Some(ref_lp), adv, mask, 0.2, 0.5);
    close(out.kl, 0.718_281_8, 1e-5);
    close(one(out.loss), 0.079_140_9, 1e-4);
}

#[test]
fn idft_by_hand() {
    let d = device();
    let (l2, l4) = (LN2, 2.0 * LN2);
    // U = uniform over 4: p = 1/4, H = ln4 ⇒ φ = 0 ⇒ γ = 1 ⇒ ℓ = ¼·ln4 = 0.3465736
    // P = [1/8,1/8,1/4,1/2], y = 3: p = ½, H = 1.75 ln2 ⇒ φ = 0.75 ln2
    //     ⇒ γ_raw = 2^−0.75 = 0.5946036 ⇒ ℓ = 0.5^0.5946036 · ln2 = 0.4590204
    // P, y = 0: p = ⅛ ⇒ φ = −1.25 ln2 ⇒ γ_raw = 2^1.25 = 2.38 → clamped to 2
    //     ⇒ ℓ = (1/64)·3ln2 = 0.0324913
    let logits = t3(
        &[[0.0; 4], [0.0, 0.0, l2, l4], [0.0, 0.0, l2, l4]].concat(),
        [1, 3, 4],
        &d,
    );
    let targets = ids(&[2, 3, 0], [1, 3], &d);
    let mask = t2(&[1.0, 1.0, 1.0], [1, 3], &d);
    let p = IdftParams::default();
    let gamma = vec_of(idft_gamma(logits.clone(), targets.clone(), 1.0, &p));
    all_close(&gamma, &[1.0, 0.594_603_6, 2.0], 1e-5);
    let (loss, n) = idft_loss(
        logits.clone(),
        targets.clone(),
        mask.clone(),
        1.0,
        &p,
        false,
    );
    assert_eq!(n, 3);
    close(
        one(loss),
        (0.346_573_6 + 0.459_020_4 + 0.032_491_3) / 3.0,
        1e-5,
    );
    // λ = 0.5 ⇒ γ = 1 + 0.5(γ_raw − 1): for the P,y=3 token γ = 0.7973018, ℓ = 0.3988538
    let w = vec_of(idft_weights(logits, targets, 0.5, &p));
    close(w[1], 0.5f32.powf(0.797_301_8), 1e-5);
    close(w[1] * LN2, 0.398_853_8, 1e-5);
}

#[test]
fn idft_lambda_schedule() {
    let p = IdftParams {
        warmup_ratio: 0.2,
        transition_ratio: 0.1,
        ..IdftParams::default()
    };
    assert_eq!(p.lambda(0.0), 0.0);
    assert_eq!(p.lambda(0.19), 0.0);
    assert!((p.lambda(0.25) - 0.5).abs() < 1e-12);
    assert_eq!(p.lambda(0.31), 1.0);
    assert_eq!(IdftParams::default().lambda(0.0), 1.0);
}

/// Deterministic "random" logits in roughly [−3, 3].
fn fixture(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 2.399_963).sin() * 3.0).collect()
}

/// Central differences of `f` w.r.t. each element of `x` (f32, step `h`).
fn numeric_grad(x: &[f32], h: f32, f: impl Fn(&[f32]) -> f32) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            let mut p = x.to_vec();
            p[i] += h;
            let up = f(&p);
            p[i] -= 2.0 * h;
            let down = f(&p);
            (up - down) / (2.0 * h)
        })
        .collect()
}

#[track_caller]
fn grads_agree(analytic: &[f32], numeric: &[f32]) {
    let scale = numeric.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-2 * n.abs() + 2e-3 * scale,
            "element {i}: autodiff {a}, finite difference {n}"
        );
    }
}

const GC_SHAPE: [usize; 3] = [2, 3, 5];
const GC_TARGETS: [i64; 6] = [4, 0, 2, 1, 3, -100];
const GC_MASK: [f32; 6] = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0];

#[test]
fn sft_loss_gradient_matches_finite_differences() {
    let x = fixture(30);
    let plain = device();
    let f = |v: &[f32]| {
        let (loss, _) = sft_loss(
            t3(v, GC_SHAPE, &plain),
            ids(&GC_TARGETS, [2, 3], &plain),
            t2(&GC_MASK, [2, 3], &plain),
        );
        one(loss)
    };
    let numeric = numeric_grad(&x, 1e-2, f);

    let ad = plain.autodiff();
    let logits = t3(&x, GC_SHAPE, &ad).require_grad();
    let (loss, n) = sft_loss(
        logits.clone(),
        ids(&GC_TARGETS, [2, 3], &ad),
        t2(&GC_MASK, [2, 3], &ad),
    );
    assert_eq!(n, 4);
    let analytic = vec_of(logits.grad(&loss.backward()).unwrap());
    grads_agree(&analytic, &numeric);
    // masked positions get exactly zero gradient
    assert!(analytic[10..15]
        .iter()
        .chain(&analytic[25..30])
        .all(|&g| g == 0.0));
    // and the closed form (softmax − onehot) / n at the first position
    let row = &x[0..5];
    let z: f32 = row.iter().map(|v| v.exp()).sum();
    let want: Vec<f32> = (0..5)
        .map(|k| (row[k].exp() / z - f32::from(k == 4)) / 4.0)
        .collect();
    all_close(&analytic[0..5], &want, 1e-5);
}

#[test]
fn idft_gradient_matches_finite_differences_at_lambda_zero() {
    // λ = 0 ⇒ γ ≡ 1 is constant, so the loss −p log p is a plain function of the
    // logits and finite differences see exactly what autodiff should (reference-code form).
    let x = fixture(30);
    let plain = device();
    let p = IdftParams::default();
    let f = |v: &[f32]| {
        let (loss, _) = idft_loss(
            t3(v, GC_SHAPE, &plain),
            ids(&GC_TARGETS, [2, 3], &plain),
            t2(&GC_MASK, [2, 3], &plain),
            0.0,
            &p,
            false,
        );
        one(loss)
    };
    let numeric = numeric_grad(&x, 1e-2, f);
    let ad = plain.autodiff();
    let logits = t3(&x, GC_SHAPE, &ad).require_grad();
    let (loss, _) = idft_loss(
        logits.clone(),
        ids(&GC_TARGETS, [2, 3], &ad),
        t2(&GC_MASK, [2, 3], &ad),
        0.0,
        &p,
        false,
    );
    grads_agree(&vec_of(logits.grad(&loss.backward()).unwrap()), &numeric);
}

#[test]
fn idft_detached_weight_gradient_is_weighted_sft() {
    // detach_weight: ∂ℓ/∂logits = w · (softmax − onehot) / n with w = p^γ constant.
    let x = fixture(30);
    let ad = device().autodiff();
    let p = IdftParams::default();
    let logits = t3(&x, GC_SHAPE, &ad).require_grad();
    let targets = ids(&GC_TARGETS, [2, 3], &ad);
    let w = vec_of(idft_weights(logits.clone(), targets.clone(), 1.0, &p));
    let (loss, _) = idft_loss(
        logits.clone(),
        targets,
        t2(&GC_MASK, [2, 3], &ad),
        1.0,
        &p,
        true,
    );
    let g = vec_of(logits.grad(&loss.backward()).unwrap());
    let row = &x[0..5];
    let z: f32 = row.iter().map(|v| v.exp()).sum();
    let want: Vec<f32> = (0..5)
        .map(|k| w[0] * (row[k].exp() / z - f32::from(k == 4)) / 4.0)
        .collect();
    all_close(&g[0..5], &want, 1e-5);
}

#[test]
fn idft_gradient_through_a_tiny_model_matches_finite_differences() {
    // The whole path, model included: the IDFT loss of a micro Llama as a
    // function of its final norm's weights. γ is clamped to one value
    // (1.5) and the weight is not detached, so the loss −p^γ log p is a
    // plain function of the weights and finite differences see exactly what
    // autodiff should.
    use burn::module::{Module, Param};
    let plain = device();
    let model = crate::LlamaConfig::preset("micro", 24).unwrap().init_seeded(3, &plain);
    let p = IdftParams { gamma_min: 1.5, gamma_max: 1.5, ..IdftParams::default() };
    // Sequences 1 5 9 2 7 3 and 4 4 8 1 0 6: inputs all but the last token, targets all but the first.
    let inputs = |d: &Device| ids(&[1, 5, 9, 2, 7, 4, 4, 8, 1, 0], [2, 5], d);
    let targets = |d: &Device| ids(&[5, 9, 2, 7, 3, 4, 8, 1, 0, 6], [2, 5], d);
    let mask = |d: &Device| t2(&[0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [2, 5], d);
    let loss_of = |m: &crate::Llama, d: &Device| {
        let logits = m.forward(inputs(d), &m.causal_layout(2, 5), None);
        idft_loss(logits, targets(d), mask(d), 1.0, &p, false).0
    };
    let w0 = vec_of(model.norm.weight.val());
    let f = |w: &[f32]| {
        let mut m = model.clone();
        m.norm.weight = Param::from_tensor(t1(w, &plain));
        one(loss_of(&m, &plain))
    };
    let numeric = numeric_grad(&w0, 1e-2, f);
    let trained = model.clone().train();
    let ad = trained.device();
    let grads = loss_of(&trained, &ad).backward();
    let analytic = vec_of(trained.norm.weight.val().grad(&grads).unwrap());
    assert!(numeric.iter().any(|g| g.abs() > 1e-4), "the check must see a gradient: {numeric:?}");
    grads_agree(&analytic, &numeric);
}

// PRM example: B = 1, T = 3, V = 3, good = 0, bad = 2.
//   position 0: logits [2, 9, 0]  z = 2 − 0 = 2,   label 1   → −log σ(2)
//   position 1: masked (a huge logit there must not matter)
//   position 2: logits [0, 0, 1]  z = −1,         label 0.25 → −(0.25 log σ(−1) + 0.75 log σ(1))
fn prm_example(d: &Device) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
    let logits = t3(&[2.0, 9.0, 0.0, 1e30, 0.0, -1e30, 0.0, 0.0, 1.0], [1, 3, 3], d);
    (logits, t2(&[1.0, 0.0, 0.25], [1, 3], d), t2(&[1.0, 0.0, 1.0], [1, 3], d))
}

#[test]
fn prm_loss_by_hand() {
    let d = device();
    let ls = |z: f32| -(1.0 + (-z).exp()).ln();
    let want = (-ls(2.0) - (0.25 * ls(-1.0) + 0.75 * ls(1.0))) / 2.0;
    let (logits, labels, mask) = prm_example(&d);
    let out = prm_loss(logits, 0, 2, labels, mask);
    assert_eq!(out.n_marks, 2);
    close(one(out.loss), want, 1e-6);
    // The score is σ(z) of the row, the other logits ignored.
    close(prm_score(&[2.0, 9.0, 0.0], 0, 2), 1.0 / (1.0 + (-2.0f32).exp()), 1e-7);
    close(prm_score(&[0.0, 0.0, 1.0], 0, 2), 1.0 / (1.0 + 1.0f32.exp()), 1e-7);
}

#[test]
fn prm_gradient_reaches_only_the_two_logits_at_the_marks() {
    let d = device().autodiff();
    let (logits, labels, mask) = prm_example(&device());
    let logits = Tensor::<3>::from_data(logits.into_data(), &d).require_grad();
    let labels = Tensor::<2>::from_data(labels.into_data(), &d);
    let mask = Tensor::<2>::from_data(mask.into_data(), &d);
    let loss = prm_loss(logits.clone(), 0, 2, labels, mask).loss;
    let g = vec_of(logits.grad(&loss.backward()).unwrap());
    // ∂/∂z of BCE is σ(z) − y, over the 2 marks; +∂z on good, −∂z on bad.
    let s = |z: f32| 1.0 / (1.0 + (-z).exp());
    let (g0, g2) = ((s(2.0) - 1.0) / 2.0, (s(-1.0) - 0.25) / 2.0);
    all_close(&g, &[g0, 0.0, -g0, 0.0, 0.0, 0.0, g2, 0.0, -g2], 1e-6);
}
