//! The training loops on a micro model (2 blocks, width 64): SFT memorizes,
//! DPO learns preferences, GRPO raises a toy reward, same seed ⇒ same
//! weights; plus batching, truncation, planning and clipping details.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor};

use super::optim::{clip_global_norm, global_norm};
use super::trainer::{keep_lens, make_batch, plan_steps, truncate, Seq, Trainer};
use super::*;
use crate::config::LlamaConfig;
use crate::error::LmError;
use crate::model::Llama;
use crate::rng::Rng;
use crate::sampling::SamplingParams;
use crate::test_util::device;
use crate::weights::hf_tensors;

const VOCAB: usize = 24;

fn micro(seed: u64) -> Llama {
    let dev = device();
    LlamaConfig::preset("micro", VOCAB).unwrap().init_seeded(seed, &dev)
}

fn weights(model: &Llama) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    hf_tensors(model)
}

/// `n` rows of pseudo-random tokens in `2..VOCAB`.
fn rows(n: usize, prompt: usize, response: usize, seed: u64) -> Vec<SftExample> {
    let mut rng = Rng::for_item(seed, 1);
    let mut tok = || 2 + (rng.next_u64() % (VOCAB as u64 - 2)) as u32;
    (0..n)
        .map(|_| SftExample {
            prompt: (0..prompt).map(|_| tok()).collect(),
            response: (0..response).map(|_| tok()).collect(),
        })
        .collect()
}

#[test]
fn truncation_keeps_prompt_tail_and_response_head() {
    assert_eq!(keep_lens(5, 3, 10), (5, 3));
    assert_eq!(keep_lens(5, 3, 6), (3, 3));
    assert_eq!(keep_lens(5, 9, 6), (1, 5));
    assert_eq!(keep_lens(0, 9, 6), (0, 6));
    let s = truncate(&[1, 2, 3, 4], &[7, 8], 4);
    assert_eq!(
        s,
        Seq {
            tokens: vec![3, 4, 7, 8],
            resp_start: 2
        }
    );
    assert_eq!(s.n_scored(), 2);
    assert_eq!(truncate(&[], &[7, 8, 9], 8).n_scored(), 2);
}

#[test]
fn batches_are_right_padded_and_masked() {
    let dev = device();
    let a = Seq {
        tokens: vec![1, 2, 3, 4],
        resp_start: 2,
    };
    let b = Seq {
        tokens: vec![5, 6],
        resp_start: 1,
    };
    let batch = make_batch(&[&a, &b], &dev);
    let ints = |t: Tensor<2, Int>| t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
    assert_eq!(ints(batch.inputs), vec![1, 2, 3, 5, 0, 0]);
    assert_eq!(ints(batch.targets), vec![2, 3, 4, 6, 0, 0]);
    assert_eq!(
        batch.mask.into_data().try_to_vec::<f32>().unwrap(),
        vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    );
    assert_eq!((batch.n_tokens, batch.width), (3, 3));
}

#[test]
fn padding_does_not_change_the_loss() {
    // A row's log-probs are the same alone and beside a longer row.
    let model = micro(3);
    let dev = model.device();
    let short = Seq {
        tokens: vec![3, 4, 5, 6],
        resp_start: 1,
    };
    let long = Seq {
        tokens: (2..20).collect(),
        resp_start: 1,
    };
    let alone = trainer::batch_logprobs(&model, &make_batch(&[&short], &dev));
    let padded = trainer::batch_logprobs(&model, &make_batch(&[&short, &long], &dev));
    let alone = alone.into_data().try_to_vec::<f32>().unwrap();
    let padded = padded
        .narrow(0, 0, 1)
        .narrow(1, 0, 3)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    crate::test_util::assert_close(&padded, &alone, 1e-5);
}

#[test]
fn plan_covers_epochs_and_caps_steps() {
    let cfg = TrainConfig {
        batch_size: 3,
        grad_accum: 2,
        epochs: Some(2),
        ..TrainConfig::default()
    };
    let plan = plan_steps(10, &cfg);
    assert_eq!(
        plan.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![6, 4, 6, 4]
    );
    let mut first: Vec<usize> = plan[..2].concat();
    first.sort();
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    assert_eq!(
        plan_steps(
            10,
            &TrainConfig {
                steps: Some(3),
                ..cfg.clone()
            }
        )
        .len(),
        3
    );
    assert_eq!(
        plan_steps(
            10,
            &TrainConfig {
                epochs: None,
                steps: Some(7),
                ..cfg.clone()
            }
        )
        .len(),
        7
    );
    assert_eq!(
        plan_steps(
            10,
            &TrainConfig {
                epochs: None,
                ..cfg
            }
        )
        .len(),
        2
    );
}

