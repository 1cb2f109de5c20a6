//! Fused RMSNorm for the CPU (`flex`): `w · x / sqrt(mean(x²) + eps)` per
//! row, as one autodiff node.
//!
//! burn's version is seven tensor ops (square, mean, add, sqrt, recip and
//! two broadcast multiplies) and about as many again backward, each a
//! pass over `[batch, seq, hidden]`; with two norms per block they were a
//! visible share of a small model's step. Here the forward is one parallel
//! pass (keeping each row's `1 / rms`), the backward another:
//! `dx = r·g − x·r³·mean(g·x)` with `g = dy·w`, and `dw = Σ_rows dy·x·r`.

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

use super::causal::{contiguous, env_on, f32s, is_flex};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// Whether [`rms_norm`] runs on `device` (flex), and is not turned off
/// with `RETORT_FUSED_RMSNORM=0` (kept for comparing against burn's path).
pub(crate) fn fused_supported(device: &burn::tensor::Device) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| env_on("RETORT_FUSED_RMSNORM")) && is_flex(device)
}

/// `weight · x / sqrt(mean(x², last axis) + eps)`.
///
/// # Shapes
/// - `x`: `[batch, seq, hidden]`; `weight`: `[hidden]`; output like `x`
pub(crate) fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as RmsNormOp>::rms_norm(x.into_dispatch(), weight.into_dispatch(), eps))
}

/// The backend extension: flex computes it on the host, autodiff adds
/// [`RmsNormBackward`].
#[backend_extension(Flex, Autodiff)]
pub trait RmsNormOp: Backend {
    /// See [`rms_norm`].
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
}

/// The host kernels behind [`RmsNormOp`].
pub trait RmsNormKernels: Backend {
    /// Output and each row's `1 / rms`.
    fn rms_norm_forward(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Gradients of `x` and `w` given the output's gradient `grad`.
    fn rms_norm_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        inv: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl RmsNormOp for Flex {
    fn rms_norm(x: FlexTensor, w: FlexTensor, eps: f64) -> FlexTensor {
        Flex::rms_norm_forward(x, w, eps).0
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl<B: RmsNormKernels> Backward<B, 2> for RmsNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, w, inv) = ops.state;
        let (dx, dw) = B::rms_norm_backward(x, w, inv, grad);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, dw);
        }
    }
}

impl<B: RmsNormKernels, C: CheckpointStrategy> RmsNormOp for Autodiff<B, C> {
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        match RmsNormBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, w) = (x.into_primitive(), weight.into_primitive());
                let (y, inv) = B::rms_norm_forward(x.clone(), w.clone(), eps);
                prep.finish((x, w, inv), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::rms_norm_forward(x.into_primitive(), weight.into_primitive(), eps).0)
            }
        }
    }
}

impl RmsNormKernels for Flex {
    fn rms_norm_forward(x: FlexTensor, w: FlexTensor, eps: f64) -> (FlexTensor, FlexTensor) {
        let (x, w) = (contiguous(x), contiguous(w));
        let shape = x.layout().shape().to_vec();
        let d = *shape.last().expect("[.., hidden] input");
        let (x, w) = (f32s(&x), f32s(&w));
        let mut y = vec![0f32; x.len()];
        let mut inv = vec![0f32; x.len() / d];
        y.par_chunks_mut(ROWS_PER_TASK * d)
            .zip(inv.par_chunks_mut(ROWS_PER_TASK))
            .zip(x.par_chunks(ROWS_PER_TASK * d))
            .for_each(|((y, inv), x)| {
                for ((y, r), x) in y.chunks_mut(d).zip(inv).zip(x.chunks(d)) {
                    let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
                    // As burn's path: 1 / sqrt(mean + eps), then (x · r) · w.
                    *r = 1.0 / (f64::from(ms) + eps).sqrt() as f32;
                    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                        *y = x * *r * w;
                    }
                }
            });
        let rows = shape[..shape.len() - 1].to_vec();
        (
            FlexTensor::from_data(TensorData::new(y, shape)),
            FlexTensor::from_data(TensorData::new(inv, rows)),
        )
    }

    fn rms_norm_backward(x: FlexTensor, w: FlexTensor, inv: FlexTensor, grad: FlexTensor) -> (FlexTensor, FlexTensor) {
        let (x, w, inv, dy) = (contiguous(x), contiguous(w), contiguous(inv), contiguous(grad));
        let shape = x.layout().shape().to_vec();
        let d = *shape.last().expect("[.., hidden] input");
        let (x, w, inv, dy) = (f32s(&x), f32s(&w), f32s(&inv), f32s(&dy));
        let mut dx = vec![0f32; x.len()];
        // Each task's partial dw; summed below in task order (deterministic).
        let partial: Vec<Vec<f32>> = dx
            .par_chunks_mut(ROWS_PER_TASK * d)
            .zip(x.par_chunks(ROWS_PER_TASK * d).zip(dy.par_chunks(ROWS_PER_TASK * d)))
            .zip(inv.par_chunks(ROWS_PER_TASK))
            .map(|((dx, (x, dy)), inv)| {
                let mut dw = vec![0f32; d];
                for (((dx, x), dy), &r) in dx.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)).zip(inv) {
                    let gx: f32 = dy.iter().zip(w).zip(x).map(|((g, w), x)| g * w * x).sum();
                    let c = r * r * r * gx / d as f32;
                    for i in 0..d {
                        dx[i] = r * dy[i] * w[i] - x[i] * c;
                        dw[i] += dy[i] * x[i] * r;
                    }
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; d];
        for p in &partial {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        (FlexTensor::from_data(TensorData::new(dx, shape)), FlexTensor::from_data(TensorData::new(dw, [d])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device};

    fn vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn matches_burns_rms_norm_and_its_gradients() {
        let (b, s, d) = (2, 70, 48);
        let mut rng = crate::rng::Rng::for_item(3, 0);
        let mut vals = |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.next_f64() * 4.0 - 2.0) as f32).collect() };
        let (x, w, u) = (vals(b * s * d), vals(d), vals(b * s * d));
        let dev = device().autodiff();
        let eps = 1e-5;
        let run = |fused: bool| {
            let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, s, d]), &dev).require_grad();
            let wt = Tensor::<1>::from_data(TensorData::new(w.clone(), [d]), &dev).require_grad();
            let y = if fused {
                rms_norm(xt.clone(), wt.clone(), eps)
            } else {
                let inv = xt.clone().square().mean_dim(2).add_scalar(eps).sqrt().recip();
                xt.clone() * inv * wt.clone().unsqueeze::<3>()
            };
            let weights = Tensor::<3>::from_data(TensorData::new(u.clone(), [b, s, d]), &dev);
            let grads = (y.clone() * weights).sum().backward();
            (vec(y.detach()), vec(xt.grad(&grads).unwrap()), vec(wt.grad(&grads).unwrap()))
        };
        let (want, got) = (run(false), run(true));
        assert_close(&got.0, &want.0, 1e-5);
        assert_close(&got.1, &want.1, 1e-4);
        assert_close(&got.2, &want.2, 1e-4);
    }
}
