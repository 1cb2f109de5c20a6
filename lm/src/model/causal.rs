//! Fused causal self-attention for training on the CPU (`flex`), with its
//! own backward pass.
//!
//! burn has no fused attention backward: on an autodiff device its
//! `attention` is a chain of about ten tensor ops (matmul, scale, bias add,
//! max, subtract, exp, sum, divide, matmul), each writing a full
//! `[batch, heads, seq, seq]` tensor forward and again backward, with the
//! masked half of every score matrix computed and thrown away. On two
//! cores that chain was the largest share of a small model's training step.
//!
//! Here attention is one autodiff node whose forward and backward are
//! host loops over `(batch, kv head)` in parallel, in blocks of query rows
//! (flash-attention style): scores only up to the diagonal block, the
//! softmax kept as its log-sum-exp per row, and the backward recomputing
//! the probabilities from it. Numerically it is the same softmax (the max
//! is subtracted, sums in f32), so results match burn's path to float
//! rounding (checked by the tests).
//!
//! Only fresh causal layouts (no cache, no padding before a token: the
//! training batches, right-padded) take this path; see
//! [`fused_supported`].

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, DispatchDevice};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

/// Query rows per block: a block's scores (`ROWS × seq`) stay in cache.
const ROWS: usize = 64;

/// Whether [`causal_attention`] runs on `device` (flex, with or without
/// autodiff), and is not turned off with `RETORT_FUSED_ATTENTION=0` (kept
/// for comparing against burn's path).
pub(crate) fn fused_supported(device: &Device) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| env_on("RETORT_FUSED_ATTENTION")) && is_flex(device)
}

/// `e^x` in f32 without a libm call, so that loops over slices vectorize
/// (libm's `expf` is a scalar call: it was 12% of a small model's training
/// step). Cephes' `expf`: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6
/// polynomial for `e^r`, `2^n` built in the exponent bits; relative error
/// below 2e-7 (libm: 1 ulp). `x` is clamped to `[-87.3, 88.37]`, so very
/// negative inputs (and `-inf`) give about 1e-38 instead of 0, and large ones
/// stay finite.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_55, 88.376_26);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let pow2n = f32::from_bits(((t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23) as u32);
    er * pow2n
}

/// Whether the environment variable `name` is unset or not `0`.
pub(crate) fn env_on(name: &str) -> bool {
    std::env::var(name).map_or(true, |v| v != "0")
}

/// Whether `device` is flex, with or without autodiff (where the fused
/// ops of this crate's backend extensions exist).
pub(crate) fn is_flex(device: &Device) -> bool {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(inner.clone().inner(), DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// `softmax(q kᵀ · scale + causal mask) v` with query head `h` reading
/// key/value head `h / (heads / kv_heads)`.
///
/// # Shapes
/// - `q`: `[batch, heads, seq, head_dim]`
/// - `k`, `v`: `[batch, kv_heads, seq, head_dim]`
/// - output: `[batch, heads, seq, head_dim]`
///
/// # Panics
/// On a device where [`fused_supported`] is false.
pub(crate) fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as CausalAttention>::causal_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale,
    ))
}

/// The backend extension: flex computes it on the host, autodiff wraps
/// that with [`CausalAttentionBackward`].
#[backend_extension(Flex, Autodiff)]
pub trait CausalAttention: Backend {
    /// See [`causal_attention`].
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
}

/// The host kernels behind [`CausalAttention`], for backends whose tensors
/// live in host memory.
pub trait CausalKernels: Backend {
    /// Output and per-row log-sum-exp (`[batch, heads, seq]`).
    fn attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of `q`, `k` and `v` given the output's gradient `grad`.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl CausalAttention for Flex {
    fn causal_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f64) -> FlexTensor {
        Flex::attention_forward(q, k, v, scale).0
    }
}

/// The attention node: its state is the inputs, the output and the log-sum-exp.
#[derive(Debug)]
struct CausalAttentionBackward;

impl<B: CausalKernels> Backward<B, 3> for CausalAttentionBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (q, k, v, out, lse, scale) = ops.state;
        let (dq, dk, dv) = B::attention_backward(q, k, v, out, lse, grad, scale);
        for (node, g) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: CausalKernels, C: CheckpointStrategy> CausalAttention for Autodiff<B, C> {
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        // Compute-bound: the output is kept rather than recomputed under
        // burn's balanced checkpointing.
        match CausalAttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                let (out, lse) = B::attention_forward(q.clone(), k.clone(), v.clone(), scale);
                prep.finish((q, k, v, out.clone(), lse, scale), out)
            }
            OpsKind::UnTracked(prep) => {
                let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                prep.finish(B::attention_forward(q, k, v, scale).0)
            }
        }
    }
}