#[test]
fn global_norm_clipping() {
    let model = micro(4).train();
    let dev = model.device();
    let seq = Seq {
        tokens: (2..14).collect(),
        resp_start: 4,
    };
    let batch = make_batch(&[&seq], &dev);
    let logits = model.forward(batch.inputs, &model.causal_layout(1, batch.width), None);
    let (loss, _) = sft_loss(logits, batch.targets, batch.mask);
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = global_norm(&model, &grads);
    assert!(norm > 0.0, "no gradients: did Module::train enable them?");
    assert_eq!(
        clip_global_norm(&model, &mut grads, Some((norm * 2.0) as f32)),
        norm
    );
    assert!((global_norm(&model, &grads) - norm).abs() < 1e-6 * norm);
    clip_global_norm(&model, &mut grads, Some((norm / 4.0) as f32));
    assert!((global_norm(&model, &grads) - norm / 4.0).abs() < 1e-4 * norm);
}

fn sft_cfg(steps: usize) -> TrainConfig {
    TrainConfig {
        lr: 3e-3,
        steps: Some(steps),
        batch_size: 4,
        grad_accum: 2,
        max_len: 64,
        seed: 11,
        ..TrainConfig::default()
    }
}

#[test]
fn sft_memorizes_a_few_rows() {
    let data = rows(8, 6, 16, 5);
    let mut losses = Vec::new();
    let t = Instant::now();
    let model = train_sft(micro(1), &data, &sft_cfg(50), &mut |m| {
        assert!(m.loss.is_finite() && m.grad_norm.is_finite());
        assert_eq!(m.extra["tokens"], 8.0 * 16.0);
        losses.push(m.loss);
    })
    .unwrap();
    eprintln!(
        "sft: 50 steps in {:.1}s, loss {:.3} -> {:.3}",
        t.elapsed().as_secs_f64(),
        losses[0],
        losses[49]
    );
    assert_eq!(losses.len(), 50);
    assert!(
        losses[49] < 0.3 * losses[0],
        "loss {} -> {}",
        losses[0],
        losses[49]
    );
    assert!(
        !model.device().is_autodiff(),
        "returned on the plain device"
    );
    // The result saves and loads as a checkpoint.
    let dir = tempfile::tempdir().unwrap();
    crate::weights::save_safetensors_dir(&model, dir.path()).unwrap();
    let loaded = crate::weights::load_safetensors_dir(dir.path(), &device()).unwrap();
    assert!(weights(&loaded) == weights(&model));
    // Memorized: greedy decoding of a prompt reproduces most of its response.
    let out = crate::generate::generate(
        &model,
        &crate::generate::GenerateRequest {
            prompts: &[data[0].prompt.clone()],
            item_ids: &[0],
            params: &SamplingParams {
                eos_token_ids: Some(vec![]),
                ..SamplingParams::greedy(16)
            },
            decode: None,
        },
    ).unwrap();
    let hits = out[0]
        .tokens
        .iter()
        .zip(&data[0].response)
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        hits >= 12,
        "greedy {:?} vs {:?}",
        out[0].tokens,
        data[0].response
    );
}

#[test]
fn same_seed_same_weights() {
    // The `tiny` preset (width 256) at 4 × 48 tokens, so flex's matmuls and
    // reductions run multithreaded: bit-identical weights are still expected.
    // Every run starts from the same checkpoint (burn's device RNG is
    // process-wide, and tests running beside this one draw from it too).
    let data = rows(12, 16, 32, 9);
    let cfg = TrainConfig {
        batch_size: 4,
        grad_accum: 1,
        steps: Some(3),
        ..sft_cfg(3)
    };
    let dir = tempfile::tempdir().unwrap();
    let init = LlamaConfig::preset("tiny", VOCAB).unwrap().init_seeded(0, &device());
    crate::weights::save_safetensors_dir(&init, dir.path()).unwrap();
    let run = |seed: u64| {
        let model = crate::weights::load_safetensors_dir(dir.path(), &device()).unwrap();
        let cfg = TrainConfig {
            seed,
            ..cfg.clone()
        };
        weights(&train_sft(model, &data, &cfg, &mut |_| {}).unwrap())
    };
    let a = run(1);
    assert!(a == run(1), "same seed, different weights");
    assert!(a != run(2), "the seed should change the data order");
    // Nor does the thread count change a bit: one thread trains what rayon's pool trains.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    assert!(a == one.install(|| run(1)), "one thread, different weights");
}

