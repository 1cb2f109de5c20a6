//! GGUF files as a weight source: llama.cpp's tensor names, its Q/K row
//! permutation undone, and the packed (block-format) model for CPU
//! inference with lazy f32 parameters.

use std::path::Path;
use std::sync::Arc;

use burn::module::Param;
use burn::nn::Embedding;
use burn::tensor::{Device, Tensor, TensorData};

use super::{load_llama, transpose, ShapedData, TensorSource};
use crate::config::LlamaConfig;
use crate::error::LmError;
use crate::gguf::GgufFile;
use crate::model::{Llama, RotaryEmbedding};
use crate::packed::{PackedBlock, PackedModel};
use crate::qmatmul::{self, QMatrix};

/// The GGUF name of an HF tensor name.
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    let global = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(g) = global {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let short = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{kind}"))
}

/// Undoes llama.cpp's `permute(w, n_head)` (reading a GGUF). Works for
/// weights (`cols` = input width) and biases (`cols` = 1).
pub(crate) fn unpermute_rows(data: &[f32], n_head: usize, cols: usize) -> Vec<f32> {
    reorder_rows(data, n_head, cols, true)
}

/// llama.cpp's `permute(w, n_head)` (writing a GGUF): the inverse of
/// [`unpermute_rows`].
pub(crate) fn permute_rows(data: &[f32], n_head: usize, cols: usize) -> Vec<f32> {
    reorder_rows(data, n_head, cols, false)
}

