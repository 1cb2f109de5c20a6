//! Llama-family decoder (Llama, SmolLM, Qwen2, Mistral without sliding
//! windows): token embedding, pre-norm blocks of grouped-query attention
//! with RoPE and SwiGLU, final RMSNorm, tied or untied output head.
//!
//! One model serves inference (with a [`KvCache`], left-padded batches)
//! and training (no cache; the training loops move it to the autodiff
//! device). A random model comes from [`LlamaConfig::init_seeded`].
//!
//! Reference: transformers' `modeling_llama.py`; layout after candle's
//! `qwen2.rs` and burn's `llama-burn`.

mod attention;
mod block;
#[cfg(feature = "flex")]
pub(crate) mod causal;
#[cfg(feature = "flex")]
pub(crate) mod logprobs;
#[cfg(feature = "flex")]
mod rmsnorm;
#[cfg(feature = "flex")]
mod swiglu;
mod mlp;
mod norm;
mod rope;

use burn::module::{Module, Param};
use burn::nn::{Embedding, Initializer, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};

use std::sync::Arc;

use crate::config::LlamaConfig;
use crate::packed::{PackedModel, PackedSlot};
use crate::qmatmul::QMatrix;
use crate::rng::Rng;
use attention::{Attention, LayerCache};
use block::Block;
use mlp::Mlp;
use norm::RmsNorm;
pub(crate) use rope::{rope_tables, RotaryEmbedding};


/// Additive attention bias for masked positions. Every query row keeps at
/// least one visible key (a padding query sees itself), so no row is all
/// `-inf`; `exp(-inf)` is exactly 0 (and, unlike a finite underflow, takes
/// libm's fast path).
const MASKED: f32 = f32::NEG_INFINITY;

/// A Llama-family causal language model.
#[derive(Module, Debug)]
pub struct Llama {
    pub(crate) embed: Embedding,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: RmsNorm,
    /// Untied output head `[hidden, vocab]`; `None` when tied to `embed`.
    pub(crate) lm_head: Option<Linear>,
    pub(crate) rope: RotaryEmbedding,
    #[module(skip)]
    pub(crate) config: LlamaConfig,
    /// Block-format weights for fast CPU decoding (see [`Llama::set_packed`]).
    pub(crate) packed: PackedSlot,
}

/// Positions and attention bias for one forward call over a batch whose
/// sequences are left-padded.
///
/// # Shapes
/// - `positions`: `[batch, seq]` (RoPE position of each token)
/// - `bias`: `[batch or 1, 1, groups * seq, kv_len]` (`kv_len`: `seq`
///   without a cache, the cache's capacity with one)
#[derive(Debug, Clone)]
pub struct AttnLayout {
    positions: Tensor<2, Int>,
    bias: Tensor<4>,
    /// Plain causal attention without padding before any token (a
    /// [`Llama::causal_layout`]): `bias` is then only the causal mask, and
    /// fused attention may replace it.
    causal: bool,
    offset: usize,
    seq: usize,
    kv_len: usize,
}

/// Cached keys and values of every layer for a batch.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
    capacity: usize,
    batch: usize,
}

/// Standard deviation of the random weights (transformers'
/// `initializer_range` default for Llama).
const INIT_STD: f64 = 0.02;

impl LlamaConfig {
    /// A model whose parameters burn draws lazily, on first use, from its
    /// process-wide device RNG (normal, std 0.02; norms at 1; biases at 0).
    ///
    /// Meant as a skeleton whose parameters are replaced (the weight
    /// loaders): values that are never used are never drawn. For a
    /// random model use [`LlamaConfig::init_seeded`], whose values do not
    /// depend on what other threads draw from that shared RNG.
    pub fn init(&self, device: &Device) -> Llama {
        let init = Initializer::Normal {
            mean: 0.0,
            std: INIT_STD,
        };
        self.build(device, &mut |shape| init.init(shape, device))
    }

