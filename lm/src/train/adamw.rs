//! AdamW in one pass over each parameter on the CPU backend (flex).
//!
//! burn's AdamW updates a parameter with a chain of fifteen element-wise
//! tensor operations (the two moments, the bias corrections, square root,
//! division, decay, the step), each a full pass over memory. For
//! SmolLM2's 135M parameters that is fifteen passes over 540 MB per
//! optimizer step, which is most of what `influence` spends per probe. On
//! flex, [`AdamW`] does the same arithmetic in one loop, reading each
//! parameter, gradient and moment once and writing in place where a buffer
//! is not shared (a restored state's moments and parameters are, so those
//! get fresh buffers). Elsewhere (wgpu, CUDA) it hands the step to burn's
//! AdamW.
//!
//! Each element goes through exactly burn's f32 operations, in burn's
//! order, with burn's scalars (flex rounds an `f64` scalar to `f32`), so
//! the result is the same bits: a trained model's hash does not depend on
//! which of the two ran (`fused_steps_equal_burns_bit_for_bit`). The state
//! is burn's own [`AdamWState`], so optimizer checkpoints are the same
//! records either way.

use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend};
use burn::optim::{AdaptiveMomentumState, AdamWConfig, AdamWState, LearningRate, Optimizer};
use burn::tensor::{Device, Shape, Tensor, TensorData};
use rayon::prelude::*;

use crate::model::causal::{contiguous, is_flex};

/// Elements per parallel task: large enough that scheduling is noise,
/// small enough that both cores share a 28M-element embedding.
const CHUNK: usize = 1 << 16;

/// AdamW (decoupled weight decay, no AMSGrad), fused on flex.
#[derive(Clone)]
pub(crate) struct AdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// burn's AdamW with the same settings, for other backends.
    burn: burn::optim::AdamW,
}

impl AdamW {
    pub(crate) fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        AdamW { beta_1, beta_2, epsilon, weight_decay, burn }
    }
}

/// The scalars of one step, each as burn's chain uses it.
#[derive(Clone, Copy, Debug)]
pub struct StepScalars {
    /// β₁ and 1 − β₁.
    pub b1: f32,
    pub f1: f32,
    /// β₂ and 1 − β₂.
    pub b2: f32,
    pub f2: f32,
    /// The bias corrections 1 − βᵗ.
    pub c1: f32,
    pub c2: f32,
    pub eps: f32,
    /// 1 − lr·λ, or `None` without weight decay (burn then skips the multiply).
    pub keep: Option<f32>,
    pub lr: f32,
}

/// The fused update as a flex backend operation.
#[backend_extension(Flex)]
pub trait AdamWOp: Backend {
    /// `(param, moment_1, moment_2)` after one step. On the first step
    /// (`first`) the moments passed are ignored (pass the gradient).
    #[allow(clippy::too_many_arguments)]
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        first: bool,
        b1: f32,
        b2: f32,
        c1: f32,
        c2: f32,
        eps: f32,
        keep: f32,
        decay: bool,
        lr: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl AdamWOp for Flex {
    fn adamw_update(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        first: bool,
        b1: f32,
        b2: f32,
        c1: f32,
        c2: f32,
        eps: f32,
        keep: f32,
        decay: bool,
        lr: f32,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        #[cfg(test)]
        tests::FUSED_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let s = StepScalars { b1, f1: 1.0 - b1, b2, f2: 1.0 - b2, c1, c2, eps, keep: decay.then_some(keep), lr };
        let grad = contiguous(grad);
        let (mut p, mut m, mut v) = if first {
            let shape = grad.layout().shape().clone();
            (Slot::new(contiguous(param)), Slot::fresh(shape.clone()), Slot::fresh(shape))
        } else {
            (Slot::new(contiguous(param)), Slot::new(contiguous(moment_1)), Slot::new(contiguous(moment_2)))
        };
        let g = grad.as_slice::<f32>().expect("contiguous f32 gradient");
        let n = g.len();
        assert!(p.len() == n && m.len() == n && v.len() == n, "AdamW: parameter, gradient and moments differ in size");
        let io = Io { g: g.as_ptr(), p: p.ptrs(), m: m.ptrs(), v: v.ptrs() };
        (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
            let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            // SAFETY: the chunks are disjoint, every pointer addresses `n`
            // f32s, and no reference to the buffers is alive meanwhile.
            unsafe { io.run(start, end, first, &s) }
        });
        // SAFETY: the tasks above wrote every element of every slot.
        unsafe { (p.finish(), m.finish(), v.finish()) }
    }
}

