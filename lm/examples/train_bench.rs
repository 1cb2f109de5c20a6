//! Training-step throughput and the GRPO time split, one JSON line per run
//! (scripts/bench-train.sh runs it beside `lm/benches/train_peer.py`).
//!
//! ```text
//! # one SFT step (forward + backward + global-norm clip + AdamW, f32):
//! cargo run -p retort-lm --release --example train_bench -- step --preset tiny --vocab char
//! cargo run -p retort-lm --release --example train_bench -- step \
//!     --model models/SmolLM2-135M-Instruct.Q4_1.gguf --batch 8 --seq 256
//! # one GRPO round of the quickstart's rl_only stage, split into sampling and update:
//! cargo run -p retort-lm --release --example train_bench -- grpo --preset tiny --hidden 128 ...
//! ```
//!
//! A step is timed from one `on_step` callback of [`train_sft`] to the
//! next, so it is everything the `train` stage pays per step (batching,
//! the loss read back, clipping), not only the kernels. The JSON line
//! carries the model's config so that the PyTorch peer builds the same
//! architecture. Threads: set `RAYON_NUM_THREADS` (the script uses 2).

use std::path::PathBuf;
use std::time::Instant;

use retort_lm::rng::Rng;
use retort_lm::tokenizer::{Tokenizer, DEFAULT_SPECIALS};
use retort_lm::train::{train_grpo, train_sft, GrpoConfig, SftExample, TrainConfig};
use retort_lm::{DeviceKind, LlamaConfig, LoadedModel, SamplingParams};

