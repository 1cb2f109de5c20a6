//! Weights in and out: GGUF and HF safetensors → [`Llama`], and a
//! [`Llama`] → `model.safetensors` with HF tensor names (f32).
//!
//! Tensors are fetched by their HF names (`model.layers.0.self_attn.q_proj.weight`,
//! `[out, in]` row-major); a GGUF source maps them to llama.cpp's names
//! (`blk.0.attn_q.weight`) and undoes the converter's Q/K row permutation.

mod gguf_source;
mod safetensors_source;

use std::path::Path;

use burn::module::Param;
use burn::nn::Embedding;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::Dtype;

use crate::config::LlamaConfig;
use crate::error::LmError;
use crate::gguf::GgufFile;
use crate::model::{linear_from, Llama, RotaryEmbedding};

pub use gguf_source::{load_gguf, pack_gguf};
pub(crate) use gguf_source::{gguf_name, permute_rows};
pub(crate) use safetensors_source::SafetensorsSource;

/// A tensor's row-major shape and f32 values.
pub(crate) type ShapedData = (Vec<usize>, Vec<f32>);

/// f32 tensors by HF name, with row-major shapes.
pub(crate) trait TensorSource {
    /// The file named in errors.
    fn path(&self) -> &Path;
    /// The tensor, or `None` if absent.
    fn get(&self, name: &str) -> Result<Option<ShapedData>, LmError>;
}

/// Row-major transpose of a `[rows, cols]` matrix.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

/// Reads tensors checking their shapes against the config.
struct Loader<'a> {
    src: &'a dyn TensorSource,
    device: &'a Device,
}

impl Loader<'_> {
    fn require(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LmError> {
        self.optional(name, shape)?.ok_or_else(|| LmError::MissingTensor {
            path: self.src.path().to_path_buf(),
            name: name.to_string(),
        })
    }

    fn optional(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>, LmError> {
        let Some((found, data)) = self.src.get(name)? else {
            return Ok(None);
        };
        if found != shape {
            return Err(LmError::ShapeMismatch {
                path: self.src.path().to_path_buf(),
                name: name.to_string(),
                found,
                expected: shape.to_vec(),
            });
        }
        Ok(Some(data))
    }

    /// HF linear weights `[out_i, d_in]` stacked along `out`, as a row-major
    /// `[d_in, sum(out_i)]` tensor.
    fn linear_weight(&self, names: &[(String, usize)], d_in: usize) -> Result<Tensor<2>, LmError> {
        let mut rows = Vec::new();
        let mut d_out = 0;
        for (name, out) in names {
            rows.extend(self.require(name, &[*out, d_in])?);
            d_out += out;
        }
        Ok(self.tensor2(transpose(&rows, d_out, d_in), [d_in, d_out]))
    }

    fn linear_bias(&self, names: &[(String, usize)]) -> Result<Tensor<1>, LmError> {
        let mut data = Vec::new();
        for (name, out) in names {
            data.extend(self.require(name, &[*out])?);
        }
        let n = data.len();
        Ok(Tensor::from_data(TensorData::new(data, [n]), self.device))
    }

    fn tensor2(&self, data: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(data, shape), self.device)
    }

    fn vector(&self, name: &str, n: usize) -> Result<Param<Tensor<1>>, LmError> {
        let data = self.require(name, &[n])?;
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(data, [n]), self.device)))
    }
}

/// Builds a model from HF-named tensors.
pub(crate) fn load_llama(cfg: &LlamaConfig, src: &dyn TensorSource, device: &Device) -> Result<Llama, LmError> {
    let ld = Loader { src, device };
    let (d, hd, inter) = (cfg.hidden_size, cfg.head_dim(), cfg.intermediate_size);
    let (nh, nkv) = (cfg.num_attention_heads, cfg.n_kv_heads());
    let embed = ld.require("model.embed_tokens.weight", &[cfg.vocab_size, d])?;
    let embed = Embedding {
        weight: Param::from_tensor(ld.tensor2(embed, [cfg.vocab_size, d])),
    };
    let norm_weight = ld.vector("model.norm.weight", d)?;
    let lm_head = if cfg.tie_word_embeddings {
        None
    } else {
        let head = [("lm_head.weight".to_string(), cfg.vocab_size)];
        Some(linear_from(ld.linear_weight(&head, d)?, None))
    };
    let template = skeleton(cfg, device);
    let mut norm = template.norm.clone();
    norm.weight = norm_weight;
    let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let mut block = template.blocks[0].clone();
        block.attn_norm.weight = ld.vector(&p("input_layernorm.weight"), d)?;
        block.mlp_norm.weight = ld.vector(&p("post_attention_layernorm.weight"), d)?;
        let qkv = |kind: &str| {
            vec![
                (p(&format!("self_attn.q_proj.{kind}")), nh * hd),
                (p(&format!("self_attn.k_proj.{kind}")), nkv * hd),
                (p(&format!("self_attn.v_proj.{kind}")), nkv * hd),
            ]
        };
        let bias = if cfg.attention_bias {
            Some(ld.linear_bias(&qkv("bias"))?)
        } else {
            None
        };
        block.attn.qkv = linear_from(ld.linear_weight(&qkv("weight"), d)?, bias);
        block.attn.o_proj = linear_from(ld.linear_weight(&[(p("self_attn.o_proj.weight"), d)], nh * hd)?, None);
        let gate_up = [(p("mlp.gate_proj.weight"), inter), (p("mlp.up_proj.weight"), inter)];
        block.mlp.gate_up = linear_from(ld.linear_weight(&gate_up, d)?, None);
        block.mlp.down = linear_from(ld.linear_weight(&[(p("mlp.down_proj.weight"), d)], inter)?, None);
        blocks.push(block);
    }
    Ok(Llama {
        embed,
        blocks,
        norm,
        lm_head,
        rope: RotaryEmbedding::new(cfg.rope_theta, hd, cfg.max_position_embeddings, device),
        config: cfg.clone(),
        packed: Default::default(),
    })
}