/// One state tensor of the update: where its old values are read and its
/// new ones written. Written in place when nothing else holds the buffer
/// (then both are the same); a restored state's tensors are shared with
/// the warm copy, so those are read there and written to a fresh buffer.
struct Slot {
    /// The old values' owner when they are not updated in place.
    src: Option<FlexTensor>,
    dst: Dst,
    shape: Shape,
}

enum Dst {
    InPlace(FlexTensor),
    /// Capacity for every element, filled by the update (no zeroing pass
    /// first: a fresh buffer from the allocator is written once).
    Fresh(Vec<f32>),
}

impl Slot {
    fn new(mut t: FlexTensor) -> Self {
        let shape = t.layout().shape().clone();
        if t.try_storage_mut::<f32>().is_some() {
            Slot { src: None, dst: Dst::InPlace(t), shape }
        } else {
            let n = shape.num_elements();
            Slot { src: Some(t), dst: Dst::Fresh(Vec::with_capacity(n)), shape }
        }
    }

    /// A slot with no old values (the moments before the first step).
    fn fresh(shape: Shape) -> Self {
        let n = shape.num_elements();
        Slot { src: None, dst: Dst::Fresh(Vec::with_capacity(n)), shape }
    }

    fn len(&self) -> usize {
        self.shape.num_elements()
    }

    /// (read from, write to). Without old values, "read from" is never read.
    fn ptrs(&mut self) -> (*const f32, *mut f32) {
        let dst = match &mut self.dst {
            Dst::InPlace(t) => t.storage_mut::<f32>().as_mut_ptr(),
            Dst::Fresh(v) => v.as_mut_ptr(),
        };
        let src = self.src.as_ref().map_or(dst as *const f32, |t| t.as_slice::<f32>().expect("contiguous f32").as_ptr());
        (src, dst)
    }

    /// The tensor, once the update has written every element.
    ///
    /// # Safety
    /// Every element of a fresh buffer has been written.
    unsafe fn finish(self) -> FlexTensor {
        match self.dst {
            Dst::InPlace(t) => t,
            Dst::Fresh(mut v) => {
                // SAFETY: the caller's promise; the capacity is `len`.
                unsafe { v.set_len(self.shape.num_elements()) };
                FlexTensor::from_data(TensorData::new(v, self.shape))
            }
        }
    }
}

/// Raw pointers to the buffers of one update, shared by the parallel tasks.
#[derive(Clone, Copy)]
struct Io {
    g: *const f32,
    p: (*const f32, *mut f32),
    m: (*const f32, *mut f32),
    v: (*const f32, *mut f32),
}

// SAFETY: the tasks write disjoint ranges; see `adamw_update`.
unsafe impl Send for Io {}
unsafe impl Sync for Io {}

/// Elements per block: copied into locals, updated there (a loop the
/// compiler vectorizes), copied out. Copies through raw pointers, because
/// a buffer read and written in place must not be borrowed twice.
const BLOCK: usize = 64;

