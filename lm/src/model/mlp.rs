//! SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use super::apply_linear;
use crate::packed::PackedBlock;

#[derive(Module, Debug)]
pub(crate) struct Mlp {
    /// gate and up projections fused: `[hidden, 2 * intermediate]`.
    pub gate_up: Linear,
    /// `[intermediate, hidden]`
    pub down: Linear,
    pub intermediate: usize,
}

impl Mlp {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, packed: Option<&PackedBlock>) -> Tensor<3> {
        let gate_up = apply_linear(&self.gate_up, x, packed.map(|p| &p.gate_up));
        #[cfg(feature = "flex")]
        if super::swiglu::fused_supported(&gate_up.device()) {
            return apply_linear(&self.down, super::swiglu::swiglu(gate_up), packed.map(|p| &p.down));
        }
        let gate = gate_up.clone().narrow(2, 0, self.intermediate);
        let up = gate_up.narrow(2, self.intermediate, self.intermediate);
        apply_linear(&self.down, silu(gate) * up, packed.map(|p| &p.down))
    }
}
