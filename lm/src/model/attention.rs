//! Grouped-query self-attention with an optional KV cache.
//!
//! Query heads that share a key/value head are folded into the query
//! sequence axis (`[batch, kv_heads, groups * seq, head_dim]`), so the
//! cached keys and values are never repeated per query head.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::apply_linear;
use super::rope::RopeAt;
use super::AttnLayout;
use crate::packed::PackedBlock;

/// Keys and values of one layer for every cached position.
///
/// # Shapes
/// - `k`, `v`: `[batch, kv_heads, capacity, head_dim]`
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    pub k: Option<Tensor<4>>,
    pub v: Option<Tensor<4>>,
}

#[derive(Module, Debug)]
pub(crate) struct Attention {
    /// q, k and v projections fused: `[hidden, (heads + 2 * kv_heads) * head_dim]`.
    pub qkv: Linear,
    /// `[heads * head_dim, hidden]`
    pub o_proj: Linear,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// Attends from `x`'s positions (absolute `offset..offset + seq`) to
    /// every earlier position: the cache's first `offset` entries, then `x`.
    /// With a cache, keys span its whole capacity (`bias` masks the rest).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - `layout.bias`: `[batch or 1, 1, groups * seq, seq or capacity]`, additive (0 or `-inf`)
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RopeAt,
        layout: &AttnLayout,
        cache: Option<&mut LayerCache>,
        offset: usize,
        packed: Option<&PackedBlock>,
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let groups = nh / nkv;
        let qkv = apply_linear(&self.qkv, x, packed.map(|p| &p.qkv));
        let q = qkv.clone().narrow(2, 0, nh * hd).reshape([batch, seq, nh, hd]);
        let k = qkv.clone().narrow(2, nh * hd, nkv * hd).reshape([batch, seq, nkv, hd]);
        let v = qkv.narrow(2, (nh + nkv) * hd, nkv * hd).reshape([batch, seq, nkv, hd]);
        let q = rope.apply(q);
        let k = rope.apply(k).swap_dims(1, 2); // [batch, kv_heads, seq, head_dim]
        let v = v.swap_dims(1, 2);
        let scale = 1.0 / (hd as f64).sqrt();
        #[cfg(feature = "flex")]
        if layout.causal && cache.is_none() && super::causal::fused_supported(&q.device()) {
            // [batch, heads, seq, hd] -> [batch, seq, heads * hd]
            let out = super::causal::causal_attention(q.swap_dims(1, 2), k, v, scale);
            let out = out.swap_dims(1, 2).reshape([batch, seq, nh * hd]);
            return apply_linear(&self.o_proj, out, packed.map(|p| &p.o));
        }
        // [batch, seq, kv_heads, groups, hd] -> [batch, kv_heads, groups * seq, hd]
        let q = q
            .reshape([batch, seq, nkv, groups, hd])
            .permute([0, 2, 3, 1, 4])
            .reshape([batch, nkv, groups * seq, hd]);
        let (k, v) = match cache {
            None => (k, v),
            Some(cache) => cache.append(k, v, offset),
        };
        let options = AttentionModuleOptions {
            scale: Some(scale),
            ..Default::default()
        };
        let out = attention(q, k, v, None, Some(layout.bias.clone()), options);
        let out = out
            .reshape([batch, nkv, groups, seq, hd])
            .permute([0, 3, 1, 2, 4])
            .reshape([batch, seq, nh * hd]);
        apply_linear(&self.o_proj, out, packed.map(|p| &p.o))
    }
}

impl LayerCache {
    /// Writes `k`/`v` at `offset..offset + seq` and returns the whole
    /// (contiguous) cache tensors.
    ///
    /// # Shapes
    /// - `k`, `v`: `[batch, kv_heads, seq, head_dim]`
    fn append(&mut self, k: Tensor<4>, v: Tensor<4>, offset: usize) -> (Tensor<4>, Tensor<4>) {
        let end = offset + k.dims()[2];
        // The cache tensors are uniquely owned here, so burn writes in place.
        let write = |slot: &mut Option<Tensor<4>>, new: Tensor<4>| {
            let [b, h, _, d] = new.dims();
            let full = slot.take().expect("cache allocated").slice_assign([0..b, 0..h, offset..end, 0..d], new);
            *slot = Some(full.clone());
            full
        };
        (write(&mut self.k, k), write(&mut self.v, v))
    }
}
