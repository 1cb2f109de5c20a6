//! CPU inference over packed (GGUF block-format) weights, on host memory
//! and without burn: what [`crate::generate`] runs for a model loaded from
//! a GGUF file on the CPU.
//!
//! It computes what [`crate::model::Llama`]'s forward pass computes (same
//! operations, same order within each; tests compare the two), without a
//! tensor allocation per operation and with attention restricted to each
//! sequence's visible keys. Decoding multiplies against the quantized
//! blocks directly; prefill dequantizes weight tiles for gemm.

use rayon::prelude::*;

use crate::config::LlamaConfig;
use crate::qmatmul::{PackedBlock, PackedModel};

/// Keys and values of every layer, on the host.
///
/// Layout per layer: `[batch, kv_heads, capacity, head_dim]`.
#[derive(Debug, Clone)]
pub(crate) struct HostCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    batch: usize,
    capacity: usize,
    len: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl HostCache {
    pub fn new(cfg: &LlamaConfig, batch: usize, capacity: usize) -> Self {
        let (kv_heads, head_dim) = (cfg.n_kv_heads(), cfg.head_dim());
        let size = batch * kv_heads * capacity * head_dim;
        Self {
            k: (0..cfg.num_hidden_layers).map(|_| vec![0f32; size]).collect(),
            v: (0..cfg.num_hidden_layers).map(|_| vec![0f32; size]).collect(),
            batch,
            capacity,
            len: 0,
            kv_heads,
            head_dim,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Keeps only the sequences at `rows`, in that order.
    pub fn retain(&mut self, rows: &[usize]) {
        let per_seq = self.kv_heads * self.capacity * self.head_dim;
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            let mut kept = Vec::with_capacity(rows.len() * per_seq);
            for &r in rows {
                kept.extend_from_slice(&t[r * per_seq..(r + 1) * per_seq]);
            }
            *t = kept;
        }
        self.batch = rows.len();
    }
}

/// Which rows of the last hidden states to turn into logits.
pub(crate) enum Logits {
    /// The last position of each sequence: `[batch, vocab]`.
    Last,
    /// Positions `from..seq` of the (single) sequence: `[seq - from, vocab]`.
    From(usize),
    /// None (an empty vector): a prefill chunk that is not the last.
    None,
}

impl PackedModel {
    /// Runs `seq` new tokens per sequence (`tokens`: `[batch, seq]`
    /// row-major, left-padded by `left_pad[b]` overall) through the model,
    /// appending their keys and values to `cache`; returns logits.
    pub(crate) fn forward(
        &self,
        tokens: &[u32],
        seq: usize,
        left_pad: &[usize],
        cache: &mut HostCache,
        logits: Logits,
    ) -> Vec<f32> {
        let cfg = &self.cfg;
        let (batch, d) = (left_pad.len(), cfg.hidden_size);
        assert_eq!(tokens.len(), batch * seq);
        assert_eq!(cache.batch, batch, "cache batch size");
        assert!(cache.len + seq <= cache.capacity, "KV cache full");
        let offset = cache.len;
        let positions: Vec<usize> = left_pad
            .iter()
            .flat_map(|&pad| (offset..offset + seq).map(move |p| p.saturating_sub(pad)))
            .collect();
        let mut x = vec![0f32; batch * seq * d];
        x.par_chunks_mut(d).zip(tokens).for_each(|(row, &t)| self.embed.dequantize_rows(t as usize, row));
        for (l, block) in self.blocks.iter().enumerate() {
            let h = rms_norm(&x, &block.attn_norm, cfg.rms_norm_eps);
            let att = self.attention(block, &h, &positions, left_pad, seq, cache, l);
            add_assign(&mut x, &block.o.matmul(&att, batch * seq));
            let h = rms_norm(&x, &block.mlp_norm, cfg.rms_norm_eps);
            let gate_up = block.gate_up.matmul(&h, batch * seq);
            let act = swiglu(&gate_up, cfg.intermediate_size);
            add_assign(&mut x, &block.down.matmul(&act, batch * seq));
        }
        cache.len += seq;
        let rows: Vec<usize> = match logits {
            Logits::Last => (0..batch).map(|b| b * seq + seq - 1).collect(),
            Logits::From(from) => (from..seq).collect(),
            Logits::None => return Vec::new(),
        };
        let last: Vec<f32> = rows.iter().flat_map(|&r| x[r * d..(r + 1) * d].iter().copied()).collect();
        let h = rms_norm(&last, &self.norm, cfg.rms_norm_eps);
        self.head().matmul(&h, rows.len())
    }

    /// Self-attention of one block: projections, RoPE, cache update and
    /// attention over each sequence's visible keys. Returns `[batch * seq,
    /// heads * head_dim]`, before the output projection.
    #[expect(clippy::too_many_arguments, reason = "one block's inputs")]
    fn attention(
        &self,
        block: &PackedBlock,
        h: &[f32],
        positions: &[usize],
        left_pad: &[usize],
        seq: usize,
        cache: &mut HostCache,
        layer: usize,
    ) -> Vec<f32> {
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.n_kv_heads(), cfg.head_dim());
        let (batch, width) = (left_pad.len(), (nh + 2 * nkv) * hd);
        let mut qkv = block.qkv.matmul(h, batch * seq);
        if let Some(bias) = &block.qkv_bias {
            qkv.par_chunks_mut(width).for_each(|row| add_assign(row, bias));
        }
        qkv.par_chunks_mut(width).zip(positions).for_each(|(row, &p)| {
            for head in row[..(nh + nkv) * hd].chunks_exact_mut(hd) {
                self.rope(head, p);
            }
        });
        let (offset, cap) = (cache.len, cache.capacity);
        let (kc, vc) = (&mut cache.k[layer], &mut cache.v[layer]);
        for b in 0..batch {
            for s in 0..seq {
                let row = &qkv[(b * seq + s) * width..(b * seq + s + 1) * width];
                for g in 0..nkv {
                    let at = ((b * nkv + g) * cap + offset + s) * hd;
                    kc[at..at + hd].copy_from_slice(&row[(nh + g) * hd..(nh + g + 1) * hd]);
                    vc[at..at + hd].copy_from_slice(&row[(nh + nkv + g) * hd..(nh + nkv + g + 1) * hd]);
                }
            }
        }
        let (kc, vc) = (&*kc, &*vc);
        let groups = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        // One task per (sequence, query head): [batch * heads][seq][hd].
        let mut out = vec![0f32; batch * nh * seq * hd];
        out.par_chunks_mut(seq * hd).enumerate().for_each(|(task, out)| {
            let (b, head) = (task / nh, task % nh);
            let kv = head / groups;
            let base = (b * nkv + kv) * cap * hd;
            let mut scores = Vec::with_capacity(offset + seq);
            for s in 0..seq {
                let q = &qkv[(b * seq + s) * width + head * hd..][..hd];
                let qpos = offset + s;
                // Keys after the padding, up to the query; a padding query
                // attends to itself only (its output is never read).
                let first = if qpos < left_pad[b] { qpos } else { left_pad[b] };
                let keys = &kc[base + first * hd..base + (qpos + 1) * hd];
                let values = &vc[base + first * hd..base + (qpos + 1) * hd];
                attend(q, keys, values, scale, &mut scores, &mut out[s * hd..(s + 1) * hd]);
            }
        });
        // [batch, heads, seq, hd] -> [batch * seq, heads * hd]
        let mut att = vec![0f32; batch * seq * nh * hd];
        for b in 0..batch {
            for head in 0..nh {
                for s in 0..seq {
                    let src = ((b * nh + head) * seq + s) * hd;
                    let dst = (b * seq + s) * nh * hd + head * hd;
                    att[dst..dst + hd].copy_from_slice(&out[src..src + hd]);
                }
            }
        }
        att
    }

    /// Rotates one head vector to position `p` ("rotate_half" layout).
    fn rope(&self, x: &mut [f32], p: usize) {
        let hd = x.len();
        let half = hd / 2;
        let (cos, sin) = (&self.rope_cos[p * hd..(p + 1) * hd], &self.rope_sin[p * hd..(p + 1) * hd]);
        for i in 0..half {
            let (a, b) = (x[i], x[i + half]);
            x[i] = a * cos[i] + -b * sin[i];
            x[i + half] = b * cos[i + half] + a * sin[i + half];
        }
    }
}