struct Args {
    mode: String,
    label: String,
    model: Option<PathBuf>,
    preset: String,
    /// Vocabulary size, or `char`: the `train` stage's character tokenizer
    /// over ASCII data (what the quickstart's from-scratch model uses).
    vocab: String,
    overrides: Vec<(String, usize)>,
    batch: usize,
    seq: usize,
    warmup: usize,
    steps: usize,
    // GRPO (defaults: the quickstart's rl_only stage).
    group_size: usize,
    prompts_per_step: usize,
    max_new_tokens: usize,
    max_len: usize,
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| "step".into());
    assert!(mode == "step" || mode == "grpo", "usage: train_bench step|grpo [flags]");
    let mut args = Args {
        mode,
        label: String::new(),
        model: None,
        preset: "tiny".into(),
        vocab: "char".into(),
        overrides: Vec::new(),
        batch: 8,
        seq: 256,
        warmup: 2,
        steps: 5,
        group_size: 8,
        prompts_per_step: 4,
        max_new_tokens: 48,
        max_len: 256,
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = || value.parse::<usize>().unwrap_or_else(|_| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--label" => args.label = value.clone(),
            "--model" => args.model = Some(value.clone().into()),
            "--preset" => args.preset = value.clone(),
            "--vocab" => args.vocab = value.clone(),
            "--hidden" => args.overrides.push(("hidden_size".into(), num())),
            "--inter" => args.overrides.push(("intermediate_size".into(), num())),
            "--layers" => args.overrides.push(("num_hidden_layers".into(), num())),
            "--heads" => args.overrides.push(("num_attention_heads".into(), num())),
            "--kv-heads" => args.overrides.push(("num_key_value_heads".into(), num())),
            "--max-pos" => args.overrides.push(("max_position_embeddings".into(), num())),
            "--batch" => args.batch = num(),
            "--seq" => args.seq = num(),
            "--warmup" => args.warmup = num(),
            "--steps" => args.steps = num(),
            "--group-size" => args.group_size = num(),
            "--prompts-per-step" => args.prompts_per_step = num(),
            "--max-new-tokens" => args.max_new_tokens = num(),
            "--max-len" => args.max_len = num(),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// The character tokenizer's size for ASCII data (stages/src/train.rs:
/// printable ASCII, newline and tab, plus the default special tokens).
fn char_vocab() -> usize {
    let chars: String = (32u8..127).map(char::from).chain(['\n', '\t']).collect();
    Tokenizer::train_char_level([chars], &DEFAULT_SPECIALS)
        .unwrap_or_else(|e| panic!("{e}"))
        .vocab_size()
}

fn model(args: &Args) -> retort_lm::Llama {
    if let Some(path) = &args.model {
        let loaded = LoadedModel::load(path, DeviceKind::Cpu).unwrap_or_else(|e| panic!("{e}"));
        let mut model = loaded.model().clone();
        // Training runs burn's f32 path; the packed copies are for decoding.
        model.set_packed(None);
        return model;
    }
    let vocab = match args.vocab.as_str() {
        "char" => char_vocab(),
        n => n.parse().expect("--vocab N|char"),
    };
    let cfg = LlamaConfig::preset(&args.preset, vocab).unwrap_or_else(|e| panic!("{e}"));
    let mut json = serde_json::to_value(&cfg).expect("config serializes");
    for (k, v) in &args.overrides {
        json[k] = (*v).into();
    }
    let cfg: LlamaConfig = serde_json::from_value(json).expect("valid overrides");
    let device = DeviceKind::Cpu.device().unwrap_or_else(|e| panic!("{e}"));
    cfg.init_seeded(1, &device)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn main() {
    let args = parse();
    let t_load = Instant::now();
    let model = model(&args);
    let load_s = t_load.elapsed().as_secs_f64();
    let cfg = model.config().clone();
    let vocab = cfg.vocab_size as u64;
    let mut rng = Rng::for_item(7, 7);
    let threads = rayon::current_num_threads();
    let mut out = serde_json::json!({
        "impl": "retort",
        "case": args.label,
        "mode": args.mode,
        "config": cfg,
        "params": cfg.n_params(),
        "threads": threads,
        "load_s": load_s,
    });
    match args.mode.as_str() {
        "step" => {
            // One prompt token, then `seq` scored tokens: the model reads
            // exactly `seq` positions per row, all of them in the loss.
            let data: Vec<SftExample> = (0..args.batch)
                .map(|_| SftExample {
                    prompt: vec![(rng.next_u64() % vocab) as u32],
                    response: (0..args.seq).map(|_| (rng.next_u64() % vocab) as u32).collect(),
                })
                .collect();
            let train = TrainConfig {
                lr: 1e-4,
                steps: Some(args.warmup + args.steps),
                batch_size: args.batch,
                max_len: args.seq + 1,
                ..TrainConfig::default()
            };
            let mut times = Vec::new();
            let mut last = Instant::now();
            let mut losses = Vec::new();
            train_sft(model, &data, &train, &mut |m| {
                times.push(last.elapsed().as_secs_f64());
                losses.push(m.loss);
                last = Instant::now();
            })
            .unwrap_or_else(|e| panic!("{e}"));
            let timed = &times[args.warmup.min(times.len())..];
            let med = median(timed);
            out["batch"] = args.batch.into();
            out["seq"] = args.seq.into();
            out["warmup"] = args.warmup.into();
            out["step_s"] = timed.into();
            out["median_step_s"] = med.into();
            out["tok_s"] = ((args.batch * args.seq) as f64 / med).into();
            out["loss_first"] = losses.first().copied().unwrap_or(f64::NAN).into();
        }
        _ => {
            // Countdown-like prompts ("Use 3, 7, 25 to make 46.\n", ~30
            // characters) as random ids of that length; responses run to
            // `max_new_tokens` (no EOS), the longest a round can take.
            let prompts: Vec<Vec<u32>> = (0..64)
                .map(|_| (0..30).map(|_| (rng.next_u64() % vocab) as u32).collect())
                .collect();
            let grpo = GrpoConfig {
                group_size: args.group_size,
                prompts_per_step: args.prompts_per_step,
                steps: args.warmup + args.steps,
                sampling: SamplingParams {
                    temperature: 1.0,
                    max_new_tokens: args.max_new_tokens,
                    eos_token_ids: Some(vec![]),
                    seed: 1,
                    ..SamplingParams::default()
                },
                ..GrpoConfig::default()
            };
            let train = TrainConfig {
                lr: 3e-4,
                batch_size: args.batch,
                max_len: args.max_len,
                ..TrainConfig::default()
            };
            let (mut sample, mut update, mut round) = (Vec::new(), Vec::new(), Vec::new());
            let mut last = Instant::now();
            let reward = |_: usize, r: &[u32]| f32::from(r.first() == Some(&1));
            train_grpo(model, &prompts, &reward, None, &grpo, &train, &mut |m| {
                sample.push(m.secs["sample_secs"]);
                update.push(m.secs["update_secs"]);
                round.push(last.elapsed().as_secs_f64());
                last = Instant::now();
            })
            .unwrap_or_else(|e| panic!("{e}"));
            let w = args.warmup.min(round.len());
            out["batch"] = args.batch.into();
            out["group_size"] = args.group_size.into();
            out["prompts_per_step"] = args.prompts_per_step.into();
            out["max_new_tokens"] = args.max_new_tokens.into();
            out["sample_s"] = sample[w..].into();
            out["update_s"] = update[w..].into();
            out["round_s"] = round[w..].into();
            out["median_sample_s"] = median(&sample[w..]).into();
            out["median_update_s"] = median(&update[w..]).into();
            out["median_round_s"] = median(&round[w..]).into();
        }
    }
    println!("{out}");
}