#[test]
fn snapshot_is_not_changed_by_later_updates() {
    let cfg = sft_cfg(1);
    let mut tr = Trainer::new(micro(5), &cfg, 3);
    let snap = tr.snapshot();
    let before = weights(&snap);
    let seq = Seq {
        tokens: (2..14).collect(),
        resp_start: 4,
    };
    for _ in 0..3 {
        let batch = make_batch(&[&seq], &tr.device());
        let model = tr.model();
        let logits = model.forward(batch.inputs, &model.causal_layout(1, batch.width), None);
        tr.backward(sft_loss(logits, batch.targets, batch.mask).0);
        tr.step();
    }
    assert!(weights(&snap) == before);
    assert!(weights(&tr.finish()) != before);
}

#[test]
fn dpo_learns_the_preference() {
    // Chosen responses repeat the prompt's first token, rejected ones its last.
    let mut rng = Rng::for_item(7, 0);
    let mut tok = || 2 + (rng.next_u64() % (VOCAB as u64 - 2)) as u32;
    let pairs: Vec<DpoExample> = (0..8)
        .map(|_| {
            let prompt: Vec<u32> = (0..5).map(|_| tok()).collect();
            DpoExample {
                chosen: vec![prompt[0]; 4],
                rejected: vec![prompt[4]; 4],
                prompt,
            }
        })
        .collect();
    let cfg = TrainConfig {
        lr: 2e-3,
        steps: Some(20),
        batch_size: 4,
        grad_accum: 2,
        ..sft_cfg(20)
    };
    let mut acc = Vec::new();
    let mut margin = Vec::new();
    let t = Instant::now();
    train_dpo(micro(6), &pairs, DpoParams::default(), &cfg, &mut |m| {
        acc.push(m.extra["reward_accuracy"]);
        margin.push(m.extra["margin"]);
    })
    .unwrap();
    eprintln!(
        "dpo: 20 steps in {:.1}s, accuracy {acc:?}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        margin[0].abs() < 1e-3,
        "policy = reference at the start: margin {}",
        margin[0]
    );
    assert!(
        acc[19] >= 0.99 && margin[19] > 0.1,
        "accuracy {acc:?} margin {margin:?}"
    );
}

#[test]
fn rpo_adds_the_chosen_nll_to_dpo() {
    // Chosen responses of 2..5 tokens, so the per-token normalisation shows.
    let mut rng = Rng::for_item(8, 0);
    let mut tok = || 2 + (rng.next_u64() % (VOCAB as u64 - 2)) as u32;
    let pairs: Vec<DpoExample> = (0..4)
        .map(|i| DpoExample {
            prompt: (0..3).map(|_| tok()).collect(),
            chosen: (0..2 + i).map(|_| tok()).collect(),
            rejected: (0..3).map(|_| tok()).collect(),
        })
        .collect();
    // By hand: the initial model's per-token NLL of each chosen response,
    // averaged over the pairs (one step holds all four).
    let start = micro(6);
    let want_nll: f64 = pairs
        .iter()
        .map(|e| {
            let all: Vec<u32> = e.prompt.iter().chain(&e.chosen).copied().collect();
            let lp = crate::generate::token_logprobs(&start, &all, e.prompt.len());
            -lp.iter().map(|&x| f64::from(x)).sum::<f64>() / e.chosen.len() as f64
        })
        .sum::<f64>()
        / 4.0;
    let cfg = TrainConfig {
        lr: 2e-3,
        steps: Some(2),
        batch_size: 2,
        grad_accum: 2,
        ..sft_cfg(2)
    };
    let run = |nll_weight: f64| {
        let mut log = Vec::new();
        let params = DpoParams {
            beta: 0.1,
            nll_weight,
        };
        let model = train_dpo(micro(6), &pairs, params, &cfg, &mut |m| log.push(m.clone())).unwrap();
        (weights(&model), log)
    };
    let (plain_w, plain) = run(0.0);
    let (rpo_w, rpo) = run(0.5);
    // Step 0: policy = reference, so DPO's part is ln 2 and the rest is α·NLL.
    let ln2 = std::f64::consts::LN_2;
    assert!(!plain[0].extra.contains_key("nll"), "plain DPO logs no NLL");
    assert!((plain[0].loss - ln2).abs() < 1e-5, "{}", plain[0].loss);
    let nll = rpo[0].extra["nll"];
    assert!((nll - want_nll).abs() < 1e-4 * want_nll, "nll {nll}, by hand {want_nll}");
    assert!((rpo[0].loss - (ln2 + 0.5 * nll)).abs() < 1e-5, "{} vs ln2 + 0.5·{nll}", rpo[0].loss);
    assert_eq!(rpo[0].extra["margin"], plain[0].extra["margin"]);
    // The term has a gradient: the weights part ways.
    assert!(rpo_w != plain_w);
}

