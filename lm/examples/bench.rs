//! Throughput of prompt processing and decoding, printed as one JSON line.
//!
//! ```text
//! cargo run -p retort-lm --release --example bench -- \
//!     --model models/SmolLM2-135M-Instruct.Q4_1.gguf --batch 16 --prompt-len 200 --new-tokens 128
//! ```
//!
//! Threads: set `RAYON_NUM_THREADS` (the scripts use 2). `--unpacked` runs
//! burn's forward pass on f32 weights (the path of checkpoints without
//! block-format weights) instead of the host engine.

use std::path::PathBuf;
use std::time::Instant;

use retort_lm::generate::{generate, GenerateRequest};
use retort_lm::{DeviceKind, LoadedModel, SamplingParams};

struct Args {
    model: PathBuf,
    batch: usize,
    prompt_len: usize,
    new_tokens: usize,
    device: DeviceKind,
    /// Run burn's forward pass on f32 weights instead of the packed host engine.
    unpacked: bool,
    /// Decode on 8-bit activations (llama.cpp's arithmetic).
    q8: bool,
    /// Bench a randomly initialised preset (`tiny`, `small`) instead of `--model`.
    preset: Option<String>,
    /// Vocabulary size for `--preset`.
    vocab: usize,
}

fn parse() -> Args {
    let mut args = Args {
        model: PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        batch: 1,
        prompt_len: 200,
        new_tokens: 128,
        device: DeviceKind::Cpu,
        unpacked: false,
        q8: false,
        preset: None,
        vocab: 512,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--unpacked" {
            args.unpacked = true;
            continue;
        }
        if flag == "--q8" {
            args.q8 = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = value.into(),
            "--batch" => args.batch = value.parse().expect("--batch N"),
            "--prompt-len" => args.prompt_len = value.parse().expect("--prompt-len N"),
            "--new-tokens" => args.new_tokens = value.parse().expect("--new-tokens N"),
            "--device" => args.device = value.parse().expect("--device cpu|wgpu|cuda"),
            "--preset" => args.preset = Some(value),
            "--vocab" => args.vocab = value.parse().expect("--vocab N"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn main() {
    let args = parse();
    let t0 = Instant::now();
    let mut model = match &args.preset {
        Some(name) => {
            let cfg = retort_lm::LlamaConfig::preset(name, args.vocab).unwrap_or_else(|e| panic!("{e}"));
            let device = args.device.device().unwrap_or_else(|e| panic!("{e}"));
            let model = cfg.init_seeded(1, &device);
            // Through a checkpoint, as the generate stage loads a trained model.
            let dir = std::env::temp_dir().join(format!("retort-bench-{name}-{}", std::process::id()));
            LoadedModel::from_parts(model, None, dir.clone()).save(&dir).unwrap_or_else(|e| panic!("{e}"));
            let loaded = LoadedModel::load(&dir, args.device).unwrap_or_else(|e| panic!("{e}"));
            let _ = std::fs::remove_dir_all(&dir);
            loaded.model().clone()
        }
        None => LoadedModel::load(&args.model, args.device).unwrap_or_else(|e| panic!("{e}")).model().clone(),
    };
    if args.unpacked {
        model.set_packed(None);
    }
    if args.q8 {
        assert!(model.set_q8_activations(true), "--q8 needs packed weights (a GGUF model)");
    }
    let model = &model;
    let load_s = t0.elapsed().as_secs_f64();
    let vocab = model.config().vocab_size as u32;
    // Deterministic pseudo-text prompts, distinct per sequence.
    let prompts: Vec<Vec<u32>> = (0..args.batch)
        .map(|b| (0..args.prompt_len).map(|i| ((i * 7919 + b * 104_729 + 13) as u32) % (vocab - 100) + 50).collect())
        .collect();
    let ids: Vec<u64> = (0..args.batch as u64).collect();
    let run = |max_new_tokens: usize| {
        let params = SamplingParams {
            // No EOS: every sequence generates exactly `max_new_tokens`.
            eos_token_ids: Some(vec![]),
            ..SamplingParams::greedy(max_new_tokens)
        };
        let (t, c) = (Instant::now(), cpu_seconds());
        let out = generate(
            model,
            &GenerateRequest {
                prompts: &prompts,
                item_ids: &ids,
                params: &params,
                decode: None,
            },
        ).unwrap();
        assert!(out.iter().all(|g| g.tokens.len() == max_new_tokens));
        (t.elapsed().as_secs_f64(), cpu_seconds() - c)
    };
    run(2); // warm-up
    // Prefill + 1 token, then prefill + N tokens: the difference is decoding.
    let (prefill_s, prefill_cpu) = run(1);
    let (total_s, total_cpu) = run(args.new_tokens + 1);
    let decode_s = total_s - prefill_s;
    let decode_cpu = total_cpu - prefill_cpu;
    let json = serde_json::json!({
        "model": args.preset.clone().unwrap_or_else(|| args.model.display().to_string()),
        "device": args.device.to_string(),
        "packed": model.is_packed(),
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "load_s": load_s,
        "prefill_s": prefill_s,
        "prefill_tok_s": (args.batch * args.prompt_len) as f64 / prefill_s,
        "decode_s": decode_s,
        "decode_tok_s": (args.batch * args.new_tokens) as f64 / decode_s,
        // CPU seconds (all threads): comparable across runs on a busy machine.
        "prefill_cpu_s": prefill_cpu,
        "decode_cpu_s": decode_cpu,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{json}");
}

/// User + system CPU time of this process so far (`/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14th and 15th overall.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    let ticks = 100.0; // USER_HZ on Linux
    f.get(11).copied().unwrap_or(0.0) / ticks + f.get(12).copied().unwrap_or(0.0) / ticks
}

/// Peak resident set size from `/proc/self/status` (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
