//! One pre-norm decoder block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use burn::module::Module;
use burn::tensor::Tensor;

use super::attention::{Attention, LayerCache};
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::RopeAt;

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
        bias: &Tensor<4>,
        cache: Option<&mut LayerCache>,
        offset: usize,
    ) -> Tensor<3> {
        let h = x.clone() + self.attn.forward(self.attn_norm.forward(x), rope, bias, cache, offset);
        h.clone() + self.mlp.forward(self.mlp_norm.forward(h))
    }
}
