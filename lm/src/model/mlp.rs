//! SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

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
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate_up = self.gate_up.forward(x);
        let gate = gate_up.clone().narrow(2, 0, self.intermediate);
        let up = gate_up.narrow(2, self.intermediate, self.intermediate);
        self.down.forward(silu(gate) * up)
    }
}
