//! Model tests against a naive reference, the KV cache against a full
//! forward, padded batches against single sequences.

use super::*;
use crate::generate::{generate, last_logits, GenerateRequest};
use crate::sampling::SamplingParams;
use crate::test_util::{assert_close, device};
use crate::weights::hf_tensors;

fn micro(tied: bool, bias: bool) -> Llama {
    let dev = device();
    let mut cfg = LlamaConfig::preset("micro", 97).unwrap();
    cfg.tie_word_embeddings = tied;
    cfg.attention_bias = bias;
    cfg.eos_token_id = Some(crate::config::TokenIds::One(96));
    let mut model = cfg.init_seeded(7, &dev);
    // transformers' init makes every logit ~0; larger weights make the
    // reference comparison and greedy paths meaningful.
    model = scale_params(model, 4.0);
    model
}

fn scale_params(model: Llama, by: f32) -> Llama {
    use burn::module::ModuleMapper;
    struct Scale(f32);
    impl ModuleMapper for Scale {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let by = self.0;
            param.map(|t| if D == 2 { t.mul_scalar(by) } else { t })
        }
    }
    model.map(&mut Scale(by))
}

/// A plain-Rust forward pass over HF-layout tensors (`[out, in]`):
/// transformers' Llama, one sequence, every position's logits.
fn naive_forward(model: &Llama, tokens: &[u32]) -> Vec<Vec<f32>> {
    let cfg = model.config().clone();
    let t: std::collections::HashMap<String, Vec<f32>> =
        hf_tensors(model).into_iter().map(|(n, _, d)| (n, d)).collect();
    let (d, hd, nh, nkv) = (cfg.hidden_size, cfg.head_dim(), cfg.num_attention_heads, cfg.n_kv_heads());
    let matvec = |w: &[f32], x: &[f32], out: usize| -> Vec<f32> {
        (0..out).map(|o| (0..x.len()).map(|i| w[o * x.len() + i] * x[i]).sum()).collect()
    };
    let rms = |x: &[f32], w: &[f32]| -> Vec<f32> {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        let r = 1.0 / (ms + cfg.rms_norm_eps as f32).sqrt();
        x.iter().zip(w).map(|(v, w)| v * r * w).collect()
    };
    let rope = |x: &mut [f32], pos: usize| {
        for i in 0..hd / 2 {
            let f = 1.0 / (cfg.rope_theta).powf(2.0 * i as f64 / hd as f64);
            let (s, c) = (pos as f64 * f).sin_cos();
            let (a, b) = (x[i] as f64, x[i + hd / 2] as f64);
            x[i] = (a * c - b * s) as f32;
            x[i + hd / 2] = (a * s + b * c) as f32;
        }
    };
    let embed = &t["model.embed_tokens.weight"];
    let mut xs: Vec<Vec<f32>> = tokens.iter().map(|&tok| embed[tok as usize * d..(tok as usize + 1) * d].to_vec()).collect();
    for l in 0..cfg.num_hidden_layers {
        let p = |s: &str| t[&format!("model.layers.{l}.{s}")].clone();
        let (mut ks, mut vs, mut qs) = (vec![], vec![], vec![]);
        for (pos, x) in xs.iter().enumerate() {
            let h = rms(x, &p("input_layernorm.weight"));
            let mut q = matvec(&p("self_attn.q_proj.weight"), &h, nh * hd);
            let mut k = matvec(&p("self_attn.k_proj.weight"), &h, nkv * hd);
            let mut v = matvec(&p("self_attn.v_proj.weight"), &h, nkv * hd);
            if cfg.attention_bias {
                for (y, b) in [(&mut q, "q"), (&mut k, "k"), (&mut v, "v")] {
                    for (y, b) in y.iter_mut().zip(p(&format!("self_attn.{b}_proj.bias"))) {
                        *y += b;
                    }
                }
            }
            q.chunks_mut(hd).for_each(|h| rope(h, pos));
            k.chunks_mut(hd).for_each(|h| rope(h, pos));
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for (pos, x) in xs.iter_mut().enumerate() {
            let mut att = vec![0f32; nh * hd];
            for h in 0..nh {
                let kv = h / (nh / nkv);
                let q = &qs[pos][h * hd..(h + 1) * hd];
                let scores: Vec<f32> = (0..=pos)
                    .map(|j| q.iter().zip(&ks[j][kv * hd..(kv + 1) * hd]).map(|(a, b)| a * b).sum::<f32>() / (hd as f32).sqrt())
                    .collect();
                let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f32 = e.iter().sum();
                for (j, w) in e.iter().enumerate() {
                    for i in 0..hd {
                        att[h * hd + i] += w / z * vs[j][kv * hd + i];
                    }
                }
            }
            let o = matvec(&p("self_attn.o_proj.weight"), &att, d);
            x.iter_mut().zip(o).for_each(|(x, o)| *x += o);
            let h = rms(x, &p("post_attention_layernorm.weight"));
            let g = matvec(&p("mlp.gate_proj.weight"), &h, cfg.intermediate_size);
            let u = matvec(&p("mlp.up_proj.weight"), &h, cfg.intermediate_size);
            let a: Vec<f32> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let down = matvec(&p("mlp.down_proj.weight"), &a, d);
            x.iter_mut().zip(down).for_each(|(x, o)| *x += o);
        }
    }
    let head = t.get("lm_head.weight").unwrap_or(embed);
    xs.iter()
        .map(|x| matvec(head, &rms(x, &t["model.norm.weight"]), cfg.vocab_size))
        .collect()
}

fn all_logits(model: &Llama, tokens: &[u32]) -> Vec<Vec<f32>> {
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &model.device());
    let layout = model.layout(&[0], tokens.len());
    let v = model.forward(t, &layout, None).into_data().try_to_vec::<f32>().unwrap();
    v.chunks(model.config().vocab_size).map(<[f32]>::to_vec).collect()
}

