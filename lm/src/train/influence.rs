//! Local data influence (Montessori-Instruct, METHODS §5 M5): what one
//! optimizer step on one example does to a model's loss on a reference set.
//!
//! For each probing example `z`: restore the warmed-up weights and AdamW
//! state, take one AdamW step on `z` alone (batch size 1, response-only
//! loss), and measure the reference loss `L_after`. The score is
//! `L_after`; `z` helped when it is below `L_before`, the reference loss
//! of the warm model itself.
//!
//! Restoring is cheap by construction: burn tensors are immutable shared
//! handles, so "restoring" the weights and the moments is cloning handles;
//! the step writes new buffers and the warm ones stay as they were. Only
//! the step itself allocates (what a PyTorch implementation does with
//! `load_state_dict` is a copy of every tensor per example).
//!
//! The reference loss is the token mean of the masked cross-entropy over
//! every response token of the reference set (our choice where METHODS
//! says "mean masked CE over D_ref"), computed in micro-batches without
//! gradients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use burn::tensor::Tensor;

use crate::error::LmError;
use crate::model::Llama;
use crate::train::losses::sft_loss;
use crate::train::schedule::LrSchedule;
use crate::train::sft::SftExample;
use crate::train::state::{param_shapes, OptimState};
use crate::train::trainer::{bad, check_ids, host, make_batch, micro_batches, truncate, Batch, Seq, TrainConfig, Trainer};

/// A warmed-up model, its optimizer state and a reference set, ready to
/// score probing examples one at a time.
pub struct Influence {
    warm: Llama,
    state: OptimState,
    cfg: TrainConfig,
    reference: Vec<Batch>,
    before: f64,
    vocab: usize,
    /// Few enough parameters to score probes side by side (see [`PARALLEL_BELOW`]).
    small: bool,
    /// Nanoseconds spent restoring (building the trainer from the warm
    /// handles), summed over every probe scored.
    restore_ns: AtomicU64,
}

/// Below this many parameters a model's products are too small for gemm
/// to spread over the cores, so probes are scored side by side, one per
/// thread, instead (each alone: the same bits as one after the other).
const PARALLEL_BELOW: usize = 20_000_000;

impl Influence {
    /// Prepares scoring: checks that `state` belongs to `warm`, batches the
    /// reference set (`cfg.batch_size` rows per forward pass, `cfg.max_len`
    /// truncation) and computes `L_before`. The one step per probe uses
    /// `lr` at a constant rate and `cfg`'s AdamW settings and clipping.
    ///
    /// # Errors
    /// An invalid `cfg` or `lr`, an empty reference set or one without
    /// response tokens, ids outside the vocabulary, a state from another model.
    pub fn new(warm: Llama, state: OptimState, references: &[SftExample], lr: f64, cfg: &TrainConfig) -> Result<Self, LmError> {
        cfg.validate(&warm)?;
        if !(lr.is_finite() && lr > 0.0) {
            return Err(bad(format!("the influence step's `lr` is {lr}: set a positive learning rate (default: the warm-up's last)")));
        }
        state.check_model(&warm)?;
        let vocab = warm.config().vocab_size;
        let mut seqs = Vec::with_capacity(references.len());
        for (i, e) in references.iter().enumerate() {
            check_ids("reference example", i, &e.prompt, vocab)?;
            check_ids("reference example", i, &e.response, vocab)?;
            seqs.push(truncate(&e.prompt, &e.response, cfg.max_len));
        }
        if seqs.iter().all(|s| s.n_scored() == 0) {
            return Err(bad("the reference set has no response tokens to score: give it rows with a non-empty `response`"));
        }
        let device = warm.device();
        let reference = micro_batches((0..seqs.len()).collect(), |i| seqs[i].tokens.len(), cfg.batch_size)
            .into_iter()
            .map(|mb| make_batch(&mb.iter().map(|&i| &seqs[i]).collect::<Vec<&Seq>>(), &device))
            .filter(|b| b.n_tokens > 0)
            .collect();
        let cfg = TrainConfig { lr, schedule: LrSchedule::Constant, ..cfg.clone() };
        let small = param_shapes(&warm).iter().map(|s| s.iter().product::<usize>()).sum::<usize>() < PARALLEL_BELOW;
        let mut me = Influence { warm, state, cfg, reference, before: 0.0, vocab, small, restore_ns: AtomicU64::new(0) };
        me.before = me.reference_loss(&me.warm);
        Ok(me)
    }

