//! `pipelines/montessori.yaml` (issue 13) at reduced counts: the teachers,
//! the student's warm-up with its optimizer state, influence, pairs, teacher
//! DPO, each teacher's training set and student, and the evaluation run end
//! to end and report what the README's table needs. Bad input is refused:
//! a reference set that shares a prompt with a test set, probing rows
//! without `seed_prompt`, an optimizer state from another model.

use std::path::Path;

use crate::util::{Run, TestPipeline};

const SETS: &[&str] = &[
    "stages.data.params.teacher_rows=400",
    "stages.data.params.student_rows=40",
    "stages.data.params.test=20",
    "stages.data.params.reference=8",
    // 60 steps over 400 rows teach the teacher its tags (loss 0.25; 0.21
    // after the default 200 steps over 2,000).
    "stages.teacher.steps=60",
    "stages.student.steps=4",
    "stages.synth0.prompts=12",
    "stages.synth0.prompts_per_round=6",
    "stages.synth0.dedupe=null",
    "stages.solved0.params.warmup=4",
    "stages.solved0.params.probe=40",
    "stages.eval.sampling.max_tokens=6",
    // A 4-step student's influence labels are all one way (every step
    // helps it): pair by the solver's `solvable` instead, so that the
    // teachers have pairs (the shape of the pipeline is what is tested;
    // `no pairs` is a clear error, see below).
    "stages.pairs.label=solvable",
    "stages.pairs_random.label=solvable",
    // Iteration 2, reduced the same way.
    "stages.synth1.prompts=12",
    "stages.synth1.prompts_per_round=6",
    "stages.synth1.dedupe=null",
    "stages.solved1.params.warmup=4",
    "stages.solved1.params.probe=40",
    "stages.pairs2.label=solvable",
    "stages.teacher_tuned2.epochs=1",
    "stages.synth_tuned2.prompts=4",
    "stages.synth_tuned2.dedupe=null",
    "stages.student_tuned2.steps=2",
];

const ARMS: &[&str] = &["untuned", "tuned", "random", "loss"];