    /// A randomly initialised model whose parameters are drawn on the host
    /// from a PRNG seeded by `seed`, with the distributions of
    /// [`LlamaConfig::init`] (every linear weight and the embedding
    /// normal with mean 0 and std 0.02 as transformers' `_init_weights`;
    /// norm weights 1; biases 0).
    ///
    /// burn's own initializers draw from one process-wide RNG, lazily:
    /// with parallel pipeline stages, another thread's draws between a
    /// `device.seed(..)` and the first use of the parameters change them.
    /// Here each weight matrix has its own stream (`seed`, its index in
    /// construction order), so the same seed gives the same bytes
    /// whatever else the process does, on every backend.
    pub fn init_seeded(&self, seed: u64, device: &Device) -> Llama {
        let mut stream = 0u64;
        self.build(device, &mut |[rows, cols]| {
            stream += 1;
            let mut rng = Rng::for_item(seed, stream);
            let values = normal_f32(&mut rng, rows * cols, INIT_STD);
            Param::from_tensor(Tensor::from_data(TensorData::new(values, [rows, cols]), device))
        })
    }

    /// The model's structure with every random matrix from `draw` (called
    /// in a fixed order: embedding, then per block qkv, o, gate_up, down,
    /// then the untied head), norms at 1 and biases at 0.
    fn build(&self, device: &Device, draw: &mut dyn FnMut([usize; 2]) -> Param<Tensor<2>>) -> Llama {
        let linear = |draw: &mut dyn FnMut([usize; 2]) -> Param<Tensor<2>>, d_in: usize, d_out: usize, bias: bool| {
            Linear {
                weight: draw([d_in, d_out]),
                bias: bias.then(|| Initializer::Zeros.init([d_out], device)),
            }
        };
        let norm = || RmsNorm {
            weight: Initializer::Ones.init([self.hidden_size], device),
            eps: self.rms_norm_eps,
        };
        let (d, hd) = (self.hidden_size, self.head_dim());
        let (nh, nkv) = (self.num_attention_heads, self.n_kv_heads());
        let embed = Embedding {
            weight: draw([self.vocab_size, d]),
        };
        let blocks = (0..self.num_hidden_layers)
            .map(|_| Block {
                attn_norm: norm(),
                attn: Attention {
                    qkv: linear(draw, d, (nh + 2 * nkv) * hd, self.attention_bias),
                    o_proj: linear(draw, nh * hd, d, false),
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                },
                mlp_norm: norm(),
                mlp: Mlp {
                    gate_up: linear(draw, d, 2 * self.intermediate_size, false),
                    down: linear(draw, self.intermediate_size, d, false),
                    intermediate: self.intermediate_size,
                },
            })
            .collect();
        Llama {
            embed,
            blocks,
            norm: norm(),
            lm_head: (!self.tie_word_embeddings).then(|| linear(draw, d, self.vocab_size, false)),
            rope: RotaryEmbedding::new(self.rope_theta, hd, self.max_position_embeddings, device),
            config: self.clone(),
            packed: PackedSlot::default(),
        }
    }
}

/// `n` draws from a normal distribution with mean 0 and standard
/// deviation `std` (Box–Muller on the host: both outputs of each pair are
/// used, the uniform for the log is in `(0, 1]` so it is never `ln 0`).
fn normal_f32(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = 1.0 - rng.next_f64();
        let u2 = rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        out.push((r * c) as f32);
        out.push((r * s) as f32);
    }
    out.truncate(n);
    out
}

impl Llama {
    /// The model's config.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Attaches (or with `None` drops) block-format copies of the linear
    /// weights, used instead of f32 gemm when a forward call has at most
    /// [`PACKED_MAX_ROWS`] rows (decoding). They must equal the f32
    /// weights: burn transformations that can change parameters (optimizer
    /// steps, any `map`, `to_device`, `train`) drop them, and parameters
    /// that require gradients never take the packed path; code that
    /// changes parameters another way must drop them itself.
    pub fn set_packed(&mut self, packed: Option<PackedModel>) {
        self.packed = PackedSlot(packed.map(Arc::new));
    }

    /// Decodes on 8-bit activations with integer dot products, as
    /// llama.cpp does ([`PackedModel::set_q8_activations`]); returns false
    /// (and changes nothing) without packed weights.
    pub fn set_q8_activations(&mut self, on: bool) -> bool {
        match self.packed.0.as_mut() {
            Some(p) => {
                Arc::make_mut(p).set_q8_activations(on);
                true
            }
            None => false,
        }
    }

    /// Whether packed weights are attached.
    pub fn is_packed(&self) -> bool {
        self.packed.0.is_some()
    }

    /// The packed weights, if attached.
    pub(crate) fn packed(&self) -> Option<&PackedModel> {
        self.packed.0.as_deref()
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed.weight.val().device()
    }

