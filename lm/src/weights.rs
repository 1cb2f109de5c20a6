//! Weights in and out: GGUF and HF safetensors → [`Llama`], and a
//! [`Llama`] → `model.safetensors` with HF tensor names (f32).
//!
//! Tensors are fetched by their HF names (`model.layers.0.self_attn.q_proj.weight`,
//! `[out, in]` row-major); a GGUF source maps them to llama.cpp's names
//! (`blk.0.attn_q.weight`) and undoes the converter's Q/K row permutation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Param;
use burn::nn::Embedding;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::config::LlamaConfig;
use crate::error::LmError;
use crate::gguf::GgufFile;
use crate::model::{linear_from, Llama, RotaryEmbedding};
use crate::qmatmul::{self, PackedBlock, PackedModel, QMatrix};

/// A tensor's row-major shape and f32 values.
pub(crate) type ShapedData = (Vec<usize>, Vec<f32>);

/// f32 tensors by HF name, with row-major shapes.
pub(crate) trait TensorSource {
    /// The file named in errors.
    fn path(&self) -> &Path;
    /// The tensor, or `None` if absent.
    fn get(&self, name: &str) -> Result<Option<ShapedData>, LmError>;
}

/// The GGUF name of an HF tensor name.
fn gguf_name(hf: &str) -> Option<String> {
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

/// Undoes llama.cpp's `permute(w, n_head)`: within each head, GGUF row
/// `2i + j` is HF row `j * head_dim / 2 + i`. Works for weights
/// (`cols` = input width) and biases (`cols` = 1).
pub(crate) fn unpermute_rows(data: &[f32], n_head: usize, cols: usize) -> Vec<f32> {
    let rows = data.len() / cols;
    let hd = rows / n_head;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = (h * hd + 2 * i + j) * cols;
                let dst = (h * hd + j * hd / 2 + i) * cols;
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
    let template = LlamaConfig {
        num_hidden_layers: 1,
        vocab_size: 1,
        max_position_embeddings: 1,
        tie_word_embeddings: true,
        ..cfg.clone()
    }
    .init(device);
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
        packed: crate::qmatmul::PackedSlot(Some(packed)),
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

/// One or more safetensors files (e.g. shards) as a [`TensorSource`].
pub(crate) struct SafetensorsSource {
    path: PathBuf,
    files: Vec<(PathBuf, memmap2::Mmap)>,
    index: BTreeMap<String, usize>,
}

impl SafetensorsSource {
    /// Opens `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json`, in `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self, LmError> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let paths = if single.exists() {
            vec![single]
        } else if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| LmError::io(&index_path, e))?;
            let index: serde_json::Value = serde_json::from_str(&text).map_err(|source| LmError::Json {
                path: index_path.clone(),
                source,
            })?;
            let mut shards: Vec<String> = index["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(LmError::NotAModel { path: dir.to_path_buf() });
        };
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for (i, p) in paths.into_iter().enumerate() {
            let f = std::fs::File::open(&p).map_err(|e| LmError::io(&p, e))?;
            // SAFETY: read-only map of a checkpoint that is not modified while loading.
            let mmap = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| LmError::io(&p, e))?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| LmError::Safetensors {
                path: p.clone(),
                what: e.to_string(),
            })?;
            for name in st.names() {
                index.insert(name.to_string(), i);
            }
            files.push((p, mmap));
        }
        Ok(Self {
            path: dir.to_path_buf(),
            files,
            index,
        })
    }
}

impl TensorSource for SafetensorsSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn get(&self, name: &str) -> Result<Option<ShapedData>, LmError> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let (path, mmap) = &self.files[i];
        let err = |what: String| LmError::Safetensors {
            path: path.clone(),
            what,
        };
        let st = SafeTensors::deserialize(mmap).map_err(|e| err(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| err(e.to_string()))?;
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => return Err(err(format!("tensor `{name}` has unsupported dtype {other:?}"))),
        };
        Ok(Some((view.shape().to_vec(), data)))
    }
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
    // A one-block model supplies the block structure; every parameter is replaced.
    let template = LlamaConfig {
        num_hidden_layers: 1,
        vocab_size: 1,
        max_position_embeddings: 1,
        tie_word_embeddings: true,
        ..cfg.clone()
    }
    .init(device);
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
mod tests {
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
    fn write_as_gguf(model: &Llama, path: &Path, dtype: crate::GgmlType) {
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
        dev.seed(3);
        let mut cfg = LlamaConfig::preset("micro", 64).unwrap();
        cfg.num_attention_heads = 2;
        cfg.num_key_value_heads = Some(1);
        cfg.head_dim = Some(32); // blocks of 32 along every input width
        cfg.intermediate_size = 96;
        cfg.tie_word_embeddings = tied;
        cfg.attention_bias = bias;
        let model = cfg.init(&dev);
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
        assert_eq!(generate(&packed, &req), generate(&unpacked, &req));
        assert_close(&token_logprobs(&packed, &tokens, 2), &token_logprobs(&unpacked, &tokens, 2), 1e-5);
    }

    #[test]
    fn unsupported_tensor_type_names_file_and_tensor() {
        use crate::gguf::{write_gguf, MetaValue};
        let dev = crate::test_util::device();
        let model = LlamaConfig::preset("micro", 40).unwrap().init(&dev);
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
}