/// Softmax attention of one query over `keys`/`values` (`[n, hd]` each),
/// written to `out` (`[hd]`).
fn attend(q: &[f32], keys: &[f32], values: &[f32], scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available (checked above).
        return unsafe { attend_avx512(q, keys, values, scale, scores, out) };
    }
    attend_body(q, keys, values, scale, scores, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_avx512(q: &[f32], keys: &[f32], values: &[f32], scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    attend_body(q, keys, values, scale, scores, out)
}

/// Plain loops (no closures), so the AVX-512 wrapper vectorizes them.
#[inline(always)]
fn attend_body(q: &[f32], keys: &[f32], values: &[f32], scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    let hd = q.len();
    let n = keys.len() / hd;
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for j in 0..n {
        let sc = dot(q, &keys[j * hd..(j + 1) * hd]) * scale;
        max = if sc > max { sc } else { max };
        scores.push(sc);
    }
    let mut sum = 0f32;
    for sc in scores.iter_mut() {
        *sc = (*sc - max).exp();
        sum += *sc;
    }
    out.fill(0.0);
    for (&w, v) in scores.iter().zip(values.chunks_exact(hd)) {
        for (o, &x) in out.iter_mut().zip(v) {
            *o += w * x;
        }
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// Dot product with 16 partial sums (vectorizes; fixed order).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((acc, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *acc += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    if y.len() == x.len() {
        x.par_chunks_mut(4096).zip(y.par_chunks(4096)).for_each(|(x, y)| {
            x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
        });
    } else {
        // Broadcast a row over every row of `x`.
        x.chunks_exact_mut(y.len()).for_each(|row| row.iter_mut().zip(y).for_each(|(x, y)| *x += y));
    }
}

/// `weight * x * rsqrt(mean(x²) + eps)` per row, as transformers computes it.
fn rms_norm(x: &[f32], weight: &[f32], eps: f64) -> Vec<f32> {
    let d = weight.len();
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, x)| {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = 1.0 / (ms + eps as f32).sqrt();
        for ((o, &x), &w) in o.iter_mut().zip(x).zip(weight) {
            *o = x * r * w;
        }
    });
    out
}

/// `silu(gate) * up` from fused `[rows, 2 * inter]` rows.
fn swiglu(gate_up: &[f32], inter: usize) -> Vec<f32> {
    let rows = gate_up.len() / (2 * inter);
    let mut out = vec![0f32; rows * inter];
    out.par_chunks_mut(inter).zip(gate_up.par_chunks(2 * inter)).for_each(|(o, gu)| {
        let (g, u) = gu.split_at(inter);
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = g / (1.0 + (-g).exp()) * u;
        }
    });
    out
}