fn run(t: &TestPipeline, extra: &[String]) -> Run {
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/montessori.yaml");
    let cache = t.path("cache");
    let mut args: Vec<String> = vec!["run".into(), pipeline.display().to_string(), "--format".into(), "json".into(), "-q".into()];
    args.extend(["--cache-dir".into(), cache.display().to_string()]);
    for s in SETS.iter().map(|s| s.to_string()).chain(extra.iter().cloned()) {
        args.extend(["--set".into(), s]);
    }
    for arm in ARMS {
        for s in [format!("stages.synth_{arm}.prompts=4"), format!("stages.synth_{arm}.dedupe=null"), format!("stages.student_{arm}.steps=2")] {
            args.extend(["--set".into(), s]);
        }
    }
    for t in ["tuned", "random", "loss"] {
        args.extend(["--set".into(), format!("stages.teacher_{t}.epochs=1")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    t.retort(&args)
}

#[test]
fn montessori_runs_end_to_end_at_reduced_counts() {
    let t = TestPipeline::new("stages: {}\n");
    let r = run(&t, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.statuses().iter().all(|(_, s)| s == "ran"), "{:?}", r.statuses());
    let inf = r.stage("influence")["metrics"].clone();
    for key in ["helpful_share", "l_before", "score_median", "examples"] {
        assert!(inf.get(key).is_some(), "influence: missing {key}: {inf}");
    }
    assert!(r.stage("pairs")["metrics"]["pairs"].as_u64().unwrap() > 0);
    assert_eq!(r.stage("pairs_random")["metrics"]["pairs"], r.stage("pairs")["metrics"]["pairs"], "the same pairs, shuffled labels");
    for arm in ARMS {
        assert!(r.stage(&format!("ref_{arm}"))["metrics"].get("nll_lo").is_some());
    }
    let m = r.stage("eval")["metrics"].clone();
    for arm in ARMS.iter().chain(&["tuned2"]) {
        assert!(m.get(format!("student_{arm}/acc")).is_some(), "missing student_{arm}: {m}");
    }
    assert!(m.as_object().unwrap().keys().any(|k| k.starts_with("student_tuned_vs_student_untuned/")), "{m}");
    // The warm-up checkpoint carries its optimizer state.
    let hash = r.stage("warm")["outputs"]["model"]["hash"].as_str().unwrap().to_string();
    let dir = t.path("cache").join("objects").join(&hash[..2]).join(&hash[2..]);
    assert!(dir.join("optimizer.bpk").is_file() && dir.join("trainer_state.json").is_file(), "{}", dir.display());
}

/// Two tiny students (different widths), each warmed up with its optimizer
/// state, and an influence stage over rows.
const BAD: &str = r##"name: bad
seed: 1
models:
  a: {tiny: {preset: micro}}
stages:
  rows:
    kind: task
    task: file
    path: rows.jsonl
  refs:
    kind: task
    task: file
    path: refs.jsonl
  tests:
    kind: task
    task: file
    path: tests.jsonl
  warm:
    kind: train
    model: a
    data: rows
    objective: sft
    steps: 1
    batch_size: 2
    save_optimizer: true
  inf:
    kind: influence
    model: warm
    data: rows
    reference: refs
    tests: [tests]
  pairs:
    kind: pairs
    data: inf
"##;

const ROWS: &str = "{\"prompt\": \"sum 1 2\\n\", \"response\": \"1+2=3\"}\n{\"prompt\": \"sum 3 4\\n\", \"response\": \"3+4=7\"}\n";

#[test]
fn influence_refuses_a_reference_set_that_shares_a_test_prompt() {
    let t = TestPipeline::new(BAD);
    t.write("rows.jsonl", ROWS);
    t.write("refs.jsonl", "{\"prompt\": \"sum 5 6\\n\", \"response\": \"5+6=11\"}\n{\"prompt\": \"sum 7 8\\n\", \"response\": \"7+8=15\"}\n");
    t.write("tests.jsonl", "{\"prompt\": \"sum 9 9\\n\", \"gold\": \"18\"}\n{\"prompt\": \"sum 7 8\\n\", \"gold\": \"15\"}\n");
    let r = t.retort(&["run", "p.yaml", "--only", "inf"]);
    assert_ne!(r.code, 0);
    for want in ["inf", "reference row 1 is also row 1 of test set `tests`", "disjoint"] {
        assert!(r.stderr.contains(want), "{want:?} not in:\n{}", r.stderr);
    }
    // Disjoint: it runs, and rows without `seed_prompt` cannot be paired.
    t.write("tests.jsonl", "{\"prompt\": \"sum 9 9\\n\", \"gold\": \"18\"}\n");
    let r = t.retort(&["run", "p.yaml", "--format", "json"]);
    assert_ne!(r.code, 0);
    assert_eq!(r.status_of("inf"), "ran", "{}", r.stderr);
    for want in ["pairs", "data row 0 has no string field `seed_prompt`"] {
        assert!(r.stderr.contains(want), "{want:?} not in:\n{}", r.stderr);
    }
}

#[test]
fn influence_refuses_an_optimizer_state_from_another_model_and_a_model_without_one() {
    // The warm-up of a wider model, whose state is then put beside the
    // narrower model's weights.
    let wide = BAD.replace("a: {tiny: {preset: micro}}", "a: {tiny: {preset: micro}}\n  b: {tiny: {preset: micro, intermediate_size: 136}}")
        + "  warm_b:\n    kind: train\n    model: b\n    data: rows\n    objective: sft\n    steps: 1\n    batch_size: 2\n    save_optimizer: true\n";
    let t = TestPipeline::new(&wide);
    t.write("rows.jsonl", ROWS);
    t.write("refs.jsonl", "{\"prompt\": \"sum 5 6\\n\", \"response\": \"5+6=11\"}\n");
    t.write("tests.jsonl", "{\"prompt\": \"sum 9 9\\n\", \"gold\": \"18\"}\n");
    let r = t.retort(&["run", "p.yaml", "--only", "warm", "--only", "warm_b"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let path_of = |stage: &str| t.retort(&["show", "p.yaml", &format!("{stage}.model"), "--path"]).stdout.lines().last().unwrap().trim().to_string();
    let (a, b) = (path_of("warm"), path_of("warm_b"));
    let mixed = t.path("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    for f in std::fs::read_dir(&a).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, mixed.join(f.file_name().unwrap())).unwrap();
    }
    for f in ["optimizer.bpk", "trainer_state.json"] {
        std::fs::copy(Path::new(&b).join(f), mixed.join(f)).unwrap();
    }
    let p = wide.replace("  a: {tiny: {preset: micro}}", &format!("  a: {{tiny: {{preset: micro}}}}\n  mixed: {{path: {}}}", mixed.display()));
    t.write("p.yaml", &p.replace("  inf:\n    kind: influence\n    model: warm", "  inf:\n    kind: influence\n    model: mixed"));
    let r = t.retort(&["run", "p.yaml", "--only", "inf"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("does not belong to this model") && r.stderr.contains("in the optimizer state"), "{}", r.stderr);
    // Weights without any optimizer state: say how to get one.
    for f in ["optimizer.bpk", "trainer_state.json"] {
        std::fs::remove_file(mixed.join(f)).unwrap();
    }
    let r = t.retort(&["run", "p.yaml", "--only", "inf"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("has no optimizer state") && r.stderr.contains("save_optimizer: true"), "{}", r.stderr);
}
