//! The optimizer's half of a checkpoint and local data influence on a
//! micro model: the state's bytes round-trip, a resumed run equals an
//! uninterrupted one bit for bit, a state from another model is refused,
//! and an influence score equals a hand-computed AdamW step followed by
//! the reference loss.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use super::influence::Influence;
use super::state::{param_shapes, OptimState, OPTIMIZER_FILE, TRAINER_STATE_FILE};
use super::trainer::{make_batch, truncate};
use super::*;
use crate::config::LlamaConfig;
use crate::model::Llama;
use crate::rng::Rng;
use crate::test_util::device;
use crate::weights::hf_tensors;

const VOCAB: usize = 24;

fn micro(seed: u64) -> Llama {
    LlamaConfig::preset("micro", VOCAB).unwrap().init_seeded(seed, &device())
}

fn rows(n: usize, seed: u64) -> Vec<SftExample> {
    let mut rng = Rng::for_item(seed, 1);
    let mut tok = || 2 + (rng.next_u64() % (VOCAB as u64 - 2)) as u32;
    (0..n).map(|_| SftExample { prompt: (0..4).map(|_| tok()).collect(), response: (0..5).map(|_| tok()).collect() }).collect()
}

fn cfg(steps: usize) -> TrainConfig {
    TrainConfig {
        lr: 3e-3,
        // The schedule depends on the run's length: resuming must go on
        // from the step reached, not restart it.
        schedule: LrSchedule::WarmupCosine { warmup_steps: 2, total_steps: 0, min_lr_ratio: 0.1 },
        steps: Some(steps),
        batch_size: 2,
        weight_decay: 0.01,
        seed: 5,
        ..TrainConfig::default()
    }
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one_bit_for_bit() {
    let data = rows(10, 1);
    let (whole, whole_state) = train_sft_resumable(micro(3), &data, SftLoss::Nll, &cfg(8), None, &mut |_| {}).unwrap();
    assert_eq!(whole_state.step, 8);

    // 3 steps of the same 8-step run, saved to disk, restored, the other 5.
    let first = cfg(8);
    let short = TrainConfig { steps: Some(3), schedule: LrSchedule::WarmupCosine { warmup_steps: 2, total_steps: 8, min_lr_ratio: 0.1 }, ..first.clone() };
    let (half, state) = train_sft_resumable(micro(3), &data, SftLoss::Nll, &short, None, &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    state.save_dir(dir.path()).unwrap();
    crate::weights::save_safetensors_dir(&half, dir.path()).unwrap();
    let loaded = crate::weights::load_safetensors_dir(dir.path(), &device()).unwrap();
    let restored = OptimState::load_dir(dir.path(), &first).unwrap();
    assert_eq!((restored.step, restored.last_lr), (3, state.last_lr));
    let mut steps = Vec::new();
    let (resumed, end) =
        train_sft_resumable(loaded, &data, SftLoss::Nll, &first, Some(&restored), &mut |m| steps.push(m.step)).unwrap();
    assert_eq!(steps, [3, 4, 5, 6, 7], "only the steps not yet taken run, numbered as in the whole run");
    assert_eq!(end.step, 8);
    assert_eq!(hf_tensors(&resumed), hf_tensors(&whole));

    // Without the moments the same continuation ends elsewhere: the test
    // above can fail.
    let fresh = OptimState { step: 3, ..whole_state.clone() };
    let fresh = OptimState { optim: super::optim::adamw(&first), ..fresh };
    let (other, _) = train_sft_resumable(half.clone(), &data, SftLoss::Nll, &first, Some(&fresh), &mut |_| {}).unwrap();
    assert_ne!(hf_tensors(&other), hf_tensors(&whole));
}

#[test]
fn the_state_bytes_round_trip() {
    let (model, state) = train_sft_resumable(micro(4), &rows(6, 2), SftLoss::Nll, &cfg(2), None, &mut |_| {}).unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    state.save_dir(a.path()).unwrap();
    let back = OptimState::load_dir(a.path(), &cfg(2)).unwrap();
    assert_eq!(back.shapes, param_shapes(&model));
    back.save_dir(b.path()).unwrap();
    for f in [OPTIMIZER_FILE, TRAINER_STATE_FILE] {
        let (x, y) = (std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap());
        assert!(!x.is_empty());
        assert_eq!(x, y, "{f} changed on a round trip");
    }
    assert!(OptimState::exists_in(a.path()));
    assert!(!OptimState::exists_in(&a.path().join("nowhere")));
}

#[test]
fn a_state_from_another_model_is_refused() {
    let (_, state) = train_sft_resumable(micro(4), &rows(4, 2), SftLoss::Nll, &cfg(1), None, &mut |_| {}).unwrap();
    let mut wider = LlamaConfig::preset("micro", VOCAB).unwrap();
    wider.intermediate_size += 8;
    let other = wider.init_seeded(1, &device());
    let e = state.check_model(&other).unwrap_err().to_string();
    assert!(e.contains("parameter") && e.contains("in the optimizer state"), "{e}");
    let e = train_sft_resumable(other, &rows(4, 2), SftLoss::Nll, &cfg(3), Some(&state), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("does not belong to this model"), "{e}");
    // A state that has taken every step of the run is refused too.
    let model = micro(4);
    let (_, done) = train_sft_resumable(model.clone(), &rows(4, 2), SftLoss::Nll, &cfg(2), None, &mut |_| {}).unwrap();
    let e = train_sft_resumable(model, &rows(4, 2), SftLoss::Nll, &cfg(2), Some(&done), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("already taken 2"), "{e}");
}

/// Every parameter's values, in canonical (visit) order.
fn params(model: &Llama) -> Vec<Vec<f32>> {
    struct V(Vec<Vec<f32>>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
        }
    }
    let mut v = V(Vec::new());
    model.visit(&mut v);
    v.0
}

/// The gradient of `z`'s token-mean SFT loss at `model`'s weights, per parameter.
fn grads(model: &Llama, z: &SftExample) -> Vec<Vec<f32>> {
    let m = model.clone().train();
    let seq = truncate(&z.prompt, &z.response, 64);
    let batch = make_batch(&[&seq], &m.device());
    let logits = m.forward(batch.inputs, &m.causal_layout(1, batch.width), None);
    let g = GradientsParams::from_grads(losses::sft_loss(logits, batch.targets, batch.mask).0.backward(), &m);
    struct V<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = self.0.get::<D>(p.id).expect("every parameter has a gradient");
            self.1.push(g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
        }
    }
    let mut v = V(&g, Vec::new());
    m.visit(&mut v);
    v.1
}