/// Loads a model from a directory with `config.json` and safetensors.
pub fn load_safetensors_dir(dir: &Path, device: &Device) -> Result<Llama, LmError> {
    let cfg = LlamaConfig::from_json_file(&dir.join("config.json"))?;
    let src = SafetensorsSource::open_dir(dir)?;
    load_llama(&cfg, &src, device)
}

/// Loads a model from a `.gguf` file or a directory with `config.json`
/// and safetensors (a retort checkpoint or an HF model directory).
pub fn load_path(path: &Path, device: &Device) -> Result<Llama, LmError> {
    if path.is_dir() {
        if !path.join("config.json").exists() {
            return Err(LmError::NotAModel { path: path.to_path_buf() });
        }
        return load_safetensors_dir(path, device);
    }
    let file = GgufFile::open(path)?;
    load_gguf(&file, device)
}

/// A one-block, one-token model of `cfg`'s shape: the loaders take its block
/// structure and replace every parameter, so it is kept as small as possible.
pub(crate) fn skeleton(cfg: &LlamaConfig, device: &Device) -> Llama {
    LlamaConfig {
        num_hidden_layers: 1,
        vocab_size: 1,
        max_position_embeddings: 1,
        tie_word_embeddings: true,
        ..cfg.clone()
    }
    .init(device)
}

fn to_vec(t: Tensor<2>) -> (Vec<f32>, [usize; 2]) {
    let dims = t.dims();
    let data = t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 tensor");
    (data, dims)
}

/// The model's tensors under HF names, `[out, in]` row-major f32.
pub fn hf_tensors(model: &Llama) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let cfg = model.config();
    let (hd, nh, nkv, inter) = (cfg.head_dim(), cfg.num_attention_heads, cfg.n_kv_heads(), cfg.intermediate_size);
    let mut out = Vec::new();
    let vec1 = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 tensor");
    // Split a `[d_in, sum(out)]` weight back into HF `[out_i, d_in]` pieces.
    let split = |w: Tensor<2>, names: &[(String, usize)], out: &mut Vec<_>| {
        let (data, [d_in, d_out]) = to_vec(w);
        let t = transpose(&data, d_in, d_out);
        let mut row = 0;
        for (name, n) in names {
            out.push((name.clone(), vec![*n, d_in], t[row * d_in..(row + n) * d_in].to_vec()));
            row += n;
        }
    };
    let (embed, shape) = to_vec(model.embed.weight.val());
    out.push(("model.embed_tokens.weight".to_string(), shape.to_vec(), embed));
    for (i, b) in model.blocks.iter().enumerate() {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        out.push((p("input_layernorm.weight"), vec![cfg.hidden_size], vec1(b.attn_norm.weight.val())));
        let names = |kind: &str| {
            vec![
                (p(&format!("self_attn.q_proj.{kind}")), nh * hd),
                (p(&format!("self_attn.k_proj.{kind}")), nkv * hd),
                (p(&format!("self_attn.v_proj.{kind}")), nkv * hd),
            ]
        };
        split(b.attn.qkv.weight.val(), &names("weight"), &mut out);
        if let Some(bias) = &b.attn.qkv.bias {
            let data = vec1(bias.val());
            let mut at = 0;
            for (name, n) in names("bias") {
                out.push((name, vec![n], data[at..at + n].to_vec()));
                at += n;
            }
        }
        split(b.attn.o_proj.weight.val(), &[(p("self_attn.o_proj.weight"), cfg.hidden_size)], &mut out);
        out.push((p("post_attention_layernorm.weight"), vec![cfg.hidden_size], vec1(b.mlp_norm.weight.val())));
        split(
            b.mlp.gate_up.weight.val(),
            &[(p("mlp.gate_proj.weight"), inter), (p("mlp.up_proj.weight"), inter)],
            &mut out,
        );
        split(b.mlp.down.weight.val(), &[(p("mlp.down_proj.weight"), cfg.hidden_size)], &mut out);
    }
    out.push(("model.norm.weight".to_string(), vec![cfg.hidden_size], vec1(model.norm.weight.val())));
    if let Some(head) = &model.lm_head {
        split(head.weight.val(), &[("lm_head.weight".to_string(), cfg.vocab_size)], &mut out);
    }
    out
}

/// Writes `config.json` and `model.safetensors` (f32, HF names) into `dir`.
pub fn save_safetensors_dir(model: &Llama, dir: &Path) -> Result<(), LmError> {
    std::fs::create_dir_all(dir).map_err(|e| LmError::io(dir, e))?;
    model.config().to_json_file(&dir.join("config.json"))?;
    let tensors = hf_tensors(model);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, data)| (name, shape, data.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, data)| {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data).expect("consistent view");
            (name.clone(), view)
        })
        .collect();
    let path = dir.join("model.safetensors");
    let metadata = Some(std::collections::HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize_to_file(views, metadata, &path).map_err(|e| LmError::Safetensors {
        path: path.clone(),
        what: e.to_string(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
