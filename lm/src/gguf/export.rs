//! A model and its tokenizer as a GGUF file that llama.cpp (and so Ollama)
//! runs: llama.cpp's tensor names and metadata keys, the `llama`
//! converter's Q/K row permutation, weights as F32, F16, Q8_0 or Q4_0, and
//! the tokenizer (byte-level BPE tokens, merges, token types, special ids)
//! with its chat template. The reader in `gguf.rs` and the loader in
//! `weights/gguf_source.rs` read it back.

use std::path::Path;

use super::{write_gguf, MetaValue, RawTensor};
use crate::error::LmError;
use crate::model::Llama;
use crate::quant::{quantize, GgmlType};
use crate::tokenizer::Tokenizer;
use crate::weights::{gguf_name, hf_tensors, permute_rows};

/// `general.file_type` (llama.cpp's `llama_ftype`) of a whole-file type.
fn file_type(ty: GgmlType) -> Option<u32> {
    Some(match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q8_0 => 7,
        _ => return None,
    })
}

/// Writes `model` with `tokenizer` to `path` as GGUF, its matrices as `ty`
/// (F32, F16, Q8_0 or Q4_0). As llama.cpp's converter does, vectors (norms,
/// biases) stay F32, matrices whose rows do not split into 32-value blocks
/// fall back to F16, and under Q4_0 the embedding and output matrices are
/// Q8_0 (they are the most sensitive to quantization).
pub fn export_gguf(model: &Llama, tokenizer: &Tokenizer, path: &Path, ty: GgmlType) -> Result<(), LmError> {
    let cfg = model.config();
    let invalid = |what: String| LmError::InvalidConfig { path: path.to_path_buf(), what };
    let ftype = file_type(ty).ok_or_else(|| invalid(format!("GGUF export writes f32, f16, q8_0 or q4_0, not {ty}")))?;
    if cfg.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(invalid("rope_scaling is not exported".into()));
    }
    let arch = match cfg.model_type.as_str() {
        "qwen2" => "qwen2",
        _ => "llama",
    };
    let vocab = tokenizer
        .to_gguf_vocab()
        .map_err(|e| LmError::Tokenizer { path: path.to_path_buf(), what: format!("cannot be written as GGUF: {e}") })?;
    if vocab.tokens.len() != cfg.vocab_size {
        return Err(invalid(format!("the tokenizer has {} tokens but the model {} embeddings", vocab.tokens.len(), cfg.vocab_size)));
    }

    let key = |k: &str| format!("{arch}.{k}");
    let u32v = |v: usize| MetaValue::U32(v as u32);
    let mut md: Vec<(String, MetaValue)> = vec![
        ("general.architecture".into(), MetaValue::String(arch.into())),
        ("general.name".into(), MetaValue::String("retort export".into())),
        ("general.file_type".into(), MetaValue::U32(ftype)),
        ("general.quantization_version".into(), MetaValue::U32(2)),
        (key("vocab_size"), u32v(cfg.vocab_size)),
        (key("context_length"), u32v(cfg.max_position_embeddings)),
        (key("embedding_length"), u32v(cfg.hidden_size)),
        (key("block_count"), u32v(cfg.num_hidden_layers)),
        (key("feed_forward_length"), u32v(cfg.intermediate_size)),
        (key("attention.head_count"), u32v(cfg.num_attention_heads)),
        (key("attention.head_count_kv"), u32v(cfg.n_kv_heads())),
        (key("rope.freq_base"), MetaValue::F32(cfg.rope_theta as f32)),
        (key("attention.layer_norm_rms_epsilon"), MetaValue::F32(cfg.rms_norm_eps as f32)),
        (key("rope.dimension_count"), u32v(cfg.head_dim())),
    ];
    if cfg.head_dim() != cfg.hidden_size / cfg.num_attention_heads {
        md.push((key("attention.key_length"), u32v(cfg.head_dim())));
        md.push((key("attention.value_length"), u32v(cfg.head_dim())));
    }
    md.push(("tokenizer.ggml.model".into(), MetaValue::String(vocab.model.clone())));
    md.push(("tokenizer.ggml.pre".into(), MetaValue::String(vocab.pre.clone())));
    md.push(("tokenizer.ggml.tokens".into(), MetaValue::Array(vocab.tokens.iter().cloned().map(MetaValue::String).collect())));
    md.push(("tokenizer.ggml.token_type".into(), MetaValue::Array(vocab.token_types.iter().copied().map(MetaValue::I32).collect())));
    md.push(("tokenizer.ggml.merges".into(), MetaValue::Array(vocab.merges.iter().cloned().map(MetaValue::String).collect())));
    for (k, id) in [("bos", vocab.bos), ("eos", vocab.eos), ("unknown", vocab.unk), ("padding", vocab.pad)] {
        if let Some(id) = id {
            md.push((format!("tokenizer.ggml.{k}_token_id"), MetaValue::U32(id)));
        }
    }
    md.push(("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(vocab.add_bos)));
    md.push(("tokenizer.ggml.add_eos_token".into(), MetaValue::Bool(vocab.add_eos)));
    if let Some(t) = &vocab.chat_template {
        md.push(("tokenizer.chat_template".into(), MetaValue::String(t.clone())));
    }

    let mut tensors = Vec::new();
    for (hf, shape, data) in hf_tensors(model) {
        let name = gguf_name(&hf).ok_or_else(|| invalid(format!("no GGUF name for tensor {hf}")))?;
        let data = match (arch, name.rsplit('.').nth(1)) {
            ("llama", Some("attn_q")) => permute_rows(&data, cfg.num_attention_heads, shape.get(1).copied().unwrap_or(1)),
            ("llama", Some("attn_k")) => permute_rows(&data, cfg.n_kv_heads(), shape.get(1).copied().unwrap_or(1)),
            _ => data,
        };
        let is_matrix = shape.len() == 2;
        let mut tty = match (is_matrix, ty) {
            (false, _) => GgmlType::F32,
            (true, GgmlType::Q4_0) if name == "token_embd.weight" || name == "output.weight" => GgmlType::Q8_0,
            (true, t) => t,
        };
        if tty.block_size() > 1 && shape.last().is_some_and(|c| c % tty.block_size() != 0) {
            tty = GgmlType::F16;
        }
        let bytes = quantize(tty, &data).expect("f32, f16, q8_0 and q4_0 encode");
        // ggml's `ne` is innermost first: [cols, rows] for a row-major matrix.
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        tensors.push(RawTensor { name, dims, dtype: tty, data: bytes });
    }
    let md: Vec<(&str, MetaValue)> = md.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    write_gguf(path, &md, &tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;
    use crate::gguf::GgufFile;
    use crate::test_util::device;
    use crate::tokenizer::tests::tiny_vocab;

    /// Writes a model as each type, reads it back with the GGUF reader and
    /// loader: same config, same tokenizer, weights exact (F32) or within
    /// the type's rounding.
    #[test]
    fn export_then_read_back() {
        let vocab = tiny_vocab();
        let tok = Tokenizer::from_gguf_vocab(&vocab).unwrap();
        let dev = device();
        for (tied, bias) in [(true, false), (false, true)] {
            let mut cfg = LlamaConfig::preset("micro", vocab.tokens.len()).unwrap();
            cfg.tie_word_embeddings = tied;
            if bias {
                cfg.model_type = "qwen2".into();
                cfg.attention_bias = true;
            }
            let model = cfg.init_seeded(7, &dev);
            let want = hf_tensors(&model);
            for (ty, tol) in [(GgmlType::F32, 0.0), (GgmlType::F16, 1e-3), (GgmlType::Q8_0, 0.02), (GgmlType::Q4_0, 0.2)] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("m.gguf");
                export_gguf(&model, &tok, &path, ty).unwrap();
                let file = GgufFile::open(&path).unwrap();
                assert_eq!(file.get_str("general.architecture"), Some(if bias { "qwen2" } else { "llama" }));
                assert_eq!(file.get_u32("general.file_type"), file_type(ty));
                let q = file.tensor_info("blk.0.attn_q.weight").unwrap();
                let want_ty = if ty == GgmlType::Q4_0 || ty == GgmlType::Q8_0 || ty == GgmlType::F16 { ty } else { GgmlType::F32 };
                assert_eq!(q.dtype, want_ty);
                assert_eq!(file.tensor_info("blk.0.attn_norm.weight").unwrap().dtype, GgmlType::F32);
                let back = crate::weights::load_gguf(&file, &dev).unwrap();
                let mut cfg_back = back.config().clone();
                cfg_back.bos_token_id = None;
                cfg_back.eos_token_id = None;
                // GGUF stores epsilon as f32.
                assert!((cfg_back.rms_norm_eps - model.config().rms_norm_eps).abs() < 1e-9);
                cfg_back.rms_norm_eps = model.config().rms_norm_eps;
                assert_eq!(cfg_back, *model.config(), "{ty}");
                let got = hf_tensors(&back);
                assert_eq!(got.len(), want.len());
                for ((n1, s1, d1), (n2, s2, d2)) in want.iter().zip(&got) {
                    assert_eq!((n1, s1), (n2, s2));
                    let amax = d1.iter().fold(0f32, |m, v| m.max(v.abs()));
                    for (a, b) in d1.iter().zip(d2) {
                        assert!((a - b).abs() <= tol * amax.max(1e-6), "{ty} {n1}: {a} vs {b}");
                    }
                }
                let tok_back = Tokenizer::from_gguf(&file).unwrap();
                assert_eq!(tok_back.to_gguf_vocab().unwrap(), tok.to_gguf_vocab().unwrap());
                let text = "<|im_start|>the 12 hello<|im_end|>";
                assert_eq!(tok_back.encode(text, false).unwrap(), tok.encode(text, false).unwrap());
            }
        }
    }

    #[test]
    fn refuses_types_it_does_not_write_and_char_vocabularies() {
        let dev = device();
        let tok = Tokenizer::from_gguf_vocab(&tiny_vocab()).unwrap();
        let model = LlamaConfig::preset("micro", tok.vocab_size()).unwrap().init_seeded(1, &dev);
        let dir = tempfile::tempdir().unwrap();
        let e = export_gguf(&model, &tok, &dir.path().join("a.gguf"), GgmlType::Q4_K).unwrap_err().to_string();
        assert!(e.contains("f32, f16, q8_0 or q4_0"), "{e}");
        let chars = Tokenizer::train_char_level(["abc"], &[]).unwrap();
        let model = LlamaConfig::preset("micro", chars.vocab_size()).unwrap().init_seeded(1, &dev);
        let e = export_gguf(&model, &chars, &dir.path().join("b.gguf"), GgmlType::F32).unwrap_err().to_string();
        assert!(e.contains("cannot be written as GGUF"), "{e}");
    }
}
