//! Fused token log-probabilities for the CPU (`flex`):
//! `log softmax(logits)[target]` per position, as one autodiff node.
//!
//! burn's version (max, subtract, exp, sum, log, gather) writes several
//! `[batch, seq, vocab]` tensors forward and more backward (exp recomputed,
//! a zero-filled scatter for the gather); with SmolLM2's 49,152-token
//! vocabulary each is 400 MB at batch 8 × 256, freshly allocated and
//! page-faulted every step. Here the forward only reads the logits (one
//! parallel pass per row: max, log-sum-exp, target) and the backward
//! writes the logits' gradient once: `g · (onehot(target) − softmax)`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;

use super::causal::{contiguous, env_on, exp, f32s, is_flex};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Whether [`token_logprobs`] runs on `device` (flex), and is not turned
/// off with `RETORT_FUSED_LOGPROBS=0` (kept for comparing against burn's path).
pub(crate) fn fused_supported(device: &burn::tensor::Device) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| env_on("RETORT_FUSED_LOGPROBS")) && is_flex(device)
}

/// `log softmax(logits)[b, t, targets[b, t]]`, targets clamped to the vocabulary.
///
/// # Shapes
/// - `logits`: `[B, T, V]`
/// - `targets`: `[B, T]`
/// - returns `[B, T]`
///
/// # Panics
/// Off flex (see [`fused_supported`]).
pub(crate) fn token_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    use burn::backend::Dispatch;
    let [b, t, v] = logits.dims();
    // Ids as floats (exact below 2^24): the extension then has float inputs only.
    let ids: Vec<f32> = targets
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("int targets")
        .into_iter()
        .map(|id| id.clamp(0, v as i64 - 1) as f32)
        .collect();
    let ids = Tensor::<2>::from_data(TensorData::new(ids, [b, t]), &logits.device());
    Tensor::from_dispatch(<Dispatch as TokenLogprobs>::token_logprobs(logits.into_dispatch(), ids.into_dispatch()))
}

/// The backend extension: flex computes it on the host, autodiff adds
/// [`LogprobsBackward`].
#[backend_extension(Flex, Autodiff)]
pub trait TokenLogprobs: Backend {
    /// See [`token_logprobs`] (`ids` holds the clamped target ids as floats).
    fn token_logprobs(logits: FloatTensor<Self>, ids: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The host kernels behind [`TokenLogprobs`].
pub trait LogprobsKernels: Backend {
    /// Log-probs `[B, T]` and each row's log-sum-exp (`[B, T]`).
    fn logprobs_forward(logits: FloatTensor<Self>, ids: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// The logits' gradient given the log-probs' gradient `grad`.
    fn logprobs_backward(
        logits: FloatTensor<Self>,
        ids: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl TokenLogprobs for Flex {
    fn token_logprobs(logits: FlexTensor, ids: FlexTensor) -> FlexTensor {
        Flex::logprobs_forward(logits, ids).0
    }
}

#[derive(Debug)]
struct LogprobsBackward;

impl<B: LogprobsKernels> Backward<B, 2> for LogprobsBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node, _] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            let (logits, ids, lse) = ops.state;
            grads.register::<B>(node.id, B::logprobs_backward(logits, ids, lse, grad));
        }
    }
}

impl<B: LogprobsKernels, C: CheckpointStrategy> TokenLogprobs for Autodiff<B, C> {
    fn token_logprobs(logits: FloatTensor<Self>, ids: FloatTensor<Self>) -> FloatTensor<Self> {
        match LogprobsBackward.prepare::<C>([logits.node(), ids.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, ids) = (logits.into_primitive(), ids.into_primitive());
                let (lp, lse) = B::logprobs_forward(x.clone(), ids.clone());
                prep.finish((x, ids, lse), lp)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::logprobs_forward(logits.into_primitive(), ids.into_primitive()).0)
            }
        }
    }
}