/// `t` made contiguous (a copy only when it is not: the autodiff graph
/// shares every buffer, so `into_data` would always copy). Read it with
/// [`f32s`].
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), burn::tensor::DType::F32, "fused ops take f32 tensors");
    if t.as_slice::<f32>().is_some() { t } else { t.to_contiguous() }
}

/// The values of a [`contiguous`] tensor, row-major.
pub(crate) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn flex(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq: usize,
    hd: usize,
}

impl Dims {
    fn of(q: &[usize], k: &[usize]) -> Dims {
        assert_eq!(q.len(), 4, "attention: q must be 4-D");
        let d = Dims {
            batch: q[0],
            heads: q[1],
            kv_heads: k[1],
            seq: q[2],
            hd: q[3],
        };
        assert_eq!(k, [d.batch, d.kv_heads, d.seq, d.hd], "attention: k/v shape");
        assert!(d.kv_heads > 0 && d.heads.is_multiple_of(d.kv_heads), "attention: heads vs kv heads");
        d
    }
    fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }
    /// Elements of one head's `[seq, head_dim]` matrix.
    fn mat(&self) -> usize {
        self.seq * self.hd
    }
}

/// `dst[m, n] = alpha·dst + beta · lhs[m, k] · rhs[k, n]` with explicit
/// `(row, column)` strides, on the calling thread.
///
/// # Safety
/// Every pointer must be valid for the elements its strides and sizes reach.
#[allow(clippy::too_many_arguments)]
unsafe fn mm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Scores of query rows `r0..r0 + rows` against keys `0..r0 + rows` into
/// `s` (row stride `seq`), scaled.
fn scores(q: &[f32], k: &[f32], r0: usize, rows: usize, d: Dims, scale: f32, s: &mut [f32]) {
    let keys = r0 + rows;
    // SAFETY: q holds rows r0..r0+rows of hd values, k holds `keys` rows of
    // hd values (read transposed), s holds rows × seq ≥ rows × keys.
    unsafe {
        mm(
            (rows, keys, d.hd),
            s.as_mut_ptr(),
            d.seq,
            false,
            q[r0 * d.hd..].as_ptr(),
            (d.hd, 1),
            k.as_ptr(),
            (1, d.hd),
            scale,
        );
    }
}

impl CausalKernels for Flex {
    fn attention_forward(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f64) -> (FlexTensor, FlexTensor) {
        let (q, k, v) = (contiguous(q), contiguous(k), contiguous(v));
        let (qs, ks) = (q.layout().shape().to_vec(), k.layout().shape().to_vec());
        let (q, k, v) = (f32s(&q), f32s(&k), f32s(&v));
        let d = Dims::of(&qs, &ks);
        let (g, mat, scale) = (d.groups(), d.mat(), scale as f32);
        let mut out = vec![0f32; d.batch * d.heads * mat];
        let mut lse = vec![0f32; d.batch * d.heads * d.seq];
        // One task per (batch, kv head): its `groups` query heads.
        out.par_chunks_mut(g * mat)
            .zip(lse.par_chunks_mut(g * d.seq))
            .enumerate()
            .for_each(|(task, (out, lse))| {
                let (b, kvh) = (task / d.kv_heads, task % d.kv_heads);
                let kv = (b * d.kv_heads + kvh) * mat;
                let (k, v) = (&k[kv..kv + mat], &v[kv..kv + mat]);
                let mut s = vec![0f32; ROWS * d.seq];
                for j in 0..g {
                    let h = (b * d.heads + kvh * g + j) * mat;
                    let q = &q[h..h + mat];
                    let (out, lse) = (&mut out[j * mat..(j + 1) * mat], &mut lse[j * d.seq..(j + 1) * d.seq]);
                    for r0 in (0..d.seq).step_by(ROWS) {
                        let rows = ROWS.min(d.seq - r0);
                        let keys = r0 + rows;
                        scores(q, k, r0, rows, d, scale, &mut s);
                        for t in 0..rows {
                            let row = &mut s[t * d.seq..t * d.seq + keys];
                            let i = r0 + t;
                            let max = row[..=i].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                            row[..=i].iter_mut().for_each(|x| *x = exp(*x - max));
                            let sum: f32 = row[..=i].iter().sum();
                            let inv = 1.0 / sum;
                            row[..=i].iter_mut().for_each(|x| *x *= inv);
                            row[i + 1..].fill(0.0);
                            lse[i] = max + sum.ln();
                        }
                        // SAFETY: s is rows × keys (stride seq), v is keys × hd,
                        // out rows r0..r0+rows are in bounds.
                        unsafe {
                            mm(
                                (rows, d.hd, keys),
                                out[r0 * d.hd..].as_mut_ptr(),
                                d.hd,
                                false,
                                s.as_ptr(),
                                (d.seq, 1),
                                v.as_ptr(),
                                (d.hd, 1),
                                1.0,
                            );
                        }
                    }
                }
            });
        (flex(out, &qs), flex(lse, &qs[..3]))
    }