    /// Layout for a fresh causal forward over unpadded sequences (training).
    pub fn causal_layout(&self, batch: usize, seq: usize) -> AttnLayout {
        let mut layout = self.layout(&[0], seq);
        let pos = layout.positions.clone();
        layout.positions = pos.expand([batch, seq]);
        layout.causal = true;
        layout
    }

    /// Layout for a forward call without a cache over a batch whose
    /// sequence `b` starts after `left_pad[b]` padding tokens. Padding is
    /// neither attended to nor counted in RoPE positions.
    pub fn layout(&self, left_pad: &[usize], seq: usize) -> AttnLayout {
        self.layout_kv(left_pad, 0, seq, seq)
    }

    /// Layout for the next `seq` tokens of each sequence in `cache` (see
    /// [`Llama::layout`] for `left_pad`). Attention runs over the cache's
    /// whole capacity with unwritten positions masked: the cache tensors
    /// stay contiguous, so they are never copied.
    pub fn cache_layout(&self, left_pad: &[usize], cache: &KvCache, seq: usize) -> AttnLayout {
        self.layout_kv(left_pad, cache.len(), seq, cache.capacity())
    }

    fn layout_kv(&self, left_pad: &[usize], offset: usize, seq: usize, kv_len: usize) -> AttnLayout {
        let batch = left_pad.len();
        let groups = self.config().num_attention_heads / self.config().n_kv_heads();
        let mut positions = Vec::with_capacity(batch * seq);
        let mut bias = Vec::with_capacity(batch * groups * seq * kv_len);
        for &pad in left_pad {
            positions.extend((offset..offset + seq).map(|p| p.saturating_sub(pad) as i32));
            for _ in 0..groups {
                for s in 0..seq {
                    let q = offset + s;
                    // A padding query (q < pad) attends to itself only: its
                    // output is never read, it just has to stay finite.
                    let visible = |j: usize| (j >= pad && j <= q) || j == q;
                    bias.extend((0..kv_len).map(|j| if visible(j) { 0.0 } else { MASKED }));
                }
            }
        }
        let device = self.device();
        AttnLayout {
            positions: Tensor::from_data(TensorData::new(positions, [batch, seq]), &device),
            bias: Tensor::from_data(TensorData::new(bias, [batch, 1, groups * seq, kv_len]), &device),
            offset,
            seq,
            kv_len,
            causal: false,
        }
    }

    /// An empty cache for `batch` sequences of up to `capacity` tokens.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache {
        let cfg = self.config();
        let shape = [batch, cfg.n_kv_heads(), capacity, cfg.head_dim()];
        let device = self.device();
        KvCache {
            layers: (0..cfg.num_hidden_layers)
                .map(|_| LayerCache {
                    k: Some(Tensor::zeros(shape, &device)),
                    v: Some(Tensor::zeros(shape, &device)),
                })
                .collect(),
            len: 0,
            capacity,
            batch,
        }
    }

    /// Hidden states after the last block (before the final norm).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, seq]`
    /// - output: `[batch, seq, hidden]`
    ///
    /// # Panics
    /// If `layout` does not match `tokens` and the cache, or the cache is full.
    pub fn forward_hidden(
        &self,
        tokens: Tensor<2, Int>,
        layout: &AttnLayout,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [batch, seq] = tokens.dims();
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let kv_len = cache.as_ref().map_or(seq, |c| c.capacity);
        assert_eq!((layout.offset, layout.seq, layout.kv_len), (offset, seq, kv_len), "layout does not match the call");
        if let Some(c) = &cache {
            assert!(offset + seq <= c.capacity, "KV cache full: {} + {seq} > {}", offset, c.capacity);
            assert_eq!(c.batch, batch, "KV cache batch size");
        }
        let rope = self.rope.at(layout.positions.clone());
        let mut x = self.embed.forward(tokens);
        for (i, block) in self.blocks.iter().enumerate() {
            let layer = cache.as_mut().map(|c| &mut c.layers[i]);
            let packed = self.packed.0.as_ref().map(|p| &p.blocks[i]);
            x = block.forward(x, &rope, layout, layer, offset, packed);
        }
        if let Some(c) = cache {
            c.len += seq;
        }
        x
    }

    /// Logits from hidden states: final norm, then the output head.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]`
    /// - output: `[batch, seq, vocab]`
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        let h = self.norm.forward(hidden);
        match &self.lm_head {
            Some(head) => apply_linear(head, h, self.packed.0.as_ref().map(|p| p.head())),
            None => match self.packed.0.as_ref() {
                Some(p) if use_packed(&h, &self.embed.weight) => packed_linear(p.head(), h, None),
                _ => linear3(h, self.embed.weight.val().transpose(), None),
            },
        }
    }

    /// Logits at every position.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, seq]`
    /// - output: `[batch, seq, vocab]`
    pub fn forward(&self, tokens: Tensor<2, Int>, layout: &AttnLayout, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.head(self.forward_hidden(tokens, layout, cache))
    }

    /// Logits at the last position only (the head runs on one row per sequence).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, seq]`
    /// - output: `[batch, vocab]`
    pub fn forward_last(&self, tokens: Tensor<2, Int>, layout: &AttnLayout, cache: Option<&mut KvCache>) -> Tensor<2> {
        let h = self.forward_hidden(tokens, layout, cache);
        let [batch, seq, _] = h.dims();
        self.head(h.narrow(1, seq - 1, 1)).reshape([batch, self.config().vocab_size])
    }
}