const TOKENS: [u32; 9] = [5, 17, 3, 88, 42, 42, 7, 60, 1];

#[test]
fn forward_matches_naive_reference() {
    for (tied, bias) in [(true, false), (false, true)] {
        let model = micro(tied, bias);
        let got = all_logits(&model, &TOKENS);
        let want = naive_forward(&model, &TOKENS);
        for (g, w) in got.iter().zip(&want) {
            assert_close(g, w, 1e-4);
        }
    }
}

#[test]
fn kv_cache_decode_equals_full_forward() {
    let model = micro(true, true);
    let full = all_logits(&model, &TOKENS);
    let mut cache = model.new_cache(1, 16);
    let prefill = 4;
    let ids = |t: &[u32]| {
        let v: Vec<i32> = t.iter().map(|&x| x as i32).collect();
        Tensor::<2, Int>::from_data(TensorData::new(v, [1, t.len()]), &model.device())
    };
    let layout = model.cache_layout(&[0], &cache, prefill);
    let first = model.forward_last(ids(&TOKENS[..prefill]), &layout, Some(&mut cache));
    assert_close(&first.into_data().try_to_vec::<f32>().unwrap(), &full[prefill - 1], 1e-5);
    for pos in prefill..TOKENS.len() {
        let layout = model.cache_layout(&[0], &cache, 1);
        let step = model.forward_last(ids(&TOKENS[pos..=pos]), &layout, Some(&mut cache));
        assert_close(&step.into_data().try_to_vec::<f32>().unwrap(), &full[pos], 1e-5);
    }
    assert_eq!(cache.len(), TOKENS.len());
}

#[test]
fn left_padded_batch_matches_single_sequences() {
    let model = micro(true, false);
    let prompts: Vec<Vec<u32>> = vec![TOKENS[..3].to_vec(), TOKENS.to_vec(), vec![9], TOKENS[2..7].to_vec()];
    let params = SamplingParams::greedy(12);
    let batch = generate(
        &model,
        &GenerateRequest {
            prompts: &prompts,
            item_ids: &[0, 1, 2, 3],
            params: &params,
            decode: None,
        },
    ).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let alone = generate(
            &model,
            &GenerateRequest {
                prompts: std::slice::from_ref(p),
                item_ids: &[i as u64],
                params: &params,
                decode: None,
            },
        ).unwrap();
        assert_eq!(batch[i], alone[0], "prompt {i}");
        // And the greedy path is the argmax of full forwards.
        let mut seq = p.clone();
        for &tok in &alone[0].tokens {
            assert_eq!(crate::sampling::argmax(&last_logits(&model, &seq)), tok);
            seq.push(tok);
        }
    }
}

