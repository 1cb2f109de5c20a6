//! Hand-computed checks of the per-part loss (CasCoD, Std-CoT, the weighted
//! control) and its training loop.

use burn::tensor::{Tensor, TensorData};

use super::*;
use crate::config::LlamaConfig;
use crate::rng::Rng;
use crate::test_util::device;
use crate::train::{train_sft, SftExample};

const VOCAB: usize = 24;

fn cascod(alpha: f64) -> Vec<Part> {
    vec![Part::new("rationale", 1.0 - alpha), Part::new("answer", alpha)]
}

/// Token log-probs of a CasCoD pair, one row per step of the question:
/// rationale `[-1, -2, -3]` (L_r = 2) and answer `[-4, -8, masked]`
/// (L_a = 6). The masked slot holds −∞, which must not leak into the loss.
fn pair_logprobs() -> Tensor<2> {
    let lp = vec![-1.0, -2.0, -3.0, -4.0, -8.0, f32::NEG_INFINITY];
    Tensor::from_data(TensorData::new(lp, [2, 3]), &device())
}

fn weights(rows: &[Vec<f64>]) -> Tensor<2> {
    let w: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(w, [rows.len(), rows[0].len()]), &device())
}

#[test]
fn cascod_loss_is_the_weighted_sum_of_the_two_token_means() {
    for (alpha, want) in [(0.0, 2.0), (0.5, 4.0), (1.0, 6.0), (0.1, 0.9 * 2.0 + 0.1 * 6.0)] {
        let w = part_token_weights(&cascod(alpha), &[3, 2]);
        let (wr, wa) = (w[0], w[1]);
        let loss = weighted_nll(pair_logprobs(), weights(&[vec![wr, wr, wr], vec![wa, wa, 0.0]]));
        let got: f32 = loss.into_scalar();
        assert!((f64::from(got) - want).abs() < 1e-5, "α = {alpha}: {got} vs {want}");
        assert!((parts_loss(&cascod(alpha), &[6.0, 12.0], &[3, 2]) - want).abs() < 1e-12);
    }
}

#[test]
fn one_part_is_the_token_mean() {
    // Std-CoT: every token weight 1/N, so the loss is the plain token mean.
    let w = part_token_weights(&[Part::new("response", 1.0)], &[5])[0];
    let loss: f32 = weighted_nll(pair_logprobs(), weights(&[vec![w; 3], vec![w, w, 0.0]])).into_scalar();
    assert!((loss - 18.0 / 5.0).abs() < 1e-5, "{loss}");
    // An empty part gets no weight (it is not moved to the other part).
    assert_eq!(part_token_weights(&cascod(0.3), &[0, 4]), vec![0.0, 0.3 / 4.0]);
}

/// Per-response-token weights of an example's sequences, as the loop lays them out.
fn example_weights(e: &PartsExample, parts: &[Part]) -> Vec<Vec<f64>> {
    let seqs: Vec<Scored> = e.seqs.iter().map(|s| scored(s, 64)).collect();
    let mut counts = vec![0; parts.len()];
    for s in &seqs {
        for (_, p) in s.positions() {
            counts[p] += 1;
        }
    }
    let w = part_token_weights(parts, &counts);
    seqs.iter().map(|s| s.positions().map(|(_, p)| w[p]).collect()).collect()
}

#[test]
fn weighted_control_gives_each_token_cascods_weight() {
    // One question: rationale r = [5, 6, 7], answer a = [9, 1]. CasCoD
    // trains q -> r and (q, r) -> a; the control trains q -> r ++ a in one
    // sequence with the same parts, so every target token gets the same
    // weight (1 − α)/|r| or α/|a|; only the context differs.
    let (q, r, a) = (vec![2, 3], vec![5, 6, 7], vec![9, 1]);
    let cas = PartsExample {
        seqs: vec![
            PartSeq::uniform(q.clone(), r.clone(), 0),
            PartSeq::uniform([q.clone(), r.clone()].concat(), a.clone(), 1),
        ],
    };
    let control = PartsExample {
        seqs: vec![PartSeq { prompt: q, response: [r, a].concat(), parts: vec![0, 0, 0, 1, 1] }],
    };
    let parts = cascod(0.1);
    let wc = example_weights(&cas, &parts);
    let ww = example_weights(&control, &parts);
    assert_eq!(wc.concat(), ww.concat());
    for (got, want) in ww[0].iter().zip([0.3, 0.3, 0.3, 0.05, 0.05]) {
        assert!((got - want).abs() < 1e-12, "{ww:?}");
    }
}