/// `model` with these parameter values (canonical order).
fn with_params(model: Llama, values: &[Vec<f64>]) -> Llama {
    struct Set<'a>(&'a [Vec<f64>], usize);
    impl ModuleMapper for Set<'_> {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let v: Vec<f32> = self.0[self.1].iter().map(|&x| x as f32).collect();
            self.1 += 1;
            p.map(|t| {
                let shape = t.dims();
                Tensor::from_data(TensorData::new(v, shape), &t.device())
            })
        }
    }
    model.map(&mut Set(values, 0))
}

#[test]
fn an_influence_score_is_one_hand_computed_adamw_step_then_the_reference_loss() {
    // Warm-up: one step on one example (batch 1, no clipping, no decay),
    // so AdamW's state is t = 1, m = (1−β1)g0, v = (1−β2)g0².
    let (b1, b2, eps, lr_w, lr) = (0.9f64, 0.999f64, 1e-8f64, 1e-2f64, 5e-3f64);
    let train = TrainConfig { lr: lr_w, steps: Some(1), batch_size: 1, grad_clip: None, max_len: 64, ..TrainConfig::default() };
    let base = micro(9);
    let warm_data = rows(1, 3);
    let (warm, state) = train_sft_resumable(base.clone(), &warm_data, SftLoss::Nll, &train, None, &mut |_| {}).unwrap();
    let g0 = grads(&base, &warm_data[0]);
    let p0 = params(&base);
    let adam = |p: f64, m: f64, v: f64, t: i32, lr: f64| p - lr * (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + eps);
    let mut m1 = Vec::new();
    let mut v1 = Vec::new();
    for (k, (p, g)) in p0.iter().zip(&g0).enumerate() {
        m1.push(g.iter().map(|&g| (1.0 - b1) * g as f64).collect::<Vec<_>>());
        v1.push(g.iter().map(|&g| (1.0 - b2) * (g as f64).powi(2)).collect::<Vec<_>>());
        let p1 = params(&warm)[k].clone();
        for i in 0..p.len() {
            let want = adam(p[i] as f64, m1[k][i], v1[k][i], 1, lr_w);
            assert!((want - p1[i] as f64).abs() < 1e-5, "warm-up step, parameter {k}[{i}]: {want} vs {}", p1[i]);
        }
    }

    // The probe: restore, one step on z at lr (t = 2), reference loss.
    let (z, reference) = (rows(1, 4).remove(0), rows(6, 5));
    let probe_cfg = TrainConfig { batch_size: 4, ..train.clone() };
    let inf_state = state.clone();
    let inf = Influence::new(warm.clone(), state, &reference, lr, &probe_cfg).unwrap();
    let g1 = grads(&warm, &z);
    let p1 = params(&warm);
    let p2: Vec<Vec<f64>> = (0..p1.len())
        .map(|k| {
            (0..p1[k].len())
                .map(|i| {
                    let g = g1[k][i] as f64;
                    let m = b1 * m1[k][i] + (1.0 - b1) * g;
                    let v = b2 * v1[k][i] + (1.0 - b2) * g * g;
                    adam(p1[k][i] as f64, m, v, 2, lr)
                })
                .collect()
        })
        .collect();
    let ref_loss = |model: &Llama| {
        let seqs: Vec<_> = reference.iter().map(|e| truncate(&e.prompt, &e.response, 64)).collect();
        let b = make_batch(&seqs.iter().collect::<Vec<_>>(), &model.device());
        let logits = model.forward(b.inputs, &model.causal_layout(seqs.len(), b.width), None);
        let v: f32 = losses::sft_loss(logits, b.targets, b.mask).0.into_scalar();
        v as f64
    };
    let before = ref_loss(&warm);
    assert!((inf.before() - before).abs() < 1e-5, "L_before {} vs {before}", inf.before());
    let want = ref_loss(&with_params(warm.clone(), &p2));
    let got = inf.score(0, &z).unwrap();
    assert!((got - want).abs() < 1e-4, "L_after {got} vs hand-computed {want}");
    assert!((got - before).abs() > 1e-4, "the step moved the reference loss");
    // Restoring is per probe: the same probe scores the same again, and
    // side by side with others (one per thread) it scores the same bits.
    assert_eq!(inf.score(0, &z).unwrap(), got);
    let others = rows(5, 6);
    let alone: Vec<f64> = others.iter().enumerate().map(|(i, o)| inf.score(i, o).unwrap()).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let together: Vec<f64> = pool.install(|| {
        assert_eq!(inf.parallelism(), 3, "a micro model is scored one probe per thread");
        inf.score_many(&others.iter().enumerate().collect::<Vec<_>>()).into_iter().map(Result::unwrap).collect()
    });
    assert_eq!(together, alone);
    // The drift: a step on the moments alone (m2 = β1·m1, v2 = β2·v1).
    let p_drift: Vec<Vec<f64>> = (0..p1.len())
        .map(|k| (0..p1[k].len()).map(|i| adam(p1[k][i] as f64, b1 * m1[k][i], b2 * v1[k][i], 2, lr)).collect())
        .collect();
    let want_drift = ref_loss(&with_params(warm.clone(), &p_drift));
    let inf2 = Influence::new(warm.clone(), inf_state.clone(), &reference, lr, &probe_cfg).unwrap();
    let drift = inf2.drift().unwrap();
    assert!((drift - want_drift).abs() < 1e-4, "drift {drift} vs hand-computed {want_drift}");
    // Training-loss scoring: the warm model's own loss on z, no step.
    let own = inf.training_loss(0, &z).unwrap();
    let seq = truncate(&z.prompt, &z.response, 64);
    let b = make_batch(&[&seq], &warm.device());
    let logits = warm.forward(b.inputs, &warm.causal_layout(1, b.width), None);
    let direct: f32 = losses::sft_loss(logits, b.targets, b.mask).0.into_scalar();
    assert!((own - direct as f64).abs() < 1e-6);
    // A probe without a response is a clear error naming it.
    let e = inf.score(7, &SftExample { prompt: vec![3, 4], response: vec![] }).unwrap_err();
    assert!(e.to_string().contains("probing example 7"), "{e}");
}