    /// `L_before`: the warm model's reference loss.
    pub fn before(&self) -> f64 {
        self.before
    }

    /// The reference loss after one step with a zero gradient: where the
    /// restored moments alone take the model (AdamW's `m` keeps 90% of the
    /// warm-up's direction). An example beats this when its own gradient,
    /// not the momentum, lowers the loss.
    ///
    /// # Errors
    /// None in practice (the state was checked in [`new`](Self::new)).
    pub fn drift(&self) -> Result<f64, LmError> {
        let b = self.reference.first().expect("a reference batch exists (checked in new)");
        // 0 · (a function of every parameter): a zero gradient for each.
        self.after_one_step(|model| loss_of(model, b).0.mul_scalar(0.0))
    }

    /// Restores the warm model and optimizer, takes one step on the loss
    /// `loss(model)` builds, and returns the reference loss after it.
    fn after_one_step(&self, loss: impl FnOnce(&Llama) -> Tensor<1>) -> Result<f64, LmError> {
        let t = Instant::now();
        let mut tr = Trainer::resume(self.warm.clone(), &self.cfg, self.state.step + 1, &self.state)?;
        self.restore_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let l = loss(tr.model());
        tr.backward(l);
        tr.step();
        Ok(self.reference_loss(&tr.snapshot()))
    }

    /// The token-mean reference loss of `model` (plain device).
    fn reference_loss(&self, model: &Llama) -> f64 {
        let (mut sum, mut n) = (0.0, 0usize);
        for b in &self.reference {
            let (loss, count) = loss_of(model, b);
            sum += host(loss) * count as f64;
            n += count;
        }
        sum / n.max(1) as f64
    }

    fn seq(&self, index: usize, z: &SftExample) -> Result<Seq, LmError> {
        check_ids("probing example", index, &z.prompt, self.vocab)?;
        check_ids("probing example", index, &z.response, self.vocab)?;
        let seq = truncate(&z.prompt, &z.response, self.cfg.max_len);
        if seq.n_scored() == 0 {
            return Err(bad(format!("probing example {index} has no response tokens: every example needs a non-empty response")));
        }
        Ok(seq)
    }

    /// `L_after` for probing example `z` (its index names it in errors):
    /// restore, one AdamW step on `z` alone, the reference loss.
    ///
    /// # Errors
    /// An example without response tokens or with ids outside the vocabulary.
    pub fn score(&self, index: usize, z: &SftExample) -> Result<f64, LmError> {
        let seq = self.seq(index, z)?;
        self.after_one_step(|model| loss_of(model, &make_batch(&[&seq], &model.device())).0)
    }

    /// Seconds spent restoring, summed over every probe scored so far.
    pub fn restore_secs(&self) -> f64 {
        self.restore_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// How many probes [`score_many`](Self::score_many) scores at once:
    /// one per thread for a small model, else one.
    pub fn parallelism(&self) -> usize {
        if self.small {
            rayon::current_num_threads().max(1)
        } else {
            1
        }
    }

    /// [`score`](Self::score) of each `(index, example)`, side by side on
    /// rayon's threads when the model is small (see [`parallelism`](Self::parallelism)).
    pub fn score_many(&self, probes: &[(usize, &SftExample)]) -> Vec<Result<f64, LmError>> {
        if self.parallelism() > 1 {
            probes.par_iter().map(|&(i, z)| self.score(i, z)).collect()
        } else {
            probes.iter().map(|&(i, z)| self.score(i, z)).collect()
        }
    }

    /// The warm model's own loss on `z` (training-loss scoring, the paper's
    /// ablation): no step, one forward pass.
    ///
    /// # Errors
    /// As [`score`](Self::score).
    pub fn training_loss(&self, index: usize, z: &SftExample) -> Result<f64, LmError> {
        let seq = self.seq(index, z)?;
        Ok(host(loss_of(&self.warm, &make_batch(&[&seq], &self.warm.device())).0))
    }
}

/// The token-mean SFT loss of `batch` under `model` (on the model's device,
/// the batch moved there if need be) and its token count.
fn loss_of(model: &Llama, batch: &Batch) -> (Tensor<1>, usize) {
    let device = model.device();
    let [b, t] = batch.inputs.dims();
    let logits = model.forward(batch.inputs.clone().to_device(&device), &model.causal_layout(b, t), None);
    sft_loss(logits, batch.targets.clone().to_device(&device), batch.mask.clone().to_device(&device))
}
