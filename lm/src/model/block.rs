//! One pre-norm decoder block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use burn::module::Module;
use burn::tensor::Tensor;

use super::attention::{Attention, LayerCache};
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::RopeAt;
use super::AttnLayout;
use crate::packed::PackedBlock;

#[derive(Module, Debug)]
pub(crate) struct Block {
    pub attn_norm: RmsNorm,
    pub attn: Attention,
    pub mlp_norm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
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
        let attn = self.attn.forward(self.attn_norm.forward(x.clone()), rope, layout, cache, offset, packed);
        let h = x + attn;
        h.clone() + self.mlp.forward(self.mlp_norm.forward(h), packed)
    }
}
