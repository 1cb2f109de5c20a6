//! Weight loading and saving tests.

use super::gguf_source::{gguf_name, permute_rows, unpermute_rows};
use super::*;

/// llama.cpp's `permute` (convert_hf_to_gguf.py), written out.
fn permute(w: &[f32], n_head: usize, cols: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let hd = rows / n_head;
    let mut out = vec![0f32; w.len()];
    // reshape(n_head, 2, hd/2, cols).swapaxes(1, 2): out[h][i][j] = w[h][j][i]
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..hd / 2 {
                let src = (h * hd + j * hd / 2 + i) * cols;
                let dst = (h * hd + i * 2 + j) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

#[test]
fn unpermute_inverts_the_converters_permute() {
    let (n_head, hd, cols) = (3, 8, 5);
    let w: Vec<f32> = (0..n_head * hd * cols).map(|i| i as f32).collect();
    assert_eq!(unpermute_rows(&permute(&w, n_head, cols), n_head, cols), w);
    // The exporter's permutation is the converter's.
    assert_eq!(permute_rows(&w, n_head, cols), permute(&w, n_head, cols));
    // Row 1 of head 0 in GGUF order is HF row hd/2 (the pair partner of row 0).
    let p = permute(&w, n_head, cols);
    assert_eq!(p[cols], w[hd / 2 * cols]);
}

/// Encodes f32 values as Q8_0 blocks (ggml's reference quantizer).
fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for block in x.chunks(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// Writes `model` as llama.cpp's converter would: GGUF names, ggml
/// dims, Q/K rows permuted; linear weights as `dtype` (F32 or Q8_0).
pub(crate) fn write_as_gguf(model: &Llama, path: &Path, dtype: crate::GgmlType) {
    let (md, tensors) = gguf_parts(model, dtype);
    crate::gguf::write_gguf(path, &md, &tensors).unwrap();
}

fn gguf_parts(
    model: &Llama,
    dtype: crate::GgmlType,
) -> (Vec<(&'static str, crate::MetaValue)>, Vec<crate::gguf::RawTensor>) {
    use crate::gguf::{MetaValue, RawTensor};
    let cfg = model.config();
    let md = vec![
        ("general.architecture", MetaValue::String("llama".into())),
        ("llama.embedding_length", MetaValue::U32(cfg.hidden_size as u32)),
        ("llama.feed_forward_length", MetaValue::U32(cfg.intermediate_size as u32)),
        ("llama.block_count", MetaValue::U32(cfg.num_hidden_layers as u32)),
        ("llama.attention.head_count", MetaValue::U32(cfg.num_attention_heads as u32)),
        ("llama.attention.head_count_kv", MetaValue::U32(cfg.n_kv_heads() as u32)),
        ("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(cfg.rms_norm_eps as f32)),
        ("llama.rope.freq_base", MetaValue::F32(cfg.rope_theta as f32)),
        ("llama.context_length", MetaValue::U32(cfg.max_position_embeddings as u32)),
        ("llama.vocab_size", MetaValue::U32(cfg.vocab_size as u32)),
    ];
    let tensors: Vec<RawTensor> = hf_tensors(model)
        .into_iter()
        .map(|(name, shape, data)| {
            let gname = gguf_name(&name).unwrap();
            let cols = *shape.last().unwrap();
            let data = if name.contains("q_proj") {
                permute(&data, cfg.num_attention_heads, if shape.len() == 2 { cols } else { 1 })
            } else if name.contains("k_proj") {
                permute(&data, cfg.n_kv_heads(), if shape.len() == 2 { cols } else { 1 })
            } else {
                data
            };
            let (dtype, bytes) = if shape.len() == 2 && dtype == crate::GgmlType::Q8_0 {
                (dtype, quantize_q8_0(&data))
            } else {
                (crate::GgmlType::F32, data.iter().flat_map(|v| v.to_le_bytes()).collect())
            };
            RawTensor {
                name: gname,
                dims: shape.iter().rev().map(|&d| d as u64).collect(),
                dtype,
                data: bytes,
            }
        })
        .collect();
    (md, tensors)
}

#[test]
fn gguf_round_trip_undoes_the_permutation_and_packs() {
    for (tied, bias) in [(true, false), (false, true)] {
        gguf_round_trip(tied, bias);
    }
}

fn gguf_round_trip(tied: bool, bias: bool) {
    use crate::generate::{generate, last_logits, token_logprobs, GenerateRequest};
    use crate::test_util::{assert_close, device};
    let dev = device();
    let mut cfg = crate::test_util::micro_in_blocks_of_32();
    cfg.tie_word_embeddings = tied;
    cfg.attention_bias = bias;
    let model = cfg.init_seeded(3, &dev);
    let model = if bias {
        // Non-zero biases, so their permutation matters.
        struct Shift;
        impl burn::module::ModuleMapper for Shift {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                p.map(|t| if D == 1 { t.clone() + t.random_like(burn::tensor::Distribution::Default) } else { t })
            }
        }
        burn::module::Module::map(model, &mut Shift)
    } else {
        model
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = [3u32, 9, 27, 17, 51, 40];

    let f32_path = dir.path().join("f32.gguf");
    write_as_gguf(&model, &f32_path, crate::GgmlType::F32);
    let file = GgufFile::open(&f32_path).unwrap();
    let loaded = load_gguf(&file, &dev).unwrap();
    assert!(!loaded.is_packed(), "f32 has no block kernel");
    assert_eq!(loaded.config().n_kv_heads(), 1);
    assert_close(&last_logits(&loaded, &tokens), &last_logits(&model, &tokens), 1e-5);

    let q_path = dir.path().join("q8.gguf");
    write_as_gguf(&model, &q_path, crate::GgmlType::Q8_0);
    let file = GgufFile::open(&q_path).unwrap();
    let packed = load_gguf(&file, &dev).unwrap();
    assert!(packed.is_packed(), "packed on a CPU device");
    let mut unpacked = packed.clone();
    unpacked.set_packed(None);
    // Transformations that may change or move the weights drop the copy.
    struct Noop;
    impl burn::module::ModuleMapper for Noop {}
    use burn::module::Module;
    assert!(!packed.clone().map(&mut Noop).is_packed());
    assert!(!packed.clone().fork(&dev).is_packed());
    assert!(packed.valid().is_packed());
    assert!(!load_gguf(&file, &dev.clone().autodiff()).unwrap().is_packed());
    assert_close(&last_logits(&packed, &tokens), &last_logits(&unpacked, &tokens), 1e-5);
    let prompts = vec![tokens.to_vec(), tokens[..2].to_vec()];
    let params = crate::SamplingParams::greedy(8);
    let req = GenerateRequest {
        prompts: &prompts,
        item_ids: &[0, 1],
        params: &params,
        decode: None,
    };
    assert_eq!(generate(&packed, &req).unwrap(), generate(&unpacked, &req).unwrap());
    assert_close(&token_logprobs(&packed, &tokens, 2), &token_logprobs(&unpacked, &tokens, 2), 1e-5);
}

#[test]
fn unsupported_tensor_type_names_file_and_tensor() {
    use crate::gguf::{write_gguf, MetaValue};
    let dev = crate::test_util::device();
    let model = LlamaConfig::preset("micro", 40).unwrap().init_seeded(0, &dev);
    let (md, mut tensors) = gguf_parts(&model, crate::GgmlType::Q8_0);
    let t = tensors.iter_mut().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
    t.dtype = crate::GgmlType::Other(23);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iq.gguf");
    write_gguf(&path, &md, &tensors).unwrap();
    let e = load_gguf(&GgufFile::open(&path).unwrap(), &dev).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: tensor `blk.0.attn_q.weight` has unsupported type IQ4_XS (ggml type 23)", path.display())
    );
    let md = [("general.architecture", MetaValue::String("gpt2".into()))];
    write_gguf(&path, &md, &[]).unwrap();
    let e = load_gguf(&GgufFile::open(&path).unwrap(), &dev).unwrap_err();
    assert!(e.to_string().ends_with("unsupported architecture `gpt2` (supported: llama, qwen2, mistral)"), "{e}");
}

#[test]
fn maps_hf_names_to_gguf() {
    assert_eq!(gguf_name("model.layers.12.self_attn.k_proj.bias").unwrap(), "blk.12.attn_k.bias");
    assert_eq!(gguf_name("model.layers.0.mlp.down_proj.weight").unwrap(), "blk.0.ffn_down.weight");
    assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
    assert!(gguf_name("model.layers.0.foo.weight").is_none());
}

#[test]
fn transposes() {
    assert_eq!(transpose(&[1., 2., 3., 4., 5., 6.], 2, 3), vec![1., 4., 2., 5., 3., 6.]);
}