#[test]
fn grpo_raises_a_toy_reward() {
    // Reward 1 when the response starts with token 5 (about 1 in 24 at first).
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| vec![2 + i, 3 + i, 4 + i]).collect();
    let reward = |_: usize, r: &[u32]| if r.first() == Some(&5) { 1.0 } else { 0.0 };
    let grpo = GrpoConfig {
        group_size: 8,
        prompts_per_step: 4,
        steps: 20,
        ppo_epochs: 1,
        sampling: SamplingParams {
            max_new_tokens: 3,
            eos_token_ids: Some(vec![]),
            ..GrpoConfig::default().sampling
        },
        ..GrpoConfig::default()
    };
    // 32 responses in mini-batches of 16: two updates per round, so π_old
    // log-probs come from the sampling copy (ratios move, clipping can bind).
    let cfg = TrainConfig {
        lr: 1e-2,
        batch_size: 8,
        grad_accum: 2,
        max_len: 16,
        ..sft_cfg(1)
    };
    let mut metrics = Vec::new();
    let t = Instant::now();
    train_grpo(micro(8), &prompts, &reward, None, &grpo, &cfg, &mut |m| {
        metrics.push(m.clone())
    })
    .unwrap();
    let r: Vec<f64> = metrics.iter().map(|m| m.extra["reward_mean"]).collect();
    eprintln!(
        "grpo: 20 rounds in {:.1}s, reward {r:?}",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(metrics.len(), 20);
    assert!(metrics
        .iter()
        .all(|m| m.extra["updates"] == 2.0 && m.loss.is_finite()));
    let first: f64 = r[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = r[15..].iter().sum::<f64>() / 5.0;
    assert!(
        last > first + 0.3 && last > 0.5,
        "reward {first:.2} -> {last:.2}"
    );
    assert!(metrics[19].extra["kl"] > 0.0);
    assert!(metrics.iter().any(|m| m.extra["clip_fraction"] > 0.0));
    assert!(metrics
        .iter()
        .all(|m| (0.0..=1.0).contains(&m.extra["zero_adv_fraction"])));
    // The time split covers the rounds and no more.
    let split: f64 = metrics
        .iter()
        .map(|m| m.secs["sample_secs"] + m.secs["update_secs"])
        .sum();
    assert!(metrics
        .iter()
        .all(|m| m.secs["sample_secs"] > 0.0 && m.secs["update_secs"] > 0.0));
    assert!(split <= t.elapsed().as_secs_f64(), "{split}");
}

#[test]
fn grpo_single_update_rounds_have_unit_ratio() {
    let prompts = vec![vec![2, 3], vec![4, 5]];
    let reward =
        |p: usize, r: &[u32]| (p as f32) + r.len() as f32 * 0.0 + f32::from(r.first() == Some(&7));
    let grpo = GrpoConfig {
        group_size: 4,
        prompts_per_step: 2,
        steps: 2,
        kl_coef: 0.0,
        entropy_coef: 0.01,
        sampling: SamplingParams {
            max_new_tokens: 2,
            ..GrpoConfig::default().sampling
        },
        ..GrpoConfig::default()
    };
    let cfg = TrainConfig {
        batch_size: 8,
        max_len: 8,
        ..sft_cfg(1)
    };
    let mut metrics = Vec::new();
    train_grpo(micro(9), &prompts, &reward, None, &grpo, &cfg, &mut |m| {
        metrics.push(m.clone())
    })
    .unwrap();
    for m in &metrics {
        assert_eq!(m.extra["updates"], 1.0);
        assert_eq!(m.extra["clip_fraction"], 0.0);
        assert_eq!(m.extra["kl"], 0.0);
        assert!(m.extra["entropy"] > 0.0);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let data = rows(2, 2, 2, 1);
    let e = train_sft(
        micro(1),
        &data,
        &TrainConfig {
            batch_size: 0,
            ..TrainConfig::default()
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, LmError::Train { .. }), "{e:?}");
    assert!(e.to_string().starts_with("cannot train: `batch_size` is 0"), "{e}");
    let e = train_sft(
        micro(1),
        &data,
        &TrainConfig {
            max_len: 5000,
            ..TrainConfig::default()
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_len"), "{e}");
    let bad_ids = vec![SftExample {
        prompt: vec![1],
        response: vec![VOCAB as u32],
    }];
    let e = train_sft(micro(1), &bad_ids, &TrainConfig::default(), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
    let e = train_grpo(
        micro(1),
        &[vec![1]],
        &|_, _| 0.0,
        None,
        &GrpoConfig {
            sampling: SamplingParams {
                stop: vec!["x".into()],
                ..SamplingParams::default()
            },
            ..GrpoConfig::default()
        },
        &TrainConfig::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("decoder"), "{e}");
}

/// Seconds per SFT step and the GRPO time split of the `tiny` preset
/// (~3.2M parameters with a 100-token vocabulary) at batch 8 × 128 tokens.
/// `cargo test -p retort-lm --release train::loop_tests::bench -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn bench_tiny_steps() {
    let dev = device();
    let cfg = LlamaConfig::preset("tiny", 100).unwrap();
    eprintln!("tiny: {} parameters", cfg.n_params());
    let model = cfg.init_seeded(0, &dev);
    let mut rng = Rng::for_item(1, 1);
    let data: Vec<SftExample> = (0..8)
        .map(|_| SftExample {
            prompt: (0..32).map(|_| (rng.next_u64() % 100) as u32).collect(),
            response: (0..97).map(|_| (rng.next_u64() % 100) as u32).collect(),
        })
        .collect();
    let train = TrainConfig {
        lr: 1e-3,
        steps: Some(6),
        batch_size: 8,
        max_len: 129,
        ..TrainConfig::default()
    };
    let mut times = Vec::new();
    let mut last = Instant::now();
    let model = train_sft(model, &data, &train, &mut |_| {
        times.push(last.elapsed().as_secs_f64());
        last = Instant::now();
    })
    .unwrap();
    eprintln!(
        "sft step (8 x 128 tokens): {:?} s; steady {:.3} s",
        times,
        times[2..].iter().sum::<f64>() / 4.0
    );
    let prompts: Vec<Vec<u32>> = data.iter().map(|d| d.prompt.clone()).collect();
    let grpo = GrpoConfig {
        group_size: 8,
        prompts_per_step: 4,
        steps: 2,
        sampling: SamplingParams {
            max_new_tokens: 96,
            eos_token_ids: Some(vec![]),
            ..GrpoConfig::default().sampling
        },
        ..GrpoConfig::default()
    };
    let train = TrainConfig {
        batch_size: 8,
        grad_accum: 4,
        max_len: 128,
        ..train
    };
    train_grpo(
        model,
        &prompts,
        &|_, r| f32::from(r[0] == 1),
        None,
        &grpo,
        &train,
        &mut |m| {
            eprintln!(
                "grpo round (32 x 96 new tokens): sample {:.2} s, update {:.2} s",
                m.secs["sample_secs"], m.secs["update_secs"]
            );
        },
    )
    .unwrap();
}

/// The log-probs GRPO takes for π_θ, π_old and the reference are those of the
/// distribution the rollouts were sampled from, `log_softmax(logits / T)` at
/// the sampling temperature (0.7 here), not the temperature-1 ones; greedy
/// (temperature 0) counts as 1.
#[test]
fn grpo_logprobs_are_taken_at_the_rollout_temperature() {
    use super::grpo::{logprob_temperature, tempered_logprobs};
    let model = micro(3);
    let dev = model.device();
    let seq = Seq {
        tokens: vec![2, 5, 7, 3, 9, 11, 4],
        resp_start: 2,
    };
    let batch = make_batch(&[&seq], &dev);
    let [b, t] = batch.inputs.dims();
    let logits = model.forward(batch.inputs.clone(), &model.causal_layout(b, t), None);
    let logits = logits.into_data().try_to_vec::<f32>().unwrap();
    let temp = logprob_temperature(&SamplingParams {
        temperature: 0.7,
        ..SamplingParams::default()
    });
    assert_eq!(temp, 0.7);
    let want: Vec<f32> = (0..t)
        .map(|pos| {
            let row: Vec<f64> = logits[pos * VOCAB..(pos + 1) * VOCAB]
                .iter()
                .map(|&l| f64::from(l) / 0.7)
                .collect();
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = row.iter().map(|l| (l - max).exp()).sum::<f64>().ln() + max;
            (row[seq.tokens[pos + 1] as usize] - lse) as f32
        })
        .collect();
    let got = tempered_logprobs(&model, &batch, temp)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    crate::test_util::assert_close(&got, &want, 1e-5);
    assert_eq!(logprob_temperature(&SamplingParams::greedy(4)), 1.0);
}

#[test]
fn prm_learns_which_steps_are_good_and_scores_them_as_it_trained() {
    // A step is "good" when its last token is even: two or three marks per
    // row, at the end of each 4-token step after a 3-token prompt.
    let mut rng = Rng::for_item(11, 0);
    let mut tok = || 2 + (rng.next_u64() % (VOCAB as u64 - 2)) as u32;
    let data: Vec<PrmExample> = (0..16)
        .map(|i| {
            let tokens: Vec<u32> = (0..3 + 4 * (2 + i % 2)).map(|_| tok()).collect();
            let marks = (0..2 + i % 2).map(|s| 3 + 4 * s + 3).map(|p| (p, if tokens[p].is_multiple_of(2) { 1.0 } else { 0.0 })).collect();
            PrmExample { tokens, marks }
        })
        .collect();
    let prm = PrmTokens { good: 0, bad: 1 };
    let cfg = TrainConfig { lr: 3e-3, steps: Some(40), batch_size: 8, ..TrainConfig::default() };
    let mut log = Vec::new();
    let model = train_prm(micro(3), &data, prm, &cfg, &mut |m| log.push((m.loss, m.extra["accuracy"], m.extra["marks"]))).unwrap();
    let (first, last) = (log[0], log[log.len() - 1]);
    assert!(last.0 < 0.3 * first.0, "loss {} -> {}", first.0, last.0);
    assert!(last.1 >= 0.95, "accuracy at the end {}", last.1);
    assert!(log.iter().all(|l| (l.2 - 20.0).abs() < 5.0), "marks per step of 8 rows: 16 to 24");
    // Scoring reads the same two logits at the same positions.
    for e in &data[..4] {
        let positions: Vec<usize> = e.marks.iter().map(|m| m.0).collect();
        let scores = step_scores(&model, &e.tokens, &positions, prm);
        for (s, &(_, y)) in scores.iter().zip(&e.marks) {
            assert_eq!(*s > 0.5, y > 0.5, "score {s} for label {y}");
        }
        // A position's score depends only on the tokens up to it.
        let alone = step_scores(&model, &e.tokens[..=positions[0]], &positions[..1], prm);
        assert!((alone[0] - scores[0]).abs() < 1e-5, "{} vs {}", alone[0], scores[0]);
    }
    // Bad examples are refused, naming the row.
    let bad = |e: PrmExample| train_prm(micro(3), &[e], prm, &cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(bad(PrmExample { tokens: vec![2, 3], marks: vec![] }).contains("example 0 has no scored step"));
    assert!(bad(PrmExample { tokens: vec![2, 3], marks: vec![(2, 1.0)] }).contains("inside its 2 tokens"));
    assert!(bad(PrmExample { tokens: vec![2, 3], marks: vec![(1, 1.5)] }).contains("labels in [0, 1]"));
}
