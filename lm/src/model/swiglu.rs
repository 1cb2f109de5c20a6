//! Fused SwiGLU activation for the CPU (`flex`): `silu(gate) * up` from the
//! fused `[.., 2 * intermediate]` projection, as one autodiff node.
//!
//! burn's version is five tensor ops (two `narrow`s, `sigmoid`, two `mul`s)
//! whose backward adds as many again, including zero-filled buffers that
//! scatter the gradients of the two halves back; its sigmoid runs on one
//! thread and is recomputed in the backward. After fused attention it was
//! the largest non-matmul cost of a training step. Here the forward and
//! backward are each one parallel pass over the rows; the forward
//! computes what burn does (`(g · σ(g)) · u`, σ as flex computes it) with
//! a vectorizable `exp` (relative error below 2e-7 against libm's).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Whether [`swiglu`] runs on `device` (flex), and is not turned off with
/// `RETORT_FUSED_SWIGLU=0` (kept for comparing against burn's path).
pub(crate) fn fused_supported(device: &burn::tensor::Device) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| super::causal::env_on("RETORT_FUSED_SWIGLU")) && super::causal::is_flex(device)
}

/// Rows per parallel task (enough work to amortize rayon's scheduling).
const ROWS_PER_TASK: usize = 64;

/// `silu(gate) * up` where `gate_up = [gate, up]` along the last axis.
///
/// # Shapes
/// - `gate_up`: `[batch, seq, 2 * intermediate]`
/// - output: `[batch, seq, intermediate]`
///
/// # Panics
/// Off flex (see [`fused_supported`]).
pub(crate) fn swiglu(gate_up: Tensor<3>) -> Tensor<3> {
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as SwiGlu>::swiglu(gate_up.into_dispatch()))
}

/// The backend extension: flex computes it on the host, autodiff adds
/// [`SwiGluBackward`].
#[backend_extension(Flex, Autodiff)]
pub trait SwiGlu: Backend {
    /// See [`swiglu`].
    fn swiglu(gate_up: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The host kernels behind [`SwiGlu`].
pub trait SwiGluKernels: Backend {
    /// The forward pass.
    fn swiglu_forward(gate_up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The gradient of `gate_up` given the output's gradient `grad`.
    fn swiglu_backward(gate_up: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl SwiGlu for Flex {
    fn swiglu(gate_up: FlexTensor) -> FlexTensor {
        Flex::swiglu_forward(gate_up)
    }
}

#[derive(Debug)]
struct SwiGluBackward;

impl<B: SwiGluKernels> Backward<B, 1> for SwiGluBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::swiglu_backward(ops.state, grad));
        }
    }
}

impl<B: SwiGluKernels, C: CheckpointStrategy> SwiGlu for Autodiff<B, C> {
    fn swiglu(gate_up: FloatTensor<Self>) -> FloatTensor<Self> {
        match SwiGluBackward.prepare::<C>([gate_up.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = gate_up.into_primitive();
                prep.finish(x.clone(), B::swiglu_forward(x))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::swiglu_forward(gate_up.into_primitive())),
        }
    }
}

/// flex's sigmoid (burn-flex `ops/activation.rs`: `e^-|x|` so it never
/// overflows) with the vectorizable [`exp`](super::causal::exp).
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    let e = super::causal::exp(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

use super::causal::{contiguous, f32s};

impl SwiGluKernels for Flex {
    fn swiglu_forward(gate_up: FlexTensor) -> FlexTensor {
        let x = contiguous(gate_up);
        let mut shape = x.layout().shape().to_vec();
        let x = f32s(&x);
        let width = *shape.last().expect("at least 1-D");
        let inter = width / 2;
        let rows = x.len() / width.max(1);
        let mut out = vec![0f32; rows * inter];
        out.par_chunks_mut(ROWS_PER_TASK * inter)
            .zip(x.par_chunks(ROWS_PER_TASK * width))
            .for_each(|(out, x)| {
                for (o, x) in out.chunks_mut(inter).zip(x.chunks(width)) {
                    let (g, u) = x.split_at(inter);
                    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                        *o = g * sigmoid(g) * u;
                    }
                }
            });
        *shape.last_mut().expect("at least 1-D") = inter;
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn swiglu_backward(gate_up: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, dy) = (contiguous(gate_up), contiguous(grad));
        let shape = x.layout().shape().to_vec();
        let (x, dy) = (f32s(&x), f32s(&dy));
        let width = *shape.last().expect("at least 1-D");
        let inter = width / 2;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(ROWS_PER_TASK * width)
            .zip(x.par_chunks(ROWS_PER_TASK * width).zip(dy.par_chunks(ROWS_PER_TASK * inter)))
            .for_each(|(dx, (x, dy))| {
                for ((dx, x), dy) in dx.chunks_mut(width).zip(x.chunks(width)).zip(dy.chunks(inter)) {
                    let (g, u) = x.split_at(inter);
                    let (dg, du) = dx.split_at_mut(inter);
                    for i in 0..inter {
                        let s = sigmoid(g[i]);
                        // d silu(g)/dg = σ(g) · (1 + g · (1 − σ(g)))
                        dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                        du[i] = dy[i] * g[i] * s;
                    }
                }
            });
        FlexTensor::from_data(TensorData::new(dx, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device};
    use burn::tensor::activation::silu;

    fn vec(t: Tensor<3>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn matches_burns_silu_product_and_its_gradient() {
        let (b, s, inter) = (2, 70, 24);
        let mut rng = crate::rng::Rng::for_item(5, 0);
        let mut vals = |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.next_f64() * 12.0 - 6.0) as f32).collect() };
        let x = vals(b * s * 2 * inter);
        let w = vals(b * s * inter);
        let dev = device().autodiff();
        let run = |fused: bool| {
            let gu = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, s, 2 * inter]), &dev).require_grad();
            let out = if fused {
                swiglu(gu.clone())
            } else {
                let g = gu.clone().narrow(2, 0, inter);
                let u = gu.clone().narrow(2, inter, inter);
                silu(g) * u
            };
            let weights = Tensor::<3>::from_data(TensorData::new(w.clone(), [b, s, inter]), &dev);
            let grads = (out.clone() * weights).sum().backward();
            (vec(out.detach()), vec(gu.grad(&grads).unwrap()))
        };
        let (want, got) = (run(false), run(true));
        assert_close(&got.0, &want.0, 1e-6);
        assert_close(&got.1, &want.1, 1e-5);
        // And on the plain device.
        let gu = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, s, 2 * inter]), &device());
        assert_close(&vec(swiglu(gu)), &want.0, 1e-6);
    }
}