#[test]
fn sampling_is_independent_of_batch_neighbours() {
    let model = micro(true, false);
    let params = SamplingParams {
        max_new_tokens: 10,
        temperature: 1.5,
        top_p: 0.95,
        seed: 11,
        ..SamplingParams::default()
    };
    let prompts = vec![TOKENS[..4].to_vec(), TOKENS[1..].to_vec(), TOKENS[..4].to_vec()];
    let run = |prompts: &[Vec<u32>], ids: &[u64]| {
        generate(&model, &GenerateRequest { prompts, item_ids: ids, params: &params, decode: None }).unwrap()
    };
    let batch = run(&prompts, &[5, 6, 7]);
    assert_eq!(batch[0], run(&prompts[..1], &[5])[0]);
    assert_eq!(batch[1], run(&prompts[1..2], &[6])[0]);
    assert_eq!(batch, run(&prompts, &[5, 6, 7]));
    // Same prompt, different item id: (almost surely) different samples.
    assert_ne!(batch[0].tokens, batch[2].tokens);
}

/// A batch split across threads (see `generate`'s module docs) gives what
/// one batch on one thread gives, in the request's order, whatever the
/// number of parts (here 3 threads over 7 sequences: parts of 3, 3 and 1).
#[test]
fn split_batches_decode_as_one_batch() {
    let model = micro(true, false);
    let params = SamplingParams { max_new_tokens: 9, temperature: 1.2, seed: 4, ..SamplingParams::default() };
    let prompts: Vec<Vec<u32>> = (0..7).map(|i| TOKENS[i % 3..].to_vec()).collect();
    let ids: Vec<u64> = (10..17).collect();
    let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params: &params, decode: None };
    let whole = crate::generate::generate_batch(&model, &req);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let split = pool.install(|| {
        assert_eq!(crate::generate::split_parts(&model, prompts.len()), 3);
        generate(&model, &req).unwrap()
    });
    assert_eq!(split, whole);
}

#[test]
fn stops_on_stop_strings_and_length() {
    let model = micro(true, false);
    let decode = |t: &[u32]| t.iter().map(|x| format!("<{x}>")).collect::<String>();
    let free = generate(
        &model,
        &GenerateRequest {
            prompts: &[TOKENS.to_vec()],
            item_ids: &[0],
            params: &SamplingParams::greedy(6),
            decode: None,
        },
    ).unwrap();
    assert_eq!(free[0].tokens.len(), 6);
    assert_eq!(free[0].finish_reason, crate::FinishReason::Length);
    let stop = format!("<{}>", free[0].tokens[2]);
    let params = SamplingParams {
        stop: vec![stop.clone()],
        ..SamplingParams::greedy(6)
    };
    let stopped = generate(
        &model,
        &GenerateRequest {
            prompts: &[TOKENS.to_vec()],
            item_ids: &[0],
            params: &params,
            decode: Some(&decode),
        },
    ).unwrap();
    let first = free[0].tokens.iter().position(|t| format!("<{t}>") == stop).unwrap();
    assert_eq!(stopped[0].tokens, free[0].tokens[..=first]);
    assert_eq!(stopped[0].finish_reason, crate::FinishReason::Stop);
    assert_eq!(stopped[0].stop.as_deref(), Some(stop.as_str()));
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    for (tied, bias) in [(true, false), (false, true)] {
        let model = micro(tied, bias);
        let dir = tempfile::tempdir().unwrap();
        crate::weights::save_safetensors_dir(&model, dir.path()).unwrap();
        let loaded = crate::weights::load_safetensors_dir(dir.path(), &device()).unwrap();
        assert_eq!(loaded.config(), model.config());
        let (a, b) = (hf_tensors(&model), hf_tensors(&loaded));
        assert_eq!(a.len(), b.len());
        for ((na, sa, da), (nb, sb, db)) in a.iter().zip(&b) {
            assert_eq!((na, sa), (nb, sb));
            assert!(da.iter().zip(db).all(|(x, y)| x.to_bits() == y.to_bits()), "{na}");
        }
        assert_eq!(all_logits(&model, &TOKENS), all_logits(&loaded, &TOKENS));
    }
}

#[test]
fn causal_layout_trains_without_cache() {
    let model = micro(true, false);
    let layout = model.causal_layout(2, 4);
    let ids: Vec<i32> = [&TOKENS[..4], &TOKENS[4..8]].concat().iter().map(|&t| t as i32).collect();
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 4]), &model.device());
    let logits = model.forward(t, &layout, None).into_data().try_to_vec::<f32>().unwrap();
    let v = model.config().vocab_size;
    assert_close(&logits[7 * v..8 * v], &all_logits(&model, &TOKENS[4..8])[3], 1e-5);
}

