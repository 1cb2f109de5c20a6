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
use crate::packed::{PackedBlock, PackedModel};

mod ragged;

use crate::threads::StepThreads;

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
    /// Which pool runs this batch's decode steps ([`crate::threads`]).
    threads: StepThreads,
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
            threads: StepThreads::default(),
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

    /// Copies of sequence `row`'s keys and values at slots `from..self.len`,
    /// per layer `[kv_heads, len - from, head_dim]` (see [`crate::kv_state`]).
    pub fn row_kv(&self, row: usize, from: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let (hd, cap) = (self.head_dim, self.capacity);
        let copy = |t: &Vec<f32>| -> Vec<f32> {
            (0..self.kv_heads)
                .flat_map(|g| {
                    let base = (row * self.kv_heads + g) * cap;
                    t[(base + from) * hd..(base + self.len) * hd].iter().copied()
                })
                .collect()
        };
        (self.k.iter().map(copy).collect(), self.v.iter().map(copy).collect())
    }

    /// Writes `n` positions of `keys`/`values` (per layer `[kv_heads, len,
    /// head_dim]`, their first `n` positions) into sequence `row` at slots
    /// `at..at + n`. The cache's length is the caller's to set.
    pub fn write_row(&mut self, row: usize, at: usize, n: usize, keys: &[Vec<f32>], values: &[Vec<f32>]) {
        let (hd, cap) = (self.head_dim, self.capacity);
        assert!(at + n <= cap, "KV cache full");
        for (dst, src) in self.k.iter_mut().zip(keys).chain(self.v.iter_mut().zip(values)) {
            let len = src.len() / (self.kv_heads * hd);
            for g in 0..self.kv_heads {
                let d = ((row * self.kv_heads + g) * cap + at) * hd;
                let s = g * len * hd;
                dst[d..d + n * hd].copy_from_slice(&src[s..s + n * hd]);
            }
        }
    }

    /// Adds `n` empty sequences after the others.
    pub fn grow(&mut self, n: usize) {
        let per_seq = self.kv_heads * self.capacity * self.head_dim;
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            t.resize(t.len() + n * per_seq, 0.0);
        }
        self.batch += n;
    }

    /// Moves every sequence's filled slots: slot `s` becomes `s - drop +
    /// add` (`drop` at most every sequence's left padding, so only padding
    /// is dropped). Keys carry their RoPE positions, so they move unchanged;
    /// a caller shifts its left paddings by the same amount.
    pub fn rebase(&mut self, drop: usize, add: usize) {
        let (hd, cap, len) = (self.head_dim, self.capacity, self.len);
        assert!(drop <= len && len - drop + add <= cap, "KV cache full");
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            for base in (0..self.batch * self.kv_heads).map(|r| r * cap * hd) {
                t.copy_within(base + drop * hd..base + len * hd, base + add * hd);
            }
        }
        self.len = len - drop + add;
    }

    /// Sets how many slots are filled (after [`HostCache::write_row`]).
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity, "KV cache full");
        self.len = len;
    }
}

