//! SmolLM2-135M-Instruct (Q4_1 GGUF) against transformers' f32 outputs and
//! llama.cpp's first token (`../shared/golden/smollm2-135m-q4_1.json`).
//!
//! Skips with a notice when `models/SmolLM2-135M-Instruct.Q4_1.gguf` is
//! absent (run `scripts/fetch-smollm2.sh`). Build with `--release`.

use std::path::PathBuf;

use retort_lm::generate::{generate, last_logits, GenerateRequest};
use retort_lm::{DeviceKind, GgufFile, LoadedModel, SamplingParams};

const EOS: u32 = 2;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The model's path, or `None` (with a notice) when it is absent.
fn smollm2() -> Option<PathBuf> {
    let path = workspace().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        eprintln!("skipping: {} is absent (run scripts/fetch-smollm2.sh)", path.display());
        return None;
    }
    Some(path)
}

struct Golden {
    prompt: String,
    chat: bool,
    prompt_tokens: Vec<u32>,
    hf_greedy: Vec<u32>,
    hf_top5: Vec<(u32, f32)>,
    llamacpp_greedy: Vec<u32>,
}

fn goldens() -> Vec<Golden> {
    let path = workspace().join("../shared/golden/smollm2-135m-q4_1.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    json.as_array()
        .unwrap()
        .iter()
        .map(|g| Golden {
            prompt: g["prompt"].as_str().unwrap().to_string(),
            chat: g["chat"].as_bool().unwrap(),
            prompt_tokens: ids(&g["prompt_tokens"]),
            hf_greedy: ids(&g["hf_f32_greedy"]),
            hf_top5: g["hf_f32_last_logits_top5"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
                .collect(),
            llamacpp_greedy: ids(&g["llamacpp_greedy"]),
        })
        .collect()
}

#[test]
fn smollm2_matches_transformers_and_llamacpp() {
    let Some(model_path) = smollm2() else { return };
    let goldens = goldens();
    assert!(!goldens.is_empty());
    // The f32 model, then with packed Q4_1/Q8_0 weights for decoding
    // (what `LoadedModel` uses on CPU): both must match.
    let device = DeviceKind::Cpu.device().unwrap();
    let mut unpacked = retort_lm::weights::load_gguf(&GgufFile::open(&model_path).unwrap(), &device).unwrap();
    unpacked.set_packed(None);
    let loaded = LoadedModel::load(&model_path, DeviceKind::Cpu).unwrap();
    assert!(loaded.model().is_packed());
    for model in [&unpacked, loaded.model()] {
        for g in &goldens {
            let logits = last_logits(model, &g.prompt_tokens);
            for &(tok, want) in &g.hf_top5 {
                let got = logits[tok as usize];
                assert!((got - want).abs() <= 1e-3, "{:?}: logit of {tok}: got {got}, want {want}", g.prompt);
            }
        }
    }
    // What `retort sample` does: text (chat-formatted or not) to the golden ids.
    for g in &goldens {
        assert_eq!(loaded.encode_prompt(&g.prompt, g.chat).unwrap(), g.prompt_tokens, "{:?}", g.prompt);
    }
    let model = loaded.model();
    // All prompts in one mixed-length batch: greedy must match transformers
    // (which ran each alone), so padding changes nothing.
    let prompts: Vec<Vec<u32>> = goldens.iter().map(|g| g.prompt_tokens.clone()).collect();
    let item_ids: Vec<u64> = (0..prompts.len() as u64).collect();
    let params = SamplingParams {
        eos_token_ids: Some(vec![EOS]),
        ..SamplingParams::greedy(32)
    };
    let out = generate(
        model,
        &GenerateRequest {
            prompts: &prompts,
            item_ids: &item_ids,
            params: &params,
            decode: None,
        },
    ).unwrap();
    for (g, o) in goldens.iter().zip(&out) {
        assert_eq!(o.tokens, g.hf_greedy, "{:?}", g.prompt);
        assert_eq!(o.tokens[0], g.llamacpp_greedy[0], "{:?}", g.prompt);
    }
    // And each prompt alone.
    for (i, g) in goldens.iter().enumerate() {
        let alone = generate(
            model,
            &GenerateRequest {
                prompts: std::slice::from_ref(&g.prompt_tokens),
                item_ids: &[i as u64],
                params: &params,
                decode: None,
            },
        ).unwrap();
        assert_eq!(alone[0].tokens, g.hf_greedy, "{:?} alone", g.prompt);
    }
}

/// The same goldens on burn's wgpu backend (`--features wgpu`; on these
/// machines, Mesa's lavapipe: see `scripts/test-wgpu.sh`): the prompt
/// tokens, transformers' greedy tokens, and the last position's logits
/// within the CPU path's 1e-3. The model runs unpacked there (the packed
/// Q4_1/Q8_0 kernels are host-side), which is the f32 path the CPU check
/// above also covers. Skips without an adapter unless
/// `RETORT_REQUIRE_WGPU` is set.
#[cfg(feature = "wgpu")]
#[test]
fn smollm2_on_wgpu_matches_transformers() {
    let Some(model_path) = smollm2() else { return };
    if let Err(e) = DeviceKind::Wgpu.device() {
        assert!(std::env::var_os("RETORT_REQUIRE_WGPU").is_none(), "RETORT_REQUIRE_WGPU is set but wgpu is unusable: {e}");
        eprintln!("skipping: {e}");
        return;
    }
    eprintln!("wgpu: {}", DeviceKind::Wgpu.describe().unwrap());
    let goldens = goldens();
    let loaded = LoadedModel::load(&model_path, DeviceKind::Wgpu).unwrap();
    assert!(!loaded.model().is_packed(), "packed kernels are for host memory only");
    let model = loaded.model();
    for g in &goldens {
        assert_eq!(loaded.encode_prompt(&g.prompt, g.chat).unwrap(), g.prompt_tokens, "{:?}", g.prompt);
        let logits = last_logits(model, &g.prompt_tokens);
        for &(tok, want) in &g.hf_top5 {
            let got = logits[tok as usize];
            assert!((got - want).abs() <= 1e-3, "{:?}: logit of {tok} on wgpu: got {got}, want {want}", g.prompt);
        }
    }
    let prompts: Vec<Vec<u32>> = goldens.iter().map(|g| g.prompt_tokens.clone()).collect();
    let item_ids: Vec<u64> = (0..prompts.len() as u64).collect();
    let params = SamplingParams {
        eos_token_ids: Some(vec![EOS]),
        ..SamplingParams::greedy(32)
    };
    let out = generate(model, &GenerateRequest { prompts: &prompts, item_ids: &item_ids, params: &params, decode: None }).unwrap();
    for (g, o) in goldens.iter().zip(&out) {
        assert_eq!(o.tokens, g.hf_greedy, "{:?} on wgpu", g.prompt);
    }
}

/// The 8-bit activation mode (`set_q8_activations`, llama.cpp's arithmetic
/// for decode-sized products) against llama.cpp's own greedy tokens. The
/// prompt runs on the f32 path either way, so the first token is the f32
/// model's; after it, each decode step rounds its activations as llama.cpp
/// does, so this mode stays with llama.cpp at least as long as the f32 path
/// does (which leaves it after 5 and 15 tokens on these prompts): on this
/// machine it gives llama.cpp's tokens on both, all 32 and all 15.
#[test]
fn smollm2_q8_activations_follow_llamacpp() {
    let Some(model_path) = smollm2() else { return };
    let mut model = LoadedModel::load(&model_path, DeviceKind::Cpu).unwrap().model().clone();
    let mut f32_only = model.clone();
    f32_only.set_packed(None);
    assert!(!f32_only.set_q8_activations(true), "no packed weights, no 8-bit mode");
    assert!(model.set_q8_activations(true));
    let params = SamplingParams {
        eos_token_ids: Some(vec![EOS]),
        ..SamplingParams::greedy(32)
    };
    let common = |a: &[u32], b: &[u32]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    for (i, g) in goldens().iter().enumerate() {
        let llamacpp = &g.llamacpp_greedy;
        let out = generate(
            &model,
            &GenerateRequest {
                prompts: std::slice::from_ref(&g.prompt_tokens),
                item_ids: &[i as u64],
                params: &params,
                decode: None,
            },
        )
        .unwrap();
        let (with_llamacpp, f32_with_llamacpp) = (common(&out[0].tokens, llamacpp), common(&g.hf_greedy, llamacpp));
        eprintln!("{:?}: q8 shares {with_llamacpp} tokens with llama.cpp (f32: {f32_with_llamacpp}), {} with transformers", g.prompt, common(&out[0].tokens, &g.hf_greedy));
        assert_eq!(out[0].tokens[0], g.llamacpp_greedy[0], "{:?}", g.prompt);
        // Where the f32 path leaves llama.cpp early, this mode goes further
        // (all 32 tokens on the first prompt on an AVX-512 machine).
        assert!(
            with_llamacpp == llamacpp.len() || with_llamacpp > f32_with_llamacpp,
            "{:?}: q8 {:?}\nllama.cpp {:?}",
            g.prompt,
            out[0].tokens,
            llamacpp
        );
    }
}