#[test]
fn token_logprobs_match_softmax_of_full_logits() {
    let model = micro(true, false);
    let got = crate::generate::token_logprobs(&model, &TOKENS, 3);
    let full = all_logits(&model, &TOKENS);
    assert_eq!(got.len(), TOKENS.len() - 3);
    for (k, i) in (3..TOKENS.len()).enumerate() {
        let row = &full[i - 1];
        let z: f64 = row.iter().map(|&l| (l as f64).exp()).sum();
        let want = (row[TOKENS[i] as usize] as f64 - z.ln()) as f32;
        assert!((got[k] - want).abs() < 1e-4, "{} vs {want}", got[k]);
    }
}

/// Every parameter's values, in a fixed order.
fn param_bytes(model: &Llama) -> Vec<(String, Vec<u32>)> {
    hf_tensors(model)
        .into_iter()
        .map(|(name, _, v)| (name, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

#[test]
fn seeded_init_ignores_other_threads_use_of_burns_rng() {
    use burn::tensor::Distribution;
    let cfg = LlamaConfig::preset("micro", 97).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (a, b) = std::thread::scope(|s| {
        // Draws from (and reseeds) burn's process-wide RNG the whole time.
        s.spawn(|| {
            let dev = device();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                dev.seed(i);
                let t = Tensor::<2>::random([64, 64], Distribution::Normal(0.0, 1.0), &dev);
                let _ = t.sum().into_scalar::<f32>();
                i += 1;
            }
        });
        let init = || {
            let dev = device();
            (0..4).map(|_| param_bytes(&cfg.init_seeded(11, &dev))).collect::<Vec<_>>()
        };
        let a = s.spawn(init);
        let b = s.spawn(init);
        let out = (a.join().unwrap(), b.join().unwrap());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    });
    for got in a.iter().chain(&b) {
        assert!(got == &a[0], "same seed, different parameters");
    }
    let other = param_bytes(&cfg.init_seeded(12, &device()));
    assert_eq!(other.len(), a[0].len());
    for ((name, x), (_, y)) in other.iter().zip(&a[0]) {
        let ones = name.contains("norm");
        assert_eq!(x == y, ones, "{name}: seeds 11 and 12 should differ exactly on the random weights");
    }
    // The distribution transformers uses: mean 0, std 0.02.
    let all: Vec<f32> = hf_tensors(&cfg.init_seeded(11, &device()))
        .into_iter()
        .filter(|(name, _, _)| !name.contains("norm"))
        .flat_map(|(_, _, v)| v)
        .collect();
    let n = all.len() as f64;
    let mean = all.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let std = (all.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(mean.abs() < 1e-3 && (std - 0.02).abs() < 5e-4, "mean {mean}, std {std}");
}

/// Bad requests are typed errors naming the prompt, before anything runs:
/// `generate` used to assert (and the engine caught the panic).
#[test]
fn generate_rejects_bad_requests_with_typed_errors() {
    let model = micro(true, false);
    let max = model.config().max_position_embeddings;
    let params = SamplingParams::greedy(4);
    let run = |prompts: &[Vec<u32>], ids: &[u64]| {
        generate(&model, &GenerateRequest { prompts, item_ids: ids, params: &params, decode: None })
    };
    let too_long = vec![1u32; max - 3];
    let e = run(&[TOKENS.to_vec(), too_long], &[0, 1]).unwrap_err();
    assert_eq!(e.prompt_index(), Some(1), "{e}");
    assert!(e.to_string().contains("max_position_embeddings"), "{e}");
    let e = run(&[TOKENS.to_vec(), vec![]], &[0, 1]).unwrap_err();
    assert_eq!(e.prompt_index(), Some(1), "{e}");
    let e = run(&[vec![u32::MAX]], &[0]).unwrap_err();
    assert!(e.to_string().contains("outside the model's vocabulary"), "{e}");
    let e = run(&[TOKENS.to_vec()], &[0, 1]).unwrap_err();
    assert!(matches!(e, crate::LmError::Request { .. }), "{e}");
    let stop = SamplingParams { stop: vec!["x".into()], ..SamplingParams::greedy(4) };
    let e = generate(&model, &GenerateRequest { prompts: &[TOKENS.to_vec()], item_ids: &[0], params: &stop, decode: None }).unwrap_err();
    assert!(matches!(e, crate::LmError::Request { .. }), "{e}");
    // A prompt that fits exactly is fine.
    assert_eq!(run(&[vec![1u32; max - 4]], &[0]).unwrap()[0].tokens.len(), 4);
}
