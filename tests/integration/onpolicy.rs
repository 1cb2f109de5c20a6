//! `pipelines/onpolicy_sft.yaml` (issue 12) at reduced counts: the data,
//! the base, own samples, Hinted Decoding at β = 0 and 3, the φ scores,
//! every SFT/DFT/IDFT arm and both evaluations run end to end and report
//! what the README's table needs. Bad Hinted Decoding input is refused.

use std::path::Path;

use crate::util::{Run, TestPipeline};

const SETS: &[&str] = &[
    "stages.data.params.pretrain_a=24",
    "stages.data.params.pretrain_hint=24",
    "stages.data.params.train_a=10",
    "stages.data.params.test_a=6",
    "stages.data.params.b_repeats=1",
    "stages.base.steps=3",
    "stages.base.batch_size=8",
    "stages.own.sampling.max_tokens=12",
    "stages.hd0.sampling.max_tokens=12",
    "stages.hd3.sampling.max_tokens=12",
    "stages.hd_wrong.sampling.max_tokens=12",
    "stages.eval.sampling.max_tokens=8",
    // A 3-step base is right about nothing: keep the wrong rows instead, so
    // that every arm has data (the shape of the pipeline is what is tested).
    "stages.own_right.where.correct=false",
    "stages.hd0_right.where.correct=false",
    "stages.hd3_right.where.correct=false",
    "stages.mix.where.correct=false",
];

const ARMS: &[&str] = &["sft_raw", "dft_raw", "idft_raw", "sft_rs", "sft_hd0", "sft_hd3", "sft_mix", "idft_mix", "idft_mix_nodetach"];