impl Io {
    /// Updates elements `start..end`.
    ///
    /// # Safety
    /// Every pointer addresses at least `end` f32s; no other task touches
    /// `start..end`.
    unsafe fn run(self, start: usize, end: usize, first: bool, s: &StepScalars) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return unsafe { self.run_avx512(start, end, first, s) };
        }
        unsafe { self.run_portable(start, end, first, s) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(self, start: usize, end: usize, first: bool, s: &StepScalars) {
        unsafe { self.run_portable(start, end, first, s) }
    }

    #[inline(always)]
    unsafe fn run_portable(self, start: usize, end: usize, first: bool, s: &StepScalars) {
        let mut i = start;
        while i < end {
            let len = BLOCK.min(end - i);
            let (mut p, mut m, mut v, mut g) = ([0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
            // SAFETY (all four blocks): `i + len <= end`, within every buffer.
            unsafe {
                if len == BLOCK {
                    // Whole blocks as fixed-size reads and writes (vector
                    // moves, where a length known only at run time is a
                    // `memcpy` call per block).
                    g = (self.g.add(i) as *const [f32; BLOCK]).read_unaligned();
                    p = (self.p.0.add(i) as *const [f32; BLOCK]).read_unaligned();
                    if !first {
                        m = (self.m.0.add(i) as *const [f32; BLOCK]).read_unaligned();
                        v = (self.v.0.add(i) as *const [f32; BLOCK]).read_unaligned();
                    }
                } else {
                    std::ptr::copy_nonoverlapping(self.g.add(i), g.as_mut_ptr(), len);
                    std::ptr::copy_nonoverlapping(self.p.0.add(i), p.as_mut_ptr(), len);
                    if !first {
                        std::ptr::copy_nonoverlapping(self.m.0.add(i), m.as_mut_ptr(), len);
                        std::ptr::copy_nonoverlapping(self.v.0.add(i), v.as_mut_ptr(), len);
                    }
                }
            }
            update(&mut p, &mut m, &mut v, &g, first, s);
            unsafe {
                if len == BLOCK {
                    (self.p.1.add(i) as *mut [f32; BLOCK]).write_unaligned(p);
                    (self.m.1.add(i) as *mut [f32; BLOCK]).write_unaligned(m);
                    (self.v.1.add(i) as *mut [f32; BLOCK]).write_unaligned(v);
                } else {
                    std::ptr::copy_nonoverlapping(p.as_ptr(), self.p.1.add(i), len);
                    std::ptr::copy_nonoverlapping(m.as_ptr(), self.m.1.add(i), len);
                    std::ptr::copy_nonoverlapping(v.as_ptr(), self.v.1.add(i), len);
                }
            }
            i += len;
        }
    }
}

/// burn's AdamW chain on one block, operation for operation: the moments
/// (`m·β₁ + g·(1−β₁)`, `v·β₂ + g²·(1−β₂)`; `g·(1−β)` and `g²·(1−β)` on the
/// first step), the update `(m / c₁) / (sqrt(v / c₂) + ε)`, the decayed
/// parameter `p·(1 − lr·λ)` and `p − update·lr`.
#[inline(always)]
fn update(p: &mut [f32; BLOCK], m: &mut [f32; BLOCK], v: &mut [f32; BLOCK], g: &[f32; BLOCK], first: bool, s: &StepScalars) {
    if first {
        for k in 0..BLOCK {
            m[k] = g[k] * s.f1;
            v[k] = (g[k] * g[k]) * s.f2;
        }
    } else {
        for k in 0..BLOCK {
            m[k] = m[k] * s.b1 + g[k] * s.f1;
            v[k] = v[k] * s.b2 + (g[k] * g[k]) * s.f2;
        }
    }
    match s.keep {
        Some(keep) => {
            for k in 0..BLOCK {
                let u = (m[k] / s.c1) / ((v[k] / s.c2).sqrt() + s.eps);
                p[k] = p[k] * keep - u * s.lr;
            }
        }
        None => {
            for k in 0..BLOCK {
                let u = (m[k] / s.c1) / ((v[k] / s.c2).sqrt() + s.eps);
                p[k] -= u * s.lr;
            }
        }
    }
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        use burn::backend::Dispatch;
        if !is_flex(&tensor.device()) || state.as_ref().is_some_and(|s| s.momentum.max_moment_2.is_some()) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let (time, m, v, first) = match state {
            Some(s) => (s.momentum.time + 1, s.momentum.moment_1, s.momentum.moment_2, false),
            None => (1, grad.clone(), grad.clone(), true),
        };
        let (b1, b2) = (self.beta_1, self.beta_2);
        // As burn: the corrections in f32, the decay factor in f64, then
        // every scalar rounded to f32 where flex applies it.
        let c1 = 1f32 - b1.powi(time as i32);
        let c2 = 1f32 - b2.powi(time as i32);
        let decay_rate = lr * f64::from(self.weight_decay);
        let (p, m, v) = <Dispatch as AdamWOp>::adamw_update(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            first,
            b1,
            b2,
            c1,
            c2,
            self.epsilon,
            (1.0 - decay_rate) as f32,
            decay_rate != 0.0,
            lr as f32,
        );
        let momentum = AdaptiveMomentumState::new(time, Tensor::from_dispatch(m), Tensor::from_dispatch(v));
        (Tensor::from_dispatch(p), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::optim::{GradientsParams, ModuleOptimizer};
    use burn::tensor::{Int, Tensor, TensorData};

    use super::*;
    use crate::model::Llama;
    use crate::test_util::device;

    /// How many parameter updates took the fused path (so a test can tell
    /// that it compared the fused update, not burn's with itself).
    pub(super) static FUSED_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Every parameter's bits.
    fn bits(m: &Llama) -> Vec<u32> {
        struct Collect<'a>(&'a mut Vec<u32>);
        impl burn::module::ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
                self.0.extend(p.val().into_data().try_into_vec::<f32>().unwrap().iter().map(|x| x.to_bits()));
            }
        }
        let mut out = Vec::new();
        m.visit(&mut Collect(&mut out));
        out
    }

    fn grads(m: &Llama, step: i32) -> GradientsParams {
        let dev = m.devices()[0].clone();
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new((0..12).map(|i| (i * 5 + step) % 64).collect::<Vec<i32>>(), [2, 6]),
            &dev,
        );
        let loss = m.forward(tokens, &m.causal_layout(2, 6), None).square().mean();
        GradientsParams::from_grads(loss.backward(), m)
    }

    fn burns(wd: f32) -> ModuleOptimizer {
        AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.95).with_epsilon(1e-8).with_weight_decay(wd).init()
    }

    /// Three steps of both optimizers from the same model and gradients
    /// give the same bits, with and without weight decay; a fourth step by
    /// burn's AdamW from our saved state equals its step from its own, and
    /// the two states are the same record bytes.
    #[test]
    fn fused_steps_equal_burns_bit_for_bit() {
        let dev = device().autodiff();
        let cfg = crate::config::LlamaConfig::preset("micro", 64).unwrap();
        for wd in [0.0f32, 0.1] {
            let (mut ours, mut theirs) = (ModuleOptimizer::from(AdamW::new(0.9, 0.95, 1e-8, wd)), burns(wd));
            // One model twice: the same parameter ids, which the records name.
            let mut a = cfg.init_seeded(3, &dev);
            let mut b = a.clone();
            for step in 0..3 {
                let (ga, gb) = (grads(&a, step), grads(&b, step));
                a = ours.step(3e-3, a, ga);
                b = theirs.step(3e-3, b, gb);
                assert_eq!(bits(&a), bits(&b), "weight decay {wd}, step {step}");
            }
            assert!(FUSED_CALLS.load(std::sync::atomic::Ordering::Relaxed) > 0, "the fused update never ran");
            let bytes = |o: &ModuleOptimizer| crate::train::state::canonical_bytes(o).unwrap().to_vec();
            assert!(bytes(&ours) == bytes(&theirs), "weight decay {wd}: the saved states differ");
            let mut from_ours = burns(wd).load_record(ours.to_record());
            let (ga, gb) = (grads(&a, 3), grads(&b, 3));
            assert_eq!(bits(&from_ours.step(3e-3, a, ga)), bits(&theirs.step(3e-3, b, gb)), "weight decay {wd}: the state");
        }
    }

    /// A step from shared parameters and moments (what `influence` does
    /// for every probe: restore by cloning handles) writes fresh buffers:
    /// the warm model and state are untouched, and a second step from them
    /// gives the same bits as the first.
    #[test]
    fn shared_state_is_read_not_written() {
        let dev = device().autodiff();
        let cfg = crate::config::LlamaConfig::preset("micro", 64).unwrap();
        let mut optim = ModuleOptimizer::from(AdamW::new(0.9, 0.95, 1e-8, 0.1));
        let warm = cfg.init_seeded(5, &dev);
        let g = grads(&warm, 0);
        let warm = optim.step(1e-2, warm, g);
        let (warm_bits, warm_record) = (bits(&warm), optim.to_record());
        let probe = |optim: &ModuleOptimizer| {
            let mut optim = optim.clone();
            let g = grads(&warm, 1);
            bits(&optim.step(1e-2, warm.clone(), g))
        };
        let (first, second) = (probe(&optim), probe(&optim));
        assert_eq!(first, second);
        assert_ne!(first, warm_bits, "the step moved nothing");
        assert_eq!(bits(&warm), warm_bits, "the warm model was written");
        let mut again = burns(0.1).load_record(warm_record);
        let g = grads(&warm, 1);
        assert_eq!(bits(&again.step(1e-2, warm.clone(), g)), first, "the warm state was written");
    }
}
