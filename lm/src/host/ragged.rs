//! Several sequences through the packed model in one pass, unpadded: what
//! scoring ([`crate::score::token_stats_many`]) runs.
//!
//! The weight products run over all the sequences' tokens at once (one
//! gemm per weight, each weight tile dequantized once for the whole batch
//! instead of once per sequence), and attention runs within each sequence.
//! No KV cache is kept and no padding position is computed. Scoring 32
//! rows of ~60 tokens one by one spent about a third of its time
//! dequantizing tiles for 60-row products; here the same tiles serve ~2,000
//! rows.
//!
//! Every product goes through gemm whatever its row count, and gemm blocks
//! the inner dimension by that dimension alone, so each token's result does
//! not depend on which other sequences share the pass: a sequence scores
//! the same bits alone or in a batch (a test pins this). With
//! [`Precision::Bf16`] the products run on bf16 operands
//! (`crate::qmatmul::bf16`), which keep that property.

use rayon::prelude::*;

use super::{add_assign, prefill_head, rms_norm, swiglu};
use crate::packed::{PackedBlock, PackedModel};
use crate::qmatmul::{Bf16Rows, QMatrix};
use crate::score::Precision;

impl PackedModel {
    /// The final-normed hidden states of every position of every sequence,
    /// `[Σ len, hidden]` in order (sequence by sequence).
    pub(crate) fn hidden_ragged(&self, seqs: &[&[u32]], precision: Precision) -> Vec<f32> {
        let cfg = &self.cfg;
        let d = cfg.hidden_size;
        let m: usize = seqs.iter().map(|s| s.len()).sum();
        let positions: Vec<usize> = seqs.iter().flat_map(|s| 0..s.len()).collect();
        let mut x = vec![0f32; m * d];
        for (row, &t) in x.chunks_mut(d).zip(seqs.iter().flat_map(|s| s.iter())) {
            self.embed.dequantize_row(t as usize, row);
        }
        let product = |w: &QMatrix, x: &[f32]| match precision {
            Precision::F32 => w.matmul_gemm(x, m),
            Precision::Bf16 => w.matmul_bf16(&Bf16Rows::new(x, m, w.cols())),
        };
        for block in &self.blocks {
            let h = rms_norm(&x, &block.attn_norm, cfg.rms_norm_eps);
            let att = self.attention_ragged(block, &h, &positions, seqs, &product);
            add_assign(&mut x, &product(&block.o, &att));
            let h = rms_norm(&x, &block.mlp_norm, cfg.rms_norm_eps);
            let gate_up = product(&block.gate_up, &h);
            let act = swiglu(&gate_up, cfg.intermediate_size);
            add_assign(&mut x, &product(&block.down, &act));
        }
        rms_norm(&x, &self.norm, cfg.rms_norm_eps)
    }

    /// Causal self-attention of one block within each sequence; returns
    /// `[Σ len, heads * head_dim]`, before the output projection.
    fn attention_ragged(
        &self,
        block: &PackedBlock,
        h: &[f32],
        positions: &[usize],
        seqs: &[&[u32]],
        product: &dyn Fn(&QMatrix, &[f32]) -> Vec<f32>,
    ) -> Vec<f32> {
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.n_kv_heads(), cfg.head_dim());
        let (m, width, groups) = (positions.len(), (nh + 2 * nkv) * hd, nh / nkv);
        let mut qkv = product(&block.qkv, h);
        self.bias_and_rope(block, &mut qkv, positions);
        let starts: Vec<usize> = seqs
            .iter()
            .scan(0, |at, s| {
                let start = *at;
                *at += s.len();
                Some(start)
            })
            .collect();
        let scale = 1.0 / (hd as f32).sqrt();
        // One task per (sequence, kv head): its keys and values gathered
        // into `[len, head_dim]`, then each of its query heads, `[len, hd]`.
        let heads: Vec<Vec<f32>> = (0..seqs.len() * nkv)
            .into_par_iter()
            .map(|task| {
                let (s, g) = (task / nkv, task % nkv);
                let (start, len) = (starts[s], seqs[s].len());
                let rows = &qkv[start * width..(start + len) * width];
                let gather = |at: usize| -> Vec<f32> {
                    rows.chunks_exact(width).flat_map(|r| r[at..at + hd].iter().copied()).collect()
                };
                let (keys, values) = (gather((nh + g) * hd), gather((nh + nkv + g) * hd));
                let mut out = vec![0f32; groups * len * hd];
                for (i, out) in out.chunks_exact_mut(len * hd).enumerate() {
                    let q = &rows[(g * groups + i) * hd..];
                    prefill_head(q, width, &keys, &values, hd, 0, 0, scale, out);
                }
                out
            })
            .collect();
        // Per task [groups, len, hd] -> [Σ len, heads * hd].
        let mut att = vec![0f32; m * nh * hd];
        for (task, out) in heads.iter().enumerate() {
            let (s, g) = (task / nkv, task % nkv);
            let (start, len) = (starts[s], seqs[s].len());
            for i in 0..groups {
                let head = g * groups + i;
                for t in 0..len {
                    let dst = (start + t) * nh * hd + head * hd;
                    att[dst..dst + hd].copy_from_slice(&out[(i * len + t) * hd..][..hd]);
                }
            }
        }
        att
    }
}