/// llama.cpp's `llama` converter interleaves each head's Q/K rows: HF row
/// `j * head_dim / 2 + i` is GGUF row `2i + j`. `to_hf` moves rows from the
/// GGUF order to HF's, otherwise the other way.
fn reorder_rows(data: &[f32], n_head: usize, cols: usize, to_hf: bool) -> Vec<f32> {
    let rows = data.len() / cols;
    let hd = rows / n_head;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let gguf = (h * hd + 2 * i + j) * cols;
                let hf = (h * hd + j * hd / 2 + i) * cols;
                let (src, dst) = if to_hf { (gguf, hf) } else { (hf, gguf) };
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

/// The head count of llama.cpp's Q/K row permutation for a GGUF tensor,
/// or `None` if it is not permuted. Only the `llama` converter permutes;
/// qwen2 uses NeoX RoPE on unpermuted rows.
fn permuted_heads(file: &GgufFile, cfg: &LlamaConfig, gguf_name: &str) -> Option<usize> {
    match (file.get_str("general.architecture"), gguf_name.rsplit('.').nth(1)) {
        (Some("llama"), Some("attn_q")) => Some(cfg.num_attention_heads),
        (Some("llama"), Some("attn_k")) => Some(cfg.n_kv_heads()),
        _ => None,
    }
}

/// Row order undoing the permutation: HF row `h*hd + j*hd/2 + i` is GGUF
/// row `h*hd + 2i + j`.
fn unpermute_order(n_head: usize, rows: usize) -> Vec<usize> {
    let hd = rows / n_head;
    let mut order = Vec::with_capacity(rows);
    for h in 0..n_head {
        for j in 0..2 {
            order.extend((0..hd / 2).map(|i| h * hd + 2 * i + j));
        }
    }
    order
}

/// A GGUF model's weights in block format for CPU inference ([`PackedModel`]);
/// `None` when a linear weight's type has no kernel (e.g. F16 or K-quants)
/// or q/k/v (gate/up) types differ.
pub fn pack_gguf(file: &GgufFile, cfg: &LlamaConfig) -> Result<Option<PackedModel>, LmError> {
    let src = GgufSource { file, config: cfg };
    let matrix = |hf: &str| -> Result<Option<QMatrix>, LmError> {
        let gname = gguf_name(hf).expect("known name");
        let Some(info) = file.tensor_info(&gname) else {
            return Err(LmError::MissingTensor {
                path: file.path().to_path_buf(),
                name: gname,
            });
        };
        if !qmatmul::supported(info.dtype) || info.dims.len() != 2 {
            return Ok(None);
        }
        let (_, bytes) = file.tensor_bytes(&gname)?;
        let [rows, cols] = [info.dims[1] as usize, info.dims[0] as usize];
        let q = QMatrix::new(info.dtype, rows, cols, bytes);
        Ok(Some(match permuted_heads(file, cfg, &gname) {
            Some(n_head) => q.permute_rows(&unpermute_order(n_head, rows)),
            None => q,
        }))
    };
    let stack = |names: &[String]| -> Result<Option<QMatrix>, LmError> {
        let mut parts = Vec::new();
        for n in names {
            match matrix(n)? {
                Some(q) => parts.push(q),
                None => return Ok(None),
            }
        }
        let same = parts.windows(2).all(|w| w[0].dtype() == w[1].dtype());
        Ok(same.then(|| QMatrix::vstack(&parts)))
    };
    let vector = |name: &str, n: usize| -> Result<Vec<f32>, LmError> {
        match src.get(name)? {
            Some((shape, data)) if shape == [n] => Ok(data),
            Some((found, _)) => Err(LmError::ShapeMismatch {
                path: file.path().to_path_buf(),
                name: name.to_string(),
                found,
                expected: vec![n],
            }),
            None => Err(LmError::MissingTensor {
                path: file.path().to_path_buf(),
                name: name.to_string(),
            }),
        }
    };
    let (d, hd) = (cfg.hidden_size, cfg.head_dim());
    let (nh, nkv) = (cfg.num_attention_heads, cfg.n_kv_heads());
    let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let qkv = stack(&[p("self_attn.q_proj.weight"), p("self_attn.k_proj.weight"), p("self_attn.v_proj.weight")])?;
        let gate_up = stack(&[p("mlp.gate_proj.weight"), p("mlp.up_proj.weight")])?;
        let (o, down) = (matrix(&p("self_attn.o_proj.weight"))?, matrix(&p("mlp.down_proj.weight"))?);
        let (Some(qkv), Some(o), Some(gate_up), Some(down)) = (qkv, o, gate_up, down) else {
            return Ok(None);
        };
        let qkv_bias = if cfg.attention_bias {
            let mut b = vector(&p("self_attn.q_proj.bias"), nh * hd)?;
            b.extend(vector(&p("self_attn.k_proj.bias"), nkv * hd)?);
            b.extend(vector(&p("self_attn.v_proj.bias"), nkv * hd)?);
            Some(b)
        } else {
            None
        };
        blocks.push(PackedBlock {
            attn_norm: vector(&p("input_layernorm.weight"), d)?,
            qkv,
            qkv_bias,
            o,
            mlp_norm: vector(&p("post_attention_layernorm.weight"), d)?,
            gate_up,
            down,
        });
    }
    let Some(embed) = matrix("model.embed_tokens.weight")? else {
        return Ok(None);
    };
    let head = if cfg.tie_word_embeddings {
        None
    } else {
        match matrix("lm_head.weight")? {
            Some(h) => Some(h),
            None => return Ok(None),
        }
    };
    let (rope_cos, rope_sin) = crate::model::rope_tables(cfg.rope_theta, hd, cfg.max_position_embeddings);
    Ok(Some(PackedModel {
        cfg: cfg.clone(),
        embed,
        head,
        blocks,
        norm: vector("model.norm.weight", d)?,
        rope_cos,
        rope_sin,
        q8_activations: false,
    }))
}

