//! RMSNorm as transformers computes it: `weight * (x * rsqrt(mean(x²) + eps))`.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

#[derive(Module, Debug)]
pub(crate) struct RmsNorm {
    /// `[hidden]`
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        #[cfg(feature = "flex")]
        if super::rmsnorm::fused_supported(&x.device()) {
            return super::rmsnorm::rms_norm(x, self.weight.val(), self.eps);
        }
        let inv_rms = x.clone().square().mean_dim(2).add_scalar(self.eps).sqrt().recip();
        x * inv_rms * self.weight.val().unsqueeze::<3>()
    }
}
