//! Continuous against static batching on a workload with mixed response
//! lengths, printed as one JSON line.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run -p retort-lm --release --example batching -- \
//!     --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompts 48 --batch 16 --new-tokens 160
//! ```
//!
//! The prompts are chat-formatted questions, a quarter asking for a long
//! answer and the rest for a word or a number, sampled at T 0.7 with the
//! model's EOS: the lengths a sampler of answers sees (GRPO, SkillFactory,
//! evaluation). Static batching is what the generate stage does:
//! `--batch` prompts at a time, each chunk running until its longest
//! sequence stops (finished ones leave the batch). Continuous batching keeps
//! `--batch` sequences decoding, a finished one's row taking the next prompt.
//! Both sample the same tokens (checked here); the runs alternate, and the
//! medians of `--repeats` are reported.
//!
//! `--preset tiny` runs a randomly initialised preset on burn's path
//! instead (the recipes' tiny models): pseudo-random prompts of 20 to 60
//! tokens, and 8 of its 512 tokens end a sequence, so lengths spread from a
//! few tokens to `--new-tokens`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use retort_lm::generate::{generate, generate_continuous, GenerateRequest, Generation};
use retort_lm::{DeviceKind, LoadedModel, SamplingParams};

const SHORT: &[&str] = &[
    "What is the capital of France? Answer with one word.",
    "What is 17 + 25? Reply with the number only.",
    "Name a primary colour. One word only.",
    "Is water wet? Answer yes or no.",
    "What is the opposite of hot? One word.",
    "How many legs does a spider have? Number only.",
];
const LONG: &[&str] = &[
    "Write a detailed story about a robot who learns to paint.",
    "Explain in detail how photosynthesis works.",
    "Describe the history of the Roman Empire in several paragraphs.",
];

struct Args {
    model: PathBuf,
    prompts: usize,
    batch: usize,
    new_tokens: usize,
    repeats: usize,
    preset: Option<String>,
}

fn parse() -> Args {
    let mut args = Args {
        model: PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        prompts: 48,
        batch: 16,
        new_tokens: 160,
        repeats: 3,
        preset: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = value.into(),
            "--prompts" => args.prompts = value.parse().expect("--prompts N"),
            "--batch" => args.batch = value.parse().expect("--batch N"),
            "--new-tokens" => args.new_tokens = value.parse().expect("--new-tokens N"),
            "--repeats" => args.repeats = value.parse().expect("--repeats N"),
            "--preset" => args.preset = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn main() {
    let args = parse();
    let (model, prompts, eos) = match &args.preset {
        Some(name) => preset(name, args.prompts),
        None => {
            let loaded = LoadedModel::load(&args.model, DeviceKind::Cpu).unwrap_or_else(|e| panic!("{e}"));
            // Every fourth prompt asks for a long answer.
            let prompts: Vec<Vec<u32>> = (0..args.prompts)
                .map(|i| {
                    let q = if i % 4 == 3 { LONG[(i / 4) % LONG.len()] } else { SHORT[i % SHORT.len()] };
                    loaded.encode_prompt(q, true).unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            (loaded.model().clone(), prompts, None)
        }
    };
    let model = &model;
    let ids: Vec<u64> = (0..args.prompts as u64).collect();
    let params = SamplingParams { temperature: 0.7, eos_token_ids: eos, ..SamplingParams::greedy(args.new_tokens) };
    let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params: &params, decode: None };
    let static_run = || -> Vec<Generation> {
        let mut out = Vec::new();
        for start in (0..prompts.len()).step_by(args.batch) {
            let end = (start + args.batch).min(prompts.len());
            let chunk = GenerateRequest { prompts: &prompts[start..end], item_ids: &ids[start..end], ..req };
            out.extend(generate(model, &chunk).unwrap_or_else(|e| panic!("{e}")));
        }
        out
    };
    let continuous_run = || -> Vec<Generation> {
        let out = Mutex::new(vec![None; prompts.len()]);
        generate_continuous(model, &req, args.batch, &|i, g| out.lock().unwrap()[i] = Some(g))
            .unwrap_or_else(|e| panic!("{e}"));
        out.into_inner().unwrap().into_iter().map(|g| g.expect("every sequence finishes")).collect()
    };
    let (mut static_s, mut continuous_s) = (Vec::new(), Vec::new());
    let mut outputs = None;
    for _ in 0..args.repeats {
        let t = Instant::now();
        let a = static_run();
        static_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let b = continuous_run();
        continuous_s.push(t.elapsed().as_secs_f64());
        assert_eq!(a, b, "static and continuous batching sample the same tokens");
        outputs = Some(a);
    }
    let outputs = outputs.expect("at least one repeat");
    let mut lens: Vec<usize> = outputs.iter().map(|g| g.tokens.len()).collect();
    let tokens: usize = lens.iter().sum();
    lens.sort_unstable();
    let eos = outputs.iter().filter(|g| g.finish_reason == retort_lm::FinishReason::Eos).count();
    let (s, c) = (median(&mut static_s), median(&mut continuous_s));
    let json = serde_json::json!({
        "model": args.preset.clone().unwrap_or_else(|| args.model.display().to_string()),
        "packed": model.is_packed(),
        "prompts": args.prompts,
        "batch": args.batch,
        "max_new_tokens": args.new_tokens,
        "tokens": tokens,
        "length_min_median_max": [lens[0], lens[lens.len() / 2], lens[lens.len() - 1]],
        "stopped_at_eos": eos,
        "static_s": s,
        "continuous_s": c,
        "static_tok_s": tokens as f64 / s,
        "continuous_tok_s": tokens as f64 / c,
        "continuous_over_static": s / c,
        "runs_static_s": static_s,
        "runs_continuous_s": continuous_s,
    });
    println!("{json}");
}

/// A seeded `name` preset loaded through a checkpoint (as the generate stage
/// loads a trained model), `n` prompts and the EOS ids of the module docs.
fn preset(name: &str, n: usize) -> (retort_lm::Llama, Vec<Vec<u32>>, Option<Vec<u32>>) {
    let cfg = retort_lm::LlamaConfig::preset(name, 512).unwrap_or_else(|e| panic!("{e}"));
    let model = cfg.init_seeded(1, &DeviceKind::Cpu.device().unwrap_or_else(|e| panic!("{e}")));
    let dir = std::env::temp_dir().join(format!("retort-batching-{name}-{}", std::process::id()));
    LoadedModel::from_parts(model, None, dir.clone()).save(&dir).unwrap_or_else(|e| panic!("{e}"));
    let loaded = LoadedModel::load(&dir, DeviceKind::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let prompts = (0..n)
        .map(|b| (0..20 + (b * 37) % 41).map(|i| ((i * 7919 + b * 104_729 + 13) % 400) as u32 + 50).collect())
        .collect();
    (loaded.model().clone(), prompts, Some((0..8).collect()))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}