impl LogprobsKernels for Flex {
    fn logprobs_forward(logits: FlexTensor, ids: FlexTensor) -> (FlexTensor, FlexTensor) {
        let (x, ids) = (contiguous(logits), contiguous(ids));
        let shape = x.layout().shape().to_vec();
        let v = *shape.last().expect("[B, T, V] logits");
        let (x, ids) = (f32s(&x), f32s(&ids));
        let mut lp = vec![0f32; ids.len()];
        let mut lse = vec![0f32; ids.len()];
        lp.par_chunks_mut(ROWS_PER_TASK)
            .zip(lse.par_chunks_mut(ROWS_PER_TASK))
            .zip(x.par_chunks(ROWS_PER_TASK * v).zip(ids.par_chunks(ROWS_PER_TASK)))
            .for_each(|((lp, lse), (x, ids))| {
                for (((lp, lse), row), &id) in lp.iter_mut().zip(lse).zip(x.chunks(v)).zip(ids) {
                    // As burn's path: shift by the max, then log Σ exp.
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let log_sum = row.iter().map(|&l| exp(l - max)).sum::<f32>().ln();
                    *lp = (row[id as usize] - max) - log_sum;
                    *lse = max + log_sum;
                }
            });
        let out_shape = shape[..shape.len() - 1].to_vec();
        (
            FlexTensor::from_data(TensorData::new(lp, out_shape.clone())),
            FlexTensor::from_data(TensorData::new(lse, out_shape)),
        )
    }

    fn logprobs_backward(logits: FlexTensor, ids: FlexTensor, lse: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, ids, lse, g) = (contiguous(logits), contiguous(ids), contiguous(lse), contiguous(grad));
        let shape = x.layout().shape().to_vec();
        let v = *shape.last().expect("[B, T, V] logits");
        let (x, ids, lse, g) = (f32s(&x), f32s(&ids), f32s(&lse), f32s(&g));
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(ROWS_PER_TASK * v)
            .zip(x.par_chunks(ROWS_PER_TASK * v))
            .enumerate()
            .for_each(|(task, (dx, x))| {
                let r0 = task * ROWS_PER_TASK;
                for (r, (dx, x)) in dx.chunks_mut(v).zip(x.chunks(v)).enumerate() {
                    let (g, lse) = (g[r0 + r], lse[r0 + r]);
                    for (d, &l) in dx.iter_mut().zip(x) {
                        *d = -g * exp(l - lse);
                    }
                    dx[ids[r0 + r] as usize] += g;
                }
            });
        FlexTensor::from_data(TensorData::new(dx, shape))
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
    fn matches_burns_log_softmax_gather_and_its_gradient() {
        let (b, t, v) = (3, 21, 37);
        let mut rng = crate::rng::Rng::for_item(9, 0);
        let x: Vec<f32> = (0..b * t * v).map(|_| (rng.next_f64() * 20.0 - 10.0) as f32).collect();
        // Out-of-range ids are clamped (as a masked -100 label would be).
        let ids: Vec<i32> = (0..b * t).map(|i| if i == 5 { -100 } else { (rng.next_u64() % v as u64) as i32 }).collect();
        let w: Vec<f32> = (0..b * t).map(|_| rng.next_f64() as f32).collect();
        let dev = device().autodiff();
        let run = |fused: bool| {
            let logits = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, t, v]), &dev).require_grad();
            let targets = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [b, t]), &dev);
            let lp = if fused {
                token_logprobs(logits.clone(), targets)
            } else {
                let idx = targets.clamp(0, v as i64 - 1).reshape([b, t, 1]);
                let log_p = burn::tensor::activation::log_softmax(logits.clone(), 2);
                log_p.gather(2, idx).reshape([b, t])
            };
            let weights = Tensor::<2>::from_data(TensorData::new(w.clone(), [b, t]), &dev);
            let grads = (lp.clone() * weights).sum().backward();
            (vec(lp.detach()), vec(logits.grad(&grads).unwrap()))
        };
        let (want, got) = (run(false), run(true));
        assert_close(&got.0, &want.0, 1e-5);
        assert_close(&got.1, &want.1, 1e-5);
    }
}