/// A [`Llama`] over packed weights: the linear weights and the embedding
/// are lazy parameters, dequantized from the packed blocks only if
/// something reads them (training, saving, a burn forward pass with many
/// rows), so a model used for inference holds the quantized weights only.
fn llama_from_packed(packed: PackedModel, device: &Device) -> Llama {
    let packed = Arc::new(packed);
    let cfg = packed.cfg.clone();
    let vector = |v: &[f32]| Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device));
    // `pick` finds the matrix in the packed model; `transposed` stores it `[in, out]` as burn's Linear does.
    let lazy = |pick: fn(&PackedModel, usize) -> &QMatrix, layer: usize, transposed: bool| {
        let q = pick(&packed, layer);
        let (rows, cols) = (q.rows(), q.cols());
        let shape = if transposed { [cols, rows] } else { [rows, cols] };
        let packed = Arc::clone(&packed);
        Param::uninitialized(
            burn::module::ParamId::new(),
            move |device: &Device, require_grad: bool| {
                let w = pick(&packed, layer).dequantize();
                let w = if transposed { transpose(&w, rows, cols) } else { w };
                let t = Tensor::<2>::from_data(TensorData::new(w, shape), device);
                if require_grad { t.require_grad() } else { t }
            },
            device.clone(),
            true,
            shape.into(),
        )
    };
    let template = super::skeleton(&cfg, device);
    let blocks = packed
        .blocks
        .iter()
        .enumerate()
        .map(|(i, pb)| {
            let mut b = template.blocks[0].clone();
            b.attn_norm.weight = vector(&pb.attn_norm);
            b.mlp_norm.weight = vector(&pb.mlp_norm);
            b.attn.qkv.weight = lazy(|p, i| &p.blocks[i].qkv, i, true);
            b.attn.qkv.bias = pb.qkv_bias.as_deref().map(vector);
            b.attn.o_proj.weight = lazy(|p, i| &p.blocks[i].o, i, true);
            b.mlp.gate_up.weight = lazy(|p, i| &p.blocks[i].gate_up, i, true);
            b.mlp.down.weight = lazy(|p, i| &p.blocks[i].down, i, true);
            b
        })
        .collect();
    let mut norm = template.norm.clone();
    norm.weight = vector(&packed.norm);
    Llama {
        embed: Embedding {
            weight: lazy(|p, _| &p.embed, 0, false),
        },
        blocks,
        norm,
        lm_head: packed.head.as_ref().map(|_| linear_from_param(lazy(|p, _| p.head(), 0, true))),
        rope: RotaryEmbedding::new(cfg.rope_theta, cfg.head_dim(), cfg.max_position_embeddings, device),
        config: cfg,
        packed: crate::packed::PackedSlot(Some(packed)),
    }
}

fn linear_from_param(weight: Param<Tensor<2>>) -> burn::nn::Linear {
    burn::nn::Linear { weight, bias: None }
}

/// A GGUF file as a [`TensorSource`].
pub(crate) struct GgufSource<'a> {
    pub file: &'a GgufFile,
    pub config: &'a LlamaConfig,
}

impl TensorSource for GgufSource<'_> {
    fn path(&self) -> &Path {
        self.file.path()
    }

    fn get(&self, name: &str) -> Result<Option<ShapedData>, LmError> {
        let Some(gname) = gguf_name(name) else {
            return Ok(None);
        };
        if self.file.tensor_info(&gname).is_none() {
            return Ok(None);
        }
        let (shape, data) = self.file.tensor_f32(&gname)?;
        Ok(Some(match permuted_heads(self.file, self.config, &gname) {
            Some(n_head) => {
                let cols = if shape.len() == 2 { shape[1] } else { 1 };
                (shape, unpermute_rows(&data, n_head, cols))
            }
            None => (shape, data),
        }))
    }
}

/// Loads a model from a GGUF file. On a CPU device whose quantized types
/// have kernels, the weights stay packed ([`llama_from_packed`]: f32 copies
/// only on demand) and inference runs on them; otherwise they are
/// dequantized to f32 parameters.
pub fn load_gguf(file: &GgufFile, device: &Device) -> Result<Llama, LmError> {
    let cfg = LlamaConfig::from_gguf(file)?;
    if crate::device::is_host(device) {
        if let Some(packed) = pack_gguf(file, &cfg)? {
            return Ok(llama_from_packed(packed, device));
        }
    }
    load_llama(&cfg, &GgufSource { file, config: &cfg }, device)
}