impl KvCache {
    /// Tokens cached so far (including left padding).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Forgets everything cached (the buffers are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps only the sequences at `rows` (in that order), e.g. to drop
    /// finished sequences from a batch.
    pub fn retain(&mut self, rows: &[usize]) {
        let Some(first) = self.layers.first().and_then(|l| l.k.as_ref()) else {
            return;
        };
        let device = first.device();
        let idx: Tensor<1, Int> = Tensor::from_data(
            TensorData::new(rows.iter().map(|&r| r as i32).collect::<Vec<_>>(), [rows.len()]),
            &device,
        );
        for layer in &mut self.layers {
            for slot in [&mut layer.k, &mut layer.v] {
                let t = slot.take().expect("cache allocated");
                *slot = Some(t.select(0, idx.clone()));
            }
        }
        self.batch = rows.len();
    }

    /// Host copies of sequence `row`'s keys and values at slots
    /// `from..self.len()`, per layer `[kv_heads, len - from, head_dim]` (see
    /// [`crate::kv_state`]).
    pub(crate) fn row_kv(&self, row: usize, from: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let copy = |t: &Option<Tensor<4>>| -> Vec<f32> {
            let t = t.as_ref().expect("cache allocated");
            let [_, h, _, d] = t.dims();
            // The slice is a view; it is read and dropped here, so the cache
            // tensor is uniquely owned again for its next in-place write.
            let row = t.clone().slice([row..row + 1, 0..h, from..self.len, 0..d]);
            row.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 cache")
        };
        let k = self.layers.iter().map(|l| copy(&l.k)).collect();
        let v = self.layers.iter().map(|l| copy(&l.v)).collect();
        (k, v)
    }

    /// Adds `n` empty sequences after the others.
    pub(crate) fn grow(&mut self, n: usize) {
        for layer in &mut self.layers {
            for slot in [&mut layer.k, &mut layer.v] {
                let full = slot.take().expect("cache allocated");
                let [_, h, cap, d] = full.dims();
                let empty = Tensor::<4>::zeros([n, h, cap, d], &full.device());
                *slot = Some(Tensor::cat(vec![full, empty], 0));
            }
        }
        self.batch += n;
    }

    /// Moves every sequence's filled slots: slot `s` becomes `s - drop +
    /// add` (see [`crate::host::HostCache::rebase`]).
    pub(crate) fn rebase(&mut self, drop: usize, add: usize) {
        let (len, cap) = (self.len, self.capacity);
        assert!(drop <= len && len - drop + add <= cap, "KV cache full");
        for layer in &mut self.layers {
            for slot in [&mut layer.k, &mut layer.v] {
                let full = slot.take().expect("cache allocated");
                let [b, h, _, d] = full.dims();
                let kept = full.clone().slice([0..b, 0..h, drop..len, 0..d]);
                let moved = Tensor::<4>::zeros([b, h, cap, d], &full.device());
                *slot = Some(moved.slice_assign([0..b, 0..h, add..add + len - drop, 0..d], kept));
            }
        }
        self.len = len - drop + add;
    }

