//! Model hyper-parameters: from an HF `config.json`, from GGUF metadata,
//! or from a named preset for models trained from scratch.
//!
//! The JSON form is HF's `LlamaConfig`/`Qwen2Config` subset, so a retort
//! checkpoint directory also loads in `transformers`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::gguf::GgufFile;

/// Architectures this crate runs (all share the Llama decoder).
pub const ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "mistral"];

/// Hyper-parameters of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `qwen2` or `mistral`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Longest sequence (size of the RoPE tables and the default KV cache bound).
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Whether the output head reuses the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections have biases (Qwen2 always does).
    #[serde(default)]
    pub attention_bias: bool,
    /// Beginning-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    /// RoPE scaling; only `null` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
}

/// One token id or several (HF allows both for `eos_token_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

fn default_model_type() -> String {
    "llama".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}

impl LlamaConfig {
    /// Key/value heads.
    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// End-of-sequence ids (possibly empty).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            None => vec![],
            Some(TokenIds::One(id)) => vec![*id],
            Some(TokenIds::Many(ids)) => ids.clone(),
        }
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        let (d, hd) = (self.hidden_size, self.head_dim());
        let (nh, nkv) = (self.num_attention_heads, self.n_kv_heads());
        let qkv = d * (nh + 2 * nkv) * hd + usize::from(self.attention_bias) * (nh + 2 * nkv) * hd;
        let layer = qkv + nh * hd * d + 3 * d * self.intermediate_size + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { self.vocab_size * d };
        self.vocab_size * d + self.num_hidden_layers * layer + d + head
    }

    /// A named preset for training from scratch: `tiny` (4 blocks, width
    /// 256, ~4.6M parameters plus the embedding) or `micro` (2 blocks,
    /// width 64, for tests).
    pub fn preset(name: &str, vocab_size: usize) -> Result<LlamaConfig, LmError> {
        let (layers, width, heads, kv, inter) = match name {
            "tiny" => (4, 256, 4, 2, 768),
            "small" => (8, 384, 6, 2, 1024),
            "micro" => (2, 64, 4, 2, 128),
            other => {
                return Err(LmError::InvalidConfig {
                    path: other.into(),
                    what: "unknown preset (expected tiny, small or micro)".into(),
                });
            }
        };
        Ok(LlamaConfig {
            model_type: "llama".into(),
            vocab_size,
            hidden_size: width,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 1024,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: None,
            rope_scaling: None,
        })
    }

    /// Reads an HF `config.json`.
    pub fn from_json_file(path: &Path) -> Result<LlamaConfig, LmError> {
        let text = std::fs::read_to_string(path).map_err(|e| LmError::io(path, e))?;
        let mut cfg: LlamaConfig = serde_json::from_str(&text).map_err(|source| LmError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        if cfg.model_type == "qwen2" {
            cfg.attention_bias = true;
        }
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Writes an HF-compatible `config.json`.
    pub fn to_json_file(&self, path: &Path) -> Result<(), LmError> {
        let mut value = serde_json::to_value(self).expect("config serializes");
        let arch = match self.model_type.as_str() {
            "qwen2" => "Qwen2ForCausalLM",
            "mistral" => "MistralForCausalLM",
            _ => "LlamaForCausalLM",
        };
        value["architectures"] = serde_json::json!([arch]);
        value["hidden_act"] = "silu".into();
        value["torch_dtype"] = "float32".into();
        let text = serde_json::to_string_pretty(&value).expect("json");
        std::fs::write(path, text + "\n").map_err(|e| LmError::io(path, e))
    }

    /// Reads the config from GGUF metadata (`{arch}.*` keys).
    pub fn from_gguf(file: &GgufFile) -> Result<LlamaConfig, LmError> {
        let path = file.path();
        let missing = |key: &str| LmError::MissingMetadata {
            path: path.to_path_buf(),
            key: key.to_string(),
        };
        let arch = file
            .get_str("general.architecture")
            .ok_or_else(|| missing("general.architecture"))?;
        if !ARCHITECTURES.contains(&arch) {
            return Err(LmError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                arch: arch.to_string(),
            });
        }
        let key = |k: &str| format!("{arch}.{k}");
        let req = |k: &str| file.get_u32(&key(k)).ok_or_else(|| missing(&key(k)));
        let heads = req("attention.head_count")? as usize;
        if heads == 0 {
            // `validate` says so too, but the head size below divides by it first.
            return Err(LmError::InvalidConfig {
                path: path.to_path_buf(),
                what: format!("{} is 0", key("attention.head_count")),
            });
        }
        let hidden = req("embedding_length")? as usize;
        let vocab = match file.get_u32(&key("vocab_size")) {
            Some(v) => v as usize,
            // ggml's outermost dimension of the embedding is the vocabulary.
            None => match file.tensor_info("token_embd.weight").and_then(|t| t.dims.last()) {
                Some(&rows) => rows as usize,
                None => return Err(missing(&key("vocab_size"))),
            },
        };
        let head_dim = file
            .get_u32(&key("attention.key_length"))
            .or_else(|| file.get_u32(&key("rope.dimension_count")))
            .map(|v| v as usize)
            .filter(|&hd| hd != hidden / heads);
        let cfg = LlamaConfig {
            model_type: if arch == "qwen2" { "qwen2" } else { "llama" }.into(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: req("feed_forward_length")? as usize,
            num_hidden_layers: req("block_count")? as usize,
            num_attention_heads: heads,
            num_key_value_heads: Some(file.get_u32(&key("attention.head_count_kv")).unwrap_or(heads as u32) as usize),
            head_dim,
            rms_norm_eps: file
                .get_f32(&key("attention.layer_norm_rms_epsilon"))
                .map_or(1e-5, f64::from),
            rope_theta: file.get_f32(&key("rope.freq_base")).map_or(10_000.0, f64::from),
            max_position_embeddings: file.get_u32(&key("context_length")).map_or(2048, |v| v as usize),
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            attention_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
            bos_token_id: file.get_u32("tokenizer.ggml.bos_token_id"),
            eos_token_id: file.get_u32("tokenizer.ggml.eos_token_id").map(TokenIds::One),
            rope_scaling: None,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks the config describes a model this crate can build.
    pub fn validate(&self, path: &Path) -> Result<(), LmError> {
        let bad = |what: String| {
            Err(LmError::InvalidConfig {
                path: path.to_path_buf(),
                what,
            })
        };
        if !ARCHITECTURES.contains(&self.model_type.as_str()) {
            return Err(LmError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                arch: self.model_type.clone(),
            });
        }
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.n_kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return bad(format!("{name} is 0"));
        }
        if !self.num_attention_heads.is_multiple_of(self.n_kv_heads()) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.n_kv_heads()
            ));
        }
        if self.head_dim() == 0 || !self.head_dim().is_multiple_of(2) {
            return bad(format!("head_dim {} must be even and positive", self.head_dim()));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return bad("rope_scaling is not supported".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hf_json_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":151936,
            "hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,
            "num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"max_position_embeddings":32768,
            "tie_word_embeddings":true,"bos_token_id":151643,"eos_token_id":[151645,151643],"rope_scaling":null,
            "torch_dtype":"bfloat16","use_sliding_window":false}"#,
        )
        .unwrap();
        let cfg = LlamaConfig::from_json_file(&path).unwrap();
        assert!(cfg.attention_bias);
        assert_eq!(cfg.head_dim(), 64);
        assert_eq!(cfg.eos_ids(), vec![151645, 151643]);
        cfg.to_json_file(&path).unwrap();
        let again = LlamaConfig::from_json_file(&path).unwrap();
        assert_eq!(again, LlamaConfig { rope_scaling: None, ..cfg });
    }

    #[test]
    fn rejects_bad_configs() {
        let mut cfg = LlamaConfig::preset("micro", 10).unwrap();
        cfg.num_key_value_heads = Some(3);
        let e = cfg.validate(Path::new("m/config.json")).unwrap_err();
        assert!(e.to_string().contains("not a multiple"), "{e}");
        let e = LlamaConfig::preset("huge", 10).unwrap_err();
        assert!(e.to_string().contains("unknown preset"), "{e}");
        cfg = LlamaConfig::preset("micro", 10).unwrap();
        cfg.model_type = "gpt2".into();
        let e = cfg.validate(Path::new("m")).unwrap_err();
        assert!(e.to_string().contains("unsupported architecture `gpt2`"), "{e}");
    }
}