fn micro(seed: u64) -> Llama {
    LlamaConfig::preset("micro", VOCAB).unwrap().init_seeded(seed, &device())
}

fn random_rows(n: usize, seed: u64) -> Vec<(Vec<u32>, Vec<u32>, Vec<u32>)> {
    let mut rng = Rng::for_item(seed, 1);
    let mut tok = |k: usize| (0..k).map(|_| 2 + (rng.next_u64() % (VOCAB as u64 - 2)) as u32).collect::<Vec<_>>();
    (0..n).map(|_| (tok(4), tok(8), tok(3))).collect()
}

fn cfg(steps: usize) -> TrainConfig {
    TrainConfig { lr: 3e-3, steps: Some(steps), batch_size: 4, grad_accum: 1, max_len: 64, seed: 3, ..TrainConfig::default() }
}

#[test]
fn one_part_training_matches_plain_sft() {
    let rows = random_rows(8, 1);
    let sft: Vec<SftExample> =
        rows.iter().map(|(q, r, a)| SftExample { prompt: q.clone(), response: [r.clone(), a.clone()].concat() }).collect();
    let one: Vec<PartsExample> =
        sft.iter().map(|e| PartsExample { seqs: vec![PartSeq::uniform(e.prompt.clone(), e.response.clone(), 0)] }).collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    train_sft(micro(1), &sft, &cfg(5), &mut |m| a.push(m.loss)).unwrap();
    train_parts(micro(1), &one, &[Part::new("response", 1.0)], &cfg(5), &mut |m| b.push(m.loss)).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()), "sft {a:?} vs parts {b:?}");
    }
}

#[test]
fn cascod_training_logs_both_losses_and_lowers_them() {
    let alpha = 0.3;
    let ex: Vec<PartsExample> = random_rows(8, 2)
        .into_iter()
        .map(|(q, r, a)| PartsExample {
            seqs: vec![PartSeq::uniform(q.clone(), r.clone(), 0), PartSeq::uniform([q, r].concat(), a, 1)],
        })
        .collect();
    let mut log = Vec::new();
    train_parts(micro(2), &ex, &cascod(alpha), &cfg(40), &mut |m| log.push(m.clone())).unwrap();
    for m in &log {
        let (lr, la) = (m.extra["loss_rationale"], m.extra["loss_answer"]);
        assert!(((1.0 - alpha) * lr + alpha * la - m.loss).abs() < 1e-9, "{m:?}");
        // Both steps of every question are in the same step: 4 questions × (8 + 3) tokens.
        assert_eq!((m.extra["tokens_rationale"], m.extra["tokens_answer"]), (32.0, 12.0));
    }
    let (first, last) = (&log[0].extra, &log[39].extra);
    assert!(last["loss_rationale"] < 0.5 * first["loss_rationale"], "{first:?} -> {last:?}");
    assert!(last["loss_answer"] < 0.5 * first["loss_answer"], "{first:?} -> {last:?}");
}

#[test]
fn bad_parts_are_errors_that_say_what_is_wrong() {
    let ok = vec![PartsExample { seqs: vec![PartSeq::uniform(vec![2], vec![3, 4], 0)] }];
    let err = |ex: &[PartsExample], parts: &[Part]| {
        train_parts(micro(1), ex, parts, &cfg(1), &mut |_| {}).unwrap_err().to_string()
    };
    assert!(err(&ok, &[Part::new("rationale", -0.1)]).contains("`rationale` has weight -0.1"));
    assert!(err(&ok, &[]).contains("no loss parts"));
    let mislabelled = vec![PartsExample { seqs: vec![PartSeq { prompt: vec![2], response: vec![3, 4], parts: vec![0] }] }];
    assert!(err(&mislabelled, &[Part::new("r", 1.0)]).contains("1 part labels for 2 response tokens"));
    let out_of_range = vec![PartsExample { seqs: vec![PartSeq::uniform(vec![2], vec![3], 1)] }];
    assert!(err(&out_of_range, &[Part::new("r", 1.0)]).contains("part 1 but only 1 parts"));
}
