//! The optimizer side of a training step: AdamW, gradient accumulation
//! over micro-batches, and global-norm gradient clipping.
//!
//! burn's `GradientClippingConfig::Norm` clips each parameter tensor's
//! gradient by its own norm; PyTorch's `clip_grad_norm_` (what HF/verl
//! use) clips by the norm of all gradients together. [`Optim`] does the
//! latter itself (and the norm is the `grad_norm` every step reports).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use crate::model::Llama;
use crate::train::trainer::TrainConfig;

/// PyTorch's `clip_grad_norm_` guard against division by zero.
const CLIP_EPS: f64 = 1e-6;

/// AdamW with accumulated gradients and global-norm clipping.
pub(crate) struct Optim {
    inner: ModuleOptimizer,
    accum: GradientsAccumulator<Llama>,
    clip: Option<f32>,
    pending: usize,
}

/// AdamW with `cfg`'s betas, epsilon and (decoupled) weight decay,
/// applied to every parameter (norm weights and embeddings included):
/// [`adamw::AdamW`](super::adamw::AdamW), one fused pass per parameter on
/// flex, burn's own elsewhere, with the same bits and the same state
/// records. `RETORT_FUSED_ADAMW=0` takes burn's everywhere (for comparing).
pub(crate) fn adamw(cfg: &TrainConfig) -> ModuleOptimizer {
    let (b1, b2, eps, wd) = (cfg.betas.0 as f32, cfg.betas.1 as f32, cfg.adam_eps as f32, cfg.weight_decay as f32);
    if crate::model::causal::env_on("RETORT_FUSED_ADAMW") {
        return ModuleOptimizer::from(super::adamw::AdamW::new(b1, b2, eps, wd));
    }
    AdamWConfig::new().with_beta_1(b1).with_beta_2(b2).with_epsilon(eps).with_weight_decay(wd).init()
}

impl Optim {
    /// A fresh AdamW (see [`adamw`]).
    pub fn new(cfg: &TrainConfig) -> Self {
        Self::with(adamw(cfg), cfg)
    }

    /// Continues from `inner`'s moments (a restored [`OptimState`](crate::train::state::OptimState)).
    pub fn with(inner: ModuleOptimizer, cfg: &TrainConfig) -> Self {
        Optim {
            inner,
            accum: GradientsAccumulator::new(),
            clip: cfg.grad_clip,
            pending: 0,
        }
    }

    /// The optimizer itself, with its moments (for saving).
    pub fn inner(&self) -> &ModuleOptimizer {
        &self.inner
    }

    /// Back-propagates `loss` (already weighted for its share of the
    /// optimizer step) and adds its gradients to the pending ones.
    pub fn backward(&mut self, model: &Llama, loss: Tensor<1>) {
        let grads = GradientsParams::from_grads(loss.backward(), model);
        self.accum.accumulate(model, grads);
        self.pending += 1;
    }

    /// Applies the pending gradients at learning rate `lr`; returns the
    /// updated model and the global gradient norm before clipping (0 when
    /// nothing was pending, in which case the model is returned unchanged).
    pub fn step(&mut self, model: Llama, lr: f64) -> (Llama, f64) {
        if self.pending == 0 {
            return (model, 0.0);
        }
        self.pending = 0;
        let mut grads = self.accum.grads();
        let norm = clip_global_norm(&model, &mut grads, self.clip);
        (self.inner.step(lr, model, grads), norm)
    }
}

/// Scales `grads` so their global norm is at most `max` (PyTorch's
/// `clip_grad_norm_`: factor `max / (norm + 1e-6)` when below 1); returns
/// the norm before clipping.
pub(crate) fn clip_global_norm(
    model: &Llama,
    grads: &mut GradientsParams,
    max: Option<f32>,
) -> f64 {
    let norm = global_norm(model, grads);
    if let Some(max) = max {
        let coef = f64::from(max) / (norm + CLIP_EPS);
        if coef < 1.0 {
            model.visit(&mut Scale { grads, by: coef });
        }
    }
    norm
}

/// `sqrt(Σ_params ‖g‖²)`, read back to the host once.
pub(crate) fn global_norm(model: &Llama, grads: &GradientsParams) -> f64 {
    struct SumSq<'a> {
        grads: &'a GradientsParams,
        parts: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for SumSq<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.parts.push(g.square().sum());
            }
        }
    }
    let mut v = SumSq {
        grads,
        parts: Vec::new(),
    };
    model.visit(&mut v);
    if v.parts.is_empty() {
        return 0.0;
    }
    let total: f32 = Tensor::cat(v.parts, 0).sum().into_scalar();
    f64::from(total).sqrt()
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    by: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g.mul_scalar(self.by));
        }
    }
}