    fn attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        out: FlexTensor,
        lse: FlexTensor,
        grad: FlexTensor,
        scale: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (q, k, v) = (contiguous(q), contiguous(k), contiguous(v));
        let (out, lse, grad) = (contiguous(out), contiguous(lse), contiguous(grad));
        let (qs, ks) = (q.layout().shape().to_vec(), k.layout().shape().to_vec());
        let (q, k, v) = (f32s(&q), f32s(&k), f32s(&v));
        let (o, lse, dout) = (f32s(&out), f32s(&lse), f32s(&grad));
        let d = Dims::of(&qs, &ks);
        let (g, mat, scale) = (d.groups(), d.mat(), scale as f32);
        let mut dq = vec![0f32; d.batch * d.heads * mat];
        let mut dk = vec![0f32; d.batch * d.kv_heads * mat];
        let mut dv = vec![0f32; d.batch * d.kv_heads * mat];
        dq.par_chunks_mut(g * mat)
            .zip(dk.par_chunks_mut(mat).zip(dv.par_chunks_mut(mat)))
            .enumerate()
            .for_each(|(task, (dq, (dk, dv)))| {
                let (b, kvh) = (task / d.kv_heads, task % d.kv_heads);
                let kv = (b * d.kv_heads + kvh) * mat;
                let (k, v) = (&k[kv..kv + mat], &v[kv..kv + mat]);
                let mut p = vec![0f32; ROWS * d.seq];
                let mut ds = vec![0f32; ROWS * d.seq];
                let mut delta = vec![0f32; d.seq];
                for j in 0..g {
                    let hh = b * d.heads + kvh * g + j;
                    let h = hh * mat;
                    let (q, o, dout) = (&q[h..h + mat], &o[h..h + mat], &dout[h..h + mat]);
                    let lse = &lse[hh * d.seq..(hh + 1) * d.seq];
                    let dq = &mut dq[j * mat..(j + 1) * mat];
                    // delta_i = Σ_d dout[i, d] · out[i, d] (= Σ_j P_ij dP_ij).
                    for (i, dl) in delta.iter_mut().enumerate() {
                        let r = i * d.hd..(i + 1) * d.hd;
                        *dl = dout[r.clone()].iter().zip(&o[r]).map(|(a, b)| a * b).sum();
                    }
                    for r0 in (0..d.seq).step_by(ROWS) {
                        let rows = ROWS.min(d.seq - r0);
                        let keys = r0 + rows;
                        scores(q, k, r0, rows, d, scale, &mut p);
                        for t in 0..rows {
                            let i = r0 + t;
                            let row = &mut p[t * d.seq..t * d.seq + keys];
                            let l = lse[i];
                            row[..=i].iter_mut().for_each(|x| *x = exp(*x - l));
                            row[i + 1..].fill(0.0);
                        }
                        // SAFETY (all four products): p and ds are rows × keys
                        // (stride seq); dout/q/dq rows r0..r0+rows, k/v/dk/dv
                        // rows 0..keys, all hd wide and in bounds.
                        unsafe {
                            // dV[0..keys] += Pᵀ · dOut[rows]
                            mm(
                                (keys, d.hd, rows),
                                dv.as_mut_ptr(),
                                d.hd,
                                true,
                                p.as_ptr(),
                                (1, d.seq),
                                dout[r0 * d.hd..].as_ptr(),
                                (d.hd, 1),
                                1.0,
                            );
                            // dP = dOut[rows] · V[0..keys]ᵀ
                            mm(
                                (rows, keys, d.hd),
                                ds.as_mut_ptr(),
                                d.seq,
                                false,
                                dout[r0 * d.hd..].as_ptr(),
                                (d.hd, 1),
                                v.as_ptr(),
                                (1, d.hd),
                                1.0,
                            );
                        }
                        // dS = P ∘ (dP − delta): the gradient of the scaled scores.
                        for t in 0..rows {
                            let i = r0 + t;
                            let at = t * d.seq;
                            for c in 0..=i {
                                ds[at + c] = p[at + c] * (ds[at + c] - delta[i]);
                            }
                            ds[at + i + 1..at + keys].fill(0.0);
                        }
                        unsafe {
                            // dQ[rows] = scale · dS · K[0..keys]
                            mm(
                                (rows, d.hd, keys),
                                dq[r0 * d.hd..].as_mut_ptr(),
                                d.hd,
                                false,
                                ds.as_ptr(),
                                (d.seq, 1),
                                k.as_ptr(),
                                (d.hd, 1),
                                scale,
                            );
                            // dK[0..keys] += scale · dSᵀ · Q[rows]
                            mm(
                                (keys, d.hd, rows),
                                dk.as_mut_ptr(),
                                d.hd,
                                true,
                                ds.as_ptr(),
                                (1, d.seq),
                                q[r0 * d.hd..].as_ptr(),
                                (d.hd, 1),
                                scale,
                            );
                        }
                    }
                }
            });
        (flex(dq, &qs), flex(dk, &ks), flex(dv, &ks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device};
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;

    fn rand(shape: [usize; 4], seed: u64, dev: &Device) -> Tensor<4> {
        let mut rng = crate::rng::Rng::for_item(seed, 0);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.next_f64() * 4.0 - 2.0) as f32).collect();
        Tensor::from_data(TensorData::new(v, shape), dev)
    }

    /// burn's attention with an explicit causal bias and repeated kv heads.
    fn reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
        let [b, h, s, _] = q.dims();
        let g = h / k.dims()[1];
        let rep = |t: Tensor<4>| {
            let [b, kv, s, d] = t.dims();
            t.unsqueeze_dim::<5>(2).expand([b, kv, g, s, d]).reshape([b, kv * g, s, d])
        };
        let bias: Vec<f32> = (0..s * s)
            .map(|x| if x % s <= x / s { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [1, 1, s, s]), &q.device()).expand([b, h, s, s]);
        let options = AttentionModuleOptions {
            scale: Some(scale),
            ..Default::default()
        };
        attention(q, rep(k), rep(v), None, Some(bias), options)
    }

    fn vec(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn forward_and_gradients_match_burns_attention() {
        // seq 150: three row blocks, the last one partial.
        let (b, h, kv, s, d) = (2, 4, 2, 150, 16);
        let scale = 1.0 / (d as f64).sqrt();
        let plain = device();
        assert!(fused_supported(&plain) && fused_supported(&plain.clone().autodiff()));
        let dev = plain.clone().autodiff();
        let inputs = || {
            (
                rand([b, h, s, d], 1, &dev).require_grad(),
                rand([b, kv, s, d], 2, &dev).require_grad(),
                rand([b, kv, s, d], 3, &dev).require_grad(),
            )
        };
        // A weighted sum makes every output element's gradient different.
        let weights = rand([b, h, s, d], 4, &dev);
        let run = |fused: bool| {
            let (q, k, v) = inputs();
            let out = if fused {
                causal_attention(q.clone(), k.clone(), v.clone(), scale)
            } else {
                reference(q.clone(), k.clone(), v.clone(), scale)
            };
            let grads = (out.clone() * weights.clone()).sum().backward();
            let g = |t: &Tensor<4>| vec(t.grad(&grads).unwrap());
            (vec(out.detach()), g(&q), g(&k), g(&v))
        };
        let (want, got) = (run(false), run(true));
        assert_close(&got.0, &want.0, 1e-5);
        assert_close(&got.1, &want.1, 1e-4);
        assert_close(&got.2, &want.2, 1e-4);
        assert_close(&got.3, &want.3, 1e-4);
        // The plain device gives the same forward.
        let (q, k, v) = (rand([b, h, s, d], 1, &plain), rand([b, kv, s, d], 2, &plain), rand([b, kv, s, d], 3, &plain));
        assert_close(&vec(causal_attention(q, k, v, scale)), &want.0, 1e-5);
    }
}

#[cfg(test)]
mod exp_tests {
    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (f64::from(super::exp(x)), f64::from(x).exp());
            worst = worst.max((got - want).abs() / want);
            x += 0.001_37;
        }
        assert!(worst < 2e-7, "relative error {worst}");
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(f32::NEG_INFINITY) < 1e-37);
        assert!(super::exp(1000.0).is_finite());
    }
}
