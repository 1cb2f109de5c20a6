//! The training path on burn's wgpu backend against the CPU: one SFT step's
//! loss, gradients and update, and GRPO's per-token log-probs.
//!
//! Built only with `--features wgpu`; run by `scripts/test-wgpu.sh` (from
//! `scripts/test-slow.sh`), which installs Mesa's lavapipe so that these
//! machines, which have no GPU, have a Vulkan device. Without any adapter
//! the tests skip, saying so, unless `RETORT_REQUIRE_WGPU` is set (the
//! script sets it: there a skip would hide a broken driver install).
//!
//! Tolerances: the two backends reduce in different orders (and lavapipe's
//! shaders are LLVM-compiled f32), so results agree to float rounding, not
//! bit for bit. The bounds below are f32 rounding with a wide margin; they
//! have not yet been checked against lavapipe (see the README's status).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use super::grpo::tempered_logprobs;
use super::losses::sft_loss;
use super::trainer::{make_batch, Seq, TrainConfig, Trainer};
use crate::config::LlamaConfig;
use crate::model::Llama;
use crate::rng::Rng;
use crate::weights::{hf_tensors, load_safetensors_dir, save_safetensors_dir};
use crate::DeviceKind;

const VOCAB: usize = 96;
/// Loss and log-probs: absolute.
const TOL_VALUE: f32 = 1e-4;
/// Gradients and weights: relative to the tensor's largest magnitude.
const TOL_REL: f32 = 1e-3;

/// The wgpu device, or `None` (with a notice) when this machine has no
/// adapter and `RETORT_REQUIRE_WGPU` is unset.
fn wgpu() -> Option<Device> {
    match DeviceKind::Wgpu.device() {
        Ok(d) => {
            eprintln!("wgpu: {}", DeviceKind::Wgpu.describe().unwrap());
            Some(d)
        }
        Err(e) if std::env::var_os("RETORT_REQUIRE_WGPU").is_none() => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("RETORT_REQUIRE_WGPU is set but wgpu is unusable: {e}"),
    }
}

/// The `tiny` preset from one seed, on the CPU and (through a safetensors
/// round trip, so the bytes are the same) on `gpu`.
fn tiny_pair(gpu: &Device) -> (Llama, Llama) {
    let cpu = DeviceKind::Cpu.device().unwrap();
    let model = LlamaConfig::preset("tiny", VOCAB).unwrap().init_seeded(7, &cpu);
    let dir = tempfile::tempdir().unwrap();
    save_safetensors_dir(&model, dir.path()).unwrap();
    let on_gpu = load_safetensors_dir(dir.path(), gpu).unwrap();
    (model, on_gpu)
}

/// Four prompt/response sequences of different lengths (so the batch pads).
fn seqs() -> Vec<Seq> {
    let mut rng = Rng::for_item(3, 0);
    [(6, 20), (9, 11), (4, 27), (12, 8)]
        .into_iter()
        .map(|(prompt, response)| Seq {
            tokens: (0..prompt + response).map(|_| 2 + (rng.next_u64() % (VOCAB as u64 - 2)) as u32).collect(),
            resp_start: prompt,
        })
        .collect()
}

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Every parameter's gradient, flattened, in visit order.
fn grads_of(model: &Llama, grads: &GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<Vec<f32>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self.grads.get::<D>(param.id).expect("every parameter has a gradient");
            self.out.push(host(g.flatten(0, D - 1)));
        }
    }
    let mut c = Collect { grads, out: Vec::new() };
    model.visit(&mut c);
    c.out
}

/// One SFT step: `(loss, gradients, global grad norm, weights after the
/// AdamW update)`.
fn sft_step(model: Llama) -> (f32, Vec<Vec<f32>>, f64, Vec<(String, Vec<usize>, Vec<f32>)>) {
    let cfg = TrainConfig { lr: 1e-3, ..TrainConfig::default() };
    let mut tr = Trainer::new(model, &cfg, 1);
    let seqs = seqs();
    let rows: Vec<&Seq> = seqs.iter().collect();
    let loss = |tr: &Trainer| {
        let batch = make_batch(&rows, &tr.device());
        let model = tr.model();
        let [b, t] = batch.inputs.dims();
        let logits = model.forward(batch.inputs, &model.causal_layout(b, t), None);
        sft_loss(logits, batch.targets, batch.mask).0
    };
    // A backward pass consumes its graph: one forward for reading the
    // gradients, a second for the trainer's own step.
    let first = loss(&tr);
    let value = host(first.clone())[0];
    let grads = grads_of(tr.model(), &GradientsParams::from_grads(first.backward(), tr.model()));
    let second = loss(&tr);
    tr.backward(second);
    let (_, norm) = tr.step();
    (value, grads, norm, hf_tensors(&tr.finish()))
}

#[track_caller]
fn assert_close_rel(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    assert!(worst <= rel * scale, "{what}: max |wgpu − cpu| = {worst:e}, above {rel} × {scale:e}");
}

#[test]
fn wgpu_sft_step_matches_cpu() {
    let Some(gpu) = wgpu() else { return };
    let (cpu_model, gpu_model) = tiny_pair(&gpu);
    let (cpu_loss, cpu_grads, cpu_norm, cpu_after) = sft_step(cpu_model);
    let (gpu_loss, gpu_grads, gpu_norm, gpu_after) = sft_step(gpu_model);
    eprintln!("loss cpu {cpu_loss} wgpu {gpu_loss}; grad norm cpu {cpu_norm} wgpu {gpu_norm}");
    assert!((cpu_loss - gpu_loss).abs() <= TOL_VALUE, "loss: cpu {cpu_loss}, wgpu {gpu_loss}");
    assert!((cpu_norm - gpu_norm).abs() <= f64::from(TOL_REL) * cpu_norm, "grad norm: cpu {cpu_norm}, wgpu {gpu_norm}");
    assert_eq!(cpu_grads.len(), gpu_grads.len());
    for (i, (g, c)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        assert_close_rel(&format!("gradient of parameter {i}"), g, c, TOL_REL);
    }
    // The AdamW update ran on the device too: after one step at lr 1e-3
    // every weight moved by at most ~lr, the same way on both.
    for ((name, shape, g), (_, _, c)) in gpu_after.iter().zip(&cpu_after) {
        let worst = g.iter().zip(c).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 2e-3, "{name} {shape:?}: weights after the step differ by {worst:e}");
    }
}

#[test]
fn wgpu_grpo_logprobs_match_cpu() {
    let Some(gpu) = wgpu() else { return };
    let (cpu_model, gpu_model) = tiny_pair(&gpu);
    let seqs = seqs();
    let rows: Vec<&Seq> = seqs.iter().collect();
    for temperature in [1.0f32, 0.7] {
        let lp = |model: &Llama| {
            let batch = make_batch(&rows, &model.device());
            let mask: Vec<f32> = batch.mask.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            let lp: Vec<f32> = tempered_logprobs(model, &batch, temperature).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            (lp, mask)
        };
        let ((c, mask), (g, _)) = (lp(&cpu_model), lp(&gpu_model));
        let mut scored = 0;
        for (i, ((c, g), m)) in c.iter().zip(&g).zip(&mask).enumerate() {
            if *m > 0.0 {
                scored += 1;
                assert!((c - g).abs() <= TOL_VALUE, "T={temperature}, position {i}: cpu {c}, wgpu {g}");
            }
        }
        assert_eq!(scored, 66, "every response token is scored");
    }
}