fn run(t: &TestPipeline) -> Run {
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/onpolicy_sft.yaml");
    let cache = t.path("cache");
    let mut args: Vec<String> = vec!["run".into(), pipeline.display().to_string(), "--format".into(), "json".into(), "-q".into()];
    args.extend(["--cache-dir".into(), cache.display().to_string()]);
    for s in SETS {
        args.extend(["--set".into(), s.to_string()]);
    }
    for arm in ARMS {
        args.extend(["--set".into(), format!("stages.{arm}.steps=2"), "--set".into(), format!("stages.{arm}.batch_size=4")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    t.retort(&args)
}

#[test]
fn onpolicy_sft_runs_end_to_end_at_reduced_counts() {
    let t = TestPipeline::new("stages: {}\n");
    let r = run(&t);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.statuses().iter().all(|(_, s)| s == "ran"), "{:?}", r.statuses());
    // φ of every dataset, and what Hinted Decoding did.
    for d in ["raw", "rs", "hd0", "hd3", "mix"] {
        let m = r.stage(&format!("phi_{d}"))["metrics"].clone();
        for key in ["avg_phi", "phi_below_1", "phi_below_3", "phi_below_5", "phi_hist"] {
            assert!(m.get(key).is_some(), "phi_{d}: missing {key}: {m}");
        }
        assert_eq!(m["phi_hist"].as_array().unwrap().len(), 10);
    }
    for hd in ["hd0", "hd3"] {
        let m = r.stage(hd)["metrics"].clone();
        assert_eq!(m["rows"], 10, "{m}");
        let ends: u64 = ["eos", "stop", "length", "repeat"].iter().map(|e| m[format!("end_{e}")].as_u64().unwrap()).sum();
        assert_eq!(ends, 10, "{m}");
    }
    // β = 0 never mixes in the plain stream before the delimiter.
    let hd0 = r.stage("hd0")["metrics"].clone();
    let hd3 = r.stage("hd3")["metrics"].clone();
    assert!(hd0["avg_lambda"].as_f64().unwrap() <= hd3["avg_lambda"].as_f64().unwrap(), "{hd0} {hd3}");
    // IDFT and DFT log φ and γ.
    for arm in ["idft_raw", "dft_raw", "idft_mix"] {
        let m = r.stage(arm)["metrics"].clone();
        for key in ["last_phi_mean", "last_gamma_mean", "last_lambda"] {
            assert!(m.get(key).is_some(), "{arm}: missing {key}: {m}");
        }
    }
    assert_eq!(r.stage("dft_raw")["metrics"]["last_gamma_mean"], 1.0, "DFT is γ ≡ 1");
    for task in ["test_a", "test_b"] {
        let m = r.stage(&format!("eval@task={task}"))["metrics"].clone();
        for arm in ARMS.iter().chain(&["base"]) {
            for key in ["acc", "acc_lo", "acc_hi"] {
                assert!(m.get(format!("{arm}/{key}")).is_some(), "{task}: missing {arm}/{key}: {m}");
            }
        }
        assert!(m.as_object().unwrap().keys().any(|k| k.starts_with("sft_mix_vs_sft_raw/")), "{task}: no paired row: {m}");
    }
}

/// A tiny model and a row whose reference lacks the answer delimiter.
const BAD: &str = r##"name: bad
seed: 1
models:
  scratch:
    tiny: {preset: micro}
stages:
  rows:
    kind: task
    task: file
    path: rows.jsonl
  base:
    kind: train
    model: scratch
    data: rows
    objective: sft
    steps: 1
    batch_size: 1
  hd:
    kind: hint_rewrite
    model: base
    data: rows
    hint: "H {{ reference }}\n{{ prompt }}"
    delimiter: "#"
"##;

#[test]
fn hinted_decoding_refuses_a_reference_without_the_delimiter_and_a_negative_beta() {
    let rows = "{\"prompt\": \"A 1+2\\n\", \"reference\": \"three\", \"response\": \"x\"}\n";
    let t = TestPipeline::new(BAD);
    t.write("rows.jsonl", rows);
    let r = t.retort(&["run", "p.yaml"]);
    assert_ne!(r.code, 0);
    for want in ["hd", "data row 0", "no answer delimiter \"#\"", "set `delimiter:`"] {
        assert!(r.stderr.contains(want), "{want:?} not in:\n{}", r.stderr);
    }
    let t = TestPipeline::new(&BAD.replace("    delimiter: \"#\"\n", "    delimiter: \"#\"\n    beta: -1\n"));
    t.write("rows.jsonl", rows);
    let r = t.retort(&["validate", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("p.yaml:") && r.stderr.contains("`beta` is -1"), "{}", r.stderr);
}

/// `cll_score`'s `precision: bf16` runs only on packed (GGUF) weights: on a
/// model trained here it is one clear error naming the fix.
#[test]
fn bf16_scoring_refuses_a_model_without_packed_weights() {
    let yaml = BAD.replace("  hd:\n    kind: hint_rewrite", "  phi:\n    kind: cll_score\n    model: base\n    data: rows\n    precision: bf16\n  hd:\n    kind: hint_rewrite");
    let t = TestPipeline::new(&yaml);
    t.write("rows.jsonl", "{\"prompt\": \"A 1+2\\n\", \"reference\": \"#3\", \"response\": \"3\"}\n");
    let r = t.retort(&["run", "p.yaml", "--only", "phi"]);
    assert_ne!(r.code, 0);
    for want in ["phi", "`precision: bf16` needs model `base`", "use `precision: f32`"] {
        assert!(r.stderr.contains(want), "{want:?} not in:\n{}", r.stderr);
    }
}

/// On SmolLM2's Q4_1 GGUF, `precision: bf16` scores every row within a
/// few hundredths of f32 (the bench measured a mean |Δ avg φ| of 0.006).
#[test]
fn bf16_scoring_stays_near_f32_on_smollm2() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        eprintln!("skipping: models/SmolLM2-135M-Instruct.Q4_1.gguf is missing (scripts/fetch-smollm2.sh)");
        return;
    }
    let mut yaml = format!("name: bf16\nseed: 1\nmodels:\n  smol: {{path: {}}}\nstages:\n  rows:\n    kind: task\n    task: file\n    path: rows.jsonl\n", model.display());
    for p in ["f32", "bf16"] {
        yaml += &format!("  phi_{p}:\n    kind: cll_score\n    model: smol\n    data: rows\n    field: reference\n    precision: {p}\n");
    }
    let t = TestPipeline::new(&yaml);
    let rows: String = (0..6)
        .map(|i| format!("{{\"prompt\": \"What is {i} + {i}?\", \"reference\": \"{i} + {i} = {}. The answer is {}.\"}}\n", 2 * i, 2 * i))
        .collect();
    t.write("rows.jsonl", &rows);
    let r = t.retort(&["run", "p.yaml", "--format", "json", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let phi = |p: &str| -> Vec<f64> {
        let out = t.retort(&["show", "p.yaml", &format!("phi_{p}.out"), "-q"]);
        out.stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["avg_phi"].as_f64().unwrap()).collect()
    };
    let (a, b) = (phi("f32"), phi("bf16"));
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 0.05, "f32 {a:?} vs bf16 {b:?}");
    }
    // Different arithmetic, different fingerprints: both ran.
    assert_ne!(r.stage("phi_f32")["fingerprint"], r.stage("phi_bf16")["fingerprint"]);
}