/// Most tokens of a prefill that runs on rayon's pool ([`PackedModel::forward`]).
const POOL_PREFILL_TOKENS: usize = 1024;

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
    /// appending their keys and values to `cache`; returns logits. A decode
    /// step (`seq` 1) runs on the pool the cache's [`StepThreads`] picks.
    pub(crate) fn forward(
        &self,
        tokens: &[u32],
        seq: usize,
        left_pad: &[usize],
        cache: &mut HostCache,
        logits: Logits,
    ) -> Vec<f32> {
        if seq != 1 {
            // A short prefill runs on rayon's pool too, for the same reason as
            // a decode step (`crate::threads::on_pool`): a 200-token prompt
            // prefilled 1.23× faster there. A long one does not: 16 such
            // prompts at once were 8% slower on the pool (BENCHMARKS.md,
            // "8-bit activations and steps on rayon's pool").
            if tokens.len() <= POOL_PREFILL_TOKENS {
                return crate::threads::on_pool(|| self.forward_here(tokens, seq, left_pad, cache, logits));
            }
            return self.forward_here(tokens, seq, left_pad, cache, logits);
        }
        let mut threads = std::mem::take(&mut cache.threads);
        let out = threads.run(left_pad.len(), || self.forward_here(tokens, seq, left_pad, cache, logits));
        cache.threads = threads;
        out
    }

    /// [`PackedModel::forward`] on the current rayon pool.
    fn forward_here(
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
        let positions: Vec<usize> =
            left_pad.iter().flat_map(|&pad| (offset..offset + seq).map(move |p| p.saturating_sub(pad))).collect();
        let mut x = vec![0f32; batch * seq * d];
        for (row, &t) in x.chunks_mut(d).zip(tokens) {
            self.embed.dequantize_row(t as usize, row);
        }
        for (l, block) in self.blocks.iter().enumerate() {
            let h = rms_norm(&x, &block.attn_norm, cfg.rms_norm_eps);
            let att = self.attention(block, &h, &positions, left_pad, seq, cache, l);
            add_assign(&mut x, &self.product(&block.o, &att, batch * seq));
            let h = rms_norm(&x, &block.mlp_norm, cfg.rms_norm_eps);
            let gate_up = self.product(&block.gate_up, &h, batch * seq);
            let act = swiglu(&gate_up, cfg.intermediate_size);
            add_assign(&mut x, &self.product(&block.down, &act, batch * seq));
        }
        cache.len += seq;
        let rows: Vec<usize> = match logits {
            Logits::Last => (0..batch).map(|b| b * seq + seq - 1).collect(),
            Logits::From(from) => (from..seq).collect(),
            Logits::None => return Vec::new(),
        };
        let last: Vec<f32> = rows.iter().flat_map(|&r| x[r * d..(r + 1) * d].iter().copied()).collect();
        let h = rms_norm(&last, &self.norm, cfg.rms_norm_eps);
        self.product(self.head(), &h, rows.len())
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
        let mut qkv = self.product(&block.qkv, h, batch * seq);
        self.bias_and_rope(block, &mut qkv, positions);
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
        let mut out = vec![0f32; batch * nh * seq * hd];
        if seq == 1 {
            // Decoding: one task per (sequence, kv head) attends its query
            // heads together, reading each cached key and value once.
            out.par_chunks_mut(groups * hd).enumerate().for_each(|(task, out)| {
                let (b, kv) = (task / nkv, task % nkv);
                let base = (b * nkv + kv) * cap * hd;
                let q = &qkv[b * width + kv * groups * hd..][..groups * hd];
                let first = if offset < left_pad[b] { offset } else { left_pad[b] };
                let keys = &kc[base + first * hd..base + (offset + 1) * hd];
                let values = &vc[base + first * hd..base + (offset + 1) * hd];
                attend(q, keys, values, hd, scale, &mut Vec::new(), out);
            });
            return out;
        }
        // Prefill: one task per (sequence, query head): [batch * heads][seq][hd],
        // each two gemms over the sequence's visible keys.
        out.par_chunks_mut(seq * hd).enumerate().for_each(|(task, out)| {
            let (b, head) = (task / nh, task % nh);
            let base = (b * nkv + head / groups) * cap * hd;
            let q = &qkv[b * seq * width + head * hd..];
            prefill_head(
                q,
                width,
                &kc[base..base + cap * hd],
                &vc[base..base + cap * hd],
                hd,
                offset,
                left_pad[b],
                scale,
                out,
            );
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

    /// Adds the QKV bias (Qwen2) to each row of a block's `[rows, (nh + 2 nkv)
    /// · hd]` projection and rotates its query and key heads to the row's
    /// position.
    pub(crate) fn bias_and_rope(&self, block: &PackedBlock, qkv: &mut [f32], positions: &[usize]) {
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.n_kv_heads(), cfg.head_dim());
        let width = (nh + 2 * nkv) * hd;
        let rotate = |row: &mut [f32], &p: &usize| {
            if let Some(bias) = &block.qkv_bias {
                row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
            }
            for head in row[..(nh + nkv) * hd].chunks_exact_mut(hd) {
                self.rope(head, p);
            }
        };
        if qkv.len() < PAR_MIN {
            qkv.chunks_mut(width).zip(positions).for_each(|(row, p)| rotate(row, p));
        } else {
            qkv.par_chunks_mut(width).zip(positions).for_each(|(row, p)| rotate(row, p));
        }
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

/// Causal attention of one query head over a prefill chunk: `seq = out.len()
/// / hd` queries at positions `offset..offset + seq` (row `s` of `q` at
/// `q[s * q_stride..][..hd]`), keys and values of positions `0..offset + seq`
/// in `keys`/`values` (`[capacity, hd]`), the first `pad` positions padding.
///
/// Scores and the weighted sum of values are two gemms (the causal mask zeroes
/// the weights of later keys), which on a 200-token prompt is several times
/// faster than attending query by query. A padding query attends to itself
/// only, as in the burn model (its output is never read).
#[expect(clippy::too_many_arguments, reason = "one head's inputs")]
fn prefill_head(
    q: &[f32],
    q_stride: usize,
    keys: &[f32],
    values: &[f32],
    hd: usize,
    offset: usize,
    pad: usize,
    scale: f32,
    out: &mut [f32],
) {
    let seq = out.len() / hd;
    // Queries before `s0` are padding; visible keys are positions `pad..`.
    let s0 = pad.saturating_sub(offset).min(seq);
    for s in 0..s0 {
        let p = offset + s;
        out[s * hd..(s + 1) * hd].copy_from_slice(&values[p * hd..(p + 1) * hd]);
    }
    let (m, n) = (seq - s0, offset + seq - pad.min(offset + seq));
    if m == 0 {
        return;
    }
    let (q, keys, values) = (&q[s0 * q_stride..], &keys[pad * hd..], &values[pad * hd..]);
    let mut scores = vec![0f32; m * n];
    // SAFETY: scores is [m, n] row-major; q rows are hd values q_stride
    // apart (m rows are in bounds: the caller's qkv holds seq rows); keys is
    // [n, hd] row-major, read as its transpose [hd, n].
    unsafe {
        gemm::gemm(
            m,
            n,
            hd,
            scores.as_mut_ptr(),
            1,
            n as isize,
            false,
            q.as_ptr(),
            1,
            q_stride as isize,
            keys.as_ptr(),
            hd as isize,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    for (r, row) in scores.chunks_exact_mut(n).enumerate() {
        // Query `s0 + r` sees keys `pad..=offset + s0 + r`: the first `visible`.
        let visible = offset + s0 + r + 1 - pad;
        let (seen, later) = row.split_at_mut(visible);
        let max = seen.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut sum = 0f32;
        for x in seen.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let inv = 1.0 / sum;
        seen.iter_mut().for_each(|x| *x *= inv);
        later.fill(0.0);
    }
    // SAFETY: out rows s0.. are [m, hd] row-major; scores is [m, n]; values
    // is [n, hd] row-major (n rows in bounds: positions pad..offset + seq).
    unsafe {
        gemm::gemm(
            m,
            hd,
            n,
            out[s0 * hd..].as_mut_ptr(),
            1,
            hd as isize,
            false,
            scores.as_ptr(),
            1,
            n as isize,
            values.as_ptr(),
            1,
            hd as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Softmax attention of `G = q.len() / hd` queries (`[G, hd]`, sharing
/// one key/value head) over `keys`/`values` (`[n, hd]` each), written to
/// `out` (`[G, hd]`).
fn attend(q: &[f32], keys: &[f32], values: &[f32], hd: usize, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    if q.len() / hd > MAX_GROUPS {
        for (q, out) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)) {
            attend(q, keys, values, hd, scale, scores, out);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available (checked above).
        return unsafe { attend_avx512(q, keys, values, hd, scale, scores, out) };
    }
    attend_body(q, keys, values, hd, scale, scores, out)
}

/// Most query heads per key/value head attended together.
const MAX_GROUPS: usize = 16;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_avx512(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    hd: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    attend_body(q, keys, values, hd, scale, scores, out)
}

/// Plain loops (no closures), so the AVX-512 wrapper vectorizes them.
#[inline(always)]
fn attend_body(q: &[f32], keys: &[f32], values: &[f32], hd: usize, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    let groups = q.len() / hd;
    let n = keys.len() / hd;
    // scores: [n, groups]
    scores.clear();
    scores.resize(n * groups, 0.0);
    let mut max = [f32::NEG_INFINITY; MAX_GROUPS];
    for (j, k) in keys.chunks_exact(hd).enumerate() {
        for (g, qg) in q.chunks_exact(hd).enumerate() {
            let sc = dot(qg, k) * scale;
            max[g] = if sc > max[g] { sc } else { max[g] };
            scores[j * groups + g] = sc;
        }
    }
    let mut sum = [0f32; MAX_GROUPS];
    for row in scores.chunks_exact_mut(groups) {
        for (g, sc) in row.iter_mut().enumerate() {
            *sc = (*sc - max[g]).exp();
            sum[g] += *sc;
        }
    }
    out.fill(0.0);
    for (w, v) in scores.chunks_exact(groups).zip(values.chunks_exact(hd)) {
        for (o, &w) in out.chunks_exact_mut(hd).zip(w) {
            for (o, &x) in o.iter_mut().zip(v) {
                *o += w * x;
            }
        }
    }
    for (o, &sum) in out.chunks_exact_mut(hd).zip(&sum) {
        let inv = 1.0 / sum;
        for o in o.iter_mut() {
            *o *= inv;
        }
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

/// Below this many elements, element-wise work runs on the calling thread:
/// handing it to rayon's pool costs more than it saves.
const PAR_MIN: usize = 1 << 15;

/// Applies `f` to each `(out row, in row)` pair, in parallel for big inputs.
fn rows_zip<F>(out: &mut [f32], out_w: usize, inp: &[f32], in_w: usize, f: F)
where
    F: Fn(&mut [f32], &[f32]) + Sync + Send,
{
    if out.len() + inp.len() < PAR_MIN {
        out.chunks_mut(out_w).zip(inp.chunks(in_w)).for_each(|(o, i)| f(o, i));
    } else {
        out.par_chunks_mut(out_w).zip(inp.par_chunks(in_w)).for_each(|(o, i)| f(o, i));
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    // `y` is either as long as `x` or one row broadcast over every row.
    let w = y.len().min(x.len()).max(1);
    if y.len() == x.len() {
        rows_zip(x, 4096, y, 4096, |x, y| x.iter_mut().zip(y).for_each(|(x, y)| *x += y));
    } else {
        x.chunks_exact_mut(w).for_each(|row| row.iter_mut().zip(y).for_each(|(x, y)| *x += y));
    }
}

/// `weight * x * rsqrt(mean(x²) + eps)` per row, as transformers computes it.
fn rms_norm(x: &[f32], weight: &[f32], eps: f64) -> Vec<f32> {
    let d = weight.len();
    let mut out = vec![0f32; x.len()];
    rows_zip(&mut out, d, x, d, |o, x| {
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
    rows_zip(&mut out, inter, gate_up, 2 * inter, |o, gu| {
        let (g, u) = gu.split_at(inter);
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = g / (1.0 + (-g).exp()) * u;
        }
    });
    out
}

#[cfg(test)]
mod prefill_tests {
    /// A prefill chunk's attention for its last `m` queries alone gives the
    /// bits of the whole chunk's wherever `crate::joint` counts on it
    /// (shared prompt prefixes): the premise of its kernel rule.
    #[test]
    fn a_suffix_of_queries_attends_as_in_the_whole_chunk_where_the_kernels_agree() {
        let mut seed = 1u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let mut checked = 0;
        for hd in [16usize, 64] {
            for total in [25usize, 59, 110] {
                let width = 3 * hd;
                let q: Vec<f32> = (0..total * width).map(|_| rnd()).collect();
                let keys: Vec<f32> = (0..total * hd).map(|_| rnd()).collect();
                let values: Vec<f32> = (0..total * hd).map(|_| rnd()).collect();
                for pad in [0usize, 3] {
                    let mut full = vec![0f32; total * hd];
                    super::prefill_head(&q, width, &keys, &values, hd, 0, pad, 0.25, &mut full);
                    for m in 1..=total - pad {
                        if !crate::joint::same_attention_kernels(m, total - pad, total - pad) {
                            continue;
                        }
                        let off = total - m;
                        let mut part = vec![0f32; m * hd];
                        super::prefill_head(&q[off * width..], width, &keys, &values, hd, off, pad, 0.25, &mut part);
                        assert!(part[..] == full[off * hd..], "hd {hd}, {total} positions, pad {pad}: the last {m} queries differ");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100);
    }
}