    /// Writes `n` positions of host keys and values (per layer `[kv_heads,
    /// positions, head_dim]`, their first `n`) into sequence `row` at slots
    /// `at..at + n`.
    pub(crate) fn write_row(&mut self, row: usize, at: usize, n: usize, keys: &[Vec<f32>], values: &[Vec<f32>]) {
        assert!(at + n <= self.capacity, "KV cache full");
        for (layer, (k, v)) in self.layers.iter_mut().zip(keys.iter().zip(values)) {
            for (slot, data) in [(&mut layer.k, k), (&mut layer.v, v)] {
                let full = slot.take().expect("cache allocated");
                let [_, h, _, d] = full.dims();
                let len = data.len() / (h * d);
                let part: Vec<f32> = (0..h).flat_map(|g| data[g * len * d..][..n * d].iter().copied()).collect();
                let part = Tensor::<4>::from_data(TensorData::new(part, [1, h, n, d]), &full.device());
                *slot = Some(full.slice_assign([row..row + 1, 0..h, at..at + n, 0..d], part));
            }
        }
    }

    /// Fills slots `0..len` of every sequence from host keys and values (per
    /// layer `[batch, kv_heads, len, head_dim]`) and sets the length to `len`.
    pub(crate) fn load_prefix(&mut self, keys: Vec<Vec<f32>>, values: Vec<Vec<f32>>, len: usize) {
        assert!(len <= self.capacity, "KV cache full");
        for (layer, (k, v)) in self.layers.iter_mut().zip(keys.into_iter().zip(values)) {
            for (slot, data) in [(&mut layer.k, k), (&mut layer.v, v)] {
                let full = slot.take().expect("cache allocated");
                let [b, h, _, d] = full.dims();
                let part = Tensor::<4>::from_data(TensorData::new(data, [b, h, len, d]), &full.device());
                *slot = Some(full.slice_assign([0..b, 0..h, 0..len, 0..d], part));
            }
        }
        self.len = len;
    }
}

/// `x @ weight + bias` as one 2-D matmul over all rows: flex multiplies
/// strided (e.g. transposed) 2-D operands in place, where burn's generic
/// `linear` broadcasts a batched matmul that copies the weight first.
///
/// # Shapes
/// - `x`: `[batch, seq, d_in]`
/// - `weight`: `[d_in, d_out]` (any strides)
/// - output: `[batch, seq, d_out]`
pub(crate) fn linear3(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [batch, seq, d_in] = x.dims();
    let d_out = weight.dims()[1];
    let y = x.reshape([batch * seq, d_in]).matmul(weight);
    let y = match bias {
        Some(b) => y + b.unsqueeze::<2>(),
        None => y,
    };
    y.reshape([batch, seq, d_out])
}

/// Most rows (`batch * seq`) for which a forward call uses packed weights;
/// more rows are compute-bound and go to burn's f32 gemm. The environment
/// variable `RETORT_PACKED_MAX_ROWS` overrides it (for benchmarking).
pub const PACKED_MAX_ROWS: usize = 16;

fn packed_max_rows() -> usize {
    static ROWS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ROWS.get_or_init(|| {
        std::env::var("RETORT_PACKED_MAX_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(PACKED_MAX_ROWS)
    })
}

fn use_packed(x: &Tensor<3>, weight: &Param<Tensor<2>>) -> bool {
    let [b, s, _] = x.dims();
    // An uninitialized (lazy) weight is the packed one dequantized: never trained.
    b * s <= packed_max_rows() && (!weight.is_initialized() || !weight.val().is_require_grad())
}

/// [`linear3`] with a [`Linear`]'s parameters, or with its packed copy.
pub(crate) fn apply_linear(layer: &Linear, x: Tensor<3>, packed: Option<&QMatrix>) -> Tensor<3> {
    let bias = layer.bias.as_ref().map(|b| b.val());
    match packed {
        Some(q) if use_packed(&x, &layer.weight) => packed_linear(q, x, bias),
        _ => linear3(x, layer.weight.val(), bias),
    }
}

/// `x @ qᵀ + bias` on the host with a block-format weight.
///
/// # Shapes
/// - `x`: `[batch, seq, q.cols()]`
/// - output: `[batch, seq, q.rows()]`
fn packed_linear(q: &QMatrix, x: Tensor<3>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [batch, seq, _] = x.dims();
    let device = x.device();
    let data = x.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 activations");
    let y = q.matmul(&data, batch * seq);
    let y = Tensor::<3>::from_data(TensorData::new(y, [batch, seq, q.rows()]), &device);
    match bias {
        Some(b) => y + b.unsqueeze::<3>(),
        None => y,
    }
}

/// Builds a [`Linear`] from a row-major `[d_in, d_out]` weight.
pub(crate) fn linear_from(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
    Linear {
        weight: Param::from_tensor(weight),
        bias: bias.map(Param::from_tensor),
    }
}

#[cfg(test)]
mod tests;
