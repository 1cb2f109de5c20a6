//! `pipelines/cascod.yaml` (issue 11) at reduced counts: the program
//! teacher, the split, all six arms and the four evaluations run end to end
//! and report what the README's table needs; cascaded inference equals the
//! same two calls made by hand with `retort sample`.

use std::path::Path;

use serde_json::Value;

use crate::util::{Run, TestPipeline};

const SETS: &[&str] = &[
    "stages.teacher.params.train=24",
    "stages.teacher.params.test=4",
    "stages.answer_sft.steps=2",
    "stages.std_cot.steps=2",
    "stages.weighted_std_cot.steps=2",
    "stages.cascod.steps=2",
    "stages.answer_sft.batch_size=4",
    "stages.std_cot.batch_size=4",
    "stages.weighted_std_cot.batch_size=4",
    "stages.cascod.batch_size=4",
    "stages.eval.sampling.max_tokens=12",
    // One sequence per forward pass, as `retort sample` runs it, so the
    // hand-driven calls see the same numerics.
    "stages.eval.batch_size=1",
];

fn run(t: &TestPipeline, extra: &[&str]) -> Run {
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/cascod.yaml");
    let cache = t.path("cache");
    let mut args: Vec<String> = vec!["run".into(), pipeline.display().to_string(), "--format".into(), "json".into(), "-q".into()];
    args.extend(["--cache-dir".into(), cache.display().to_string()]);
    for s in SETS {
        args.extend(["--set".into(), s.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    t.retort(&args)
}

/// The stored object of a stage's output, from the run summary's hash
/// (runs with `--set` write no lock, so `retort show` cannot find them).
fn stored_path(t: &TestPipeline, r: &Run, stage: &str, output: &str) -> String {
    let hash = r.stage(stage)["outputs"][output]["hash"].as_str().unwrap().to_string();
    t.path("cache").join("objects").join(&hash[..2]).join(&hash[2..]).display().to_string()
}

/// Greedy text of `retort sample` on `prompt` (special tokens removed).
fn sample(t: &TestPipeline, model: &str, prompt: &str, max_tokens: usize) -> String {
    let n = max_tokens.to_string();
    let r = t.retort(&["sample", "--model", model, "--prompt", prompt, "--max-tokens", &n, "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let mut text = v["text"].as_str().unwrap().to_string();
    for special in ["<|endoftext|>", "<pad>", "<|im_start|>", "<|im_end|>"] {
        text = text.replace(special, "");
    }
    text
}

#[test]
fn cascod_runs_end_to_end_at_reduced_counts() {
    let t = TestPipeline::new("stages: {}\n");
    let r = run(&t, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.statuses().iter().all(|(_, s)| s == "ran"), "{:?}", r.statuses());
    let train = r.stage("cascod@alpha=0.3")["metrics"].clone();
    for key in ["last_loss_rationale", "last_loss_answer"] {
        assert!(train.get(key).is_some(), "missing {key}: {train}");
    }
    let arms = ["answer_sft", "std_cot", "weighted_std_cot", "cascod@alpha=0.1", "cascod@alpha=0.3", "cascod@alpha=0.5"];
    for split in ["ind", "ood"] {
        for mode in ["cascade", "one_pass"] {
            let m = r.stage(&format!("eval@split={split},mode={mode}"))["metrics"].clone();
            for arm in arms {
                for key in ["acc", "acc_lo", "acc_hi", "consistency", "cue_follow"] {
                    assert!(m.get(format!("{arm}/{key}")).is_some(), "{split} {mode}: missing {arm}/{key}: {m}");
                }
            }
            for cmp in ["std_cot_vs_answer_sft", "cascod@alpha=0.1_vs_weighted_std_cot"] {
                assert!(m.get(format!("{cmp}/p_mcnemar")).is_some(), "missing {cmp}: {m}");
            }
        }
    }
    let again = run(&t, &[]);
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", again.statuses());
    cascade_equals_two_hand_driven_calls(&t, &r);
    resumed_after_step_one_gives_the_same_rows(&t, &r);
}

/// Step 2 continues step 1's KV cache; an item whose step 1 comes from the
/// item cache (a run resumed between the steps) has no kept state and
/// encodes its whole answer prompt. Both give the same rows, in batches of 4
/// (left padding, different shared prefixes). Step 1's items are put in the
/// cache by a `generate` stage with step 1's prompts and settings (the same
/// item keys).
fn resumed_after_step_one_gives_the_same_rows(t: &TestPipeline, r: &Run) {
    let model = stored_path(t, r, "cascod@alpha=0.1", "model");
    let tasks_path = stored_path(t, r, "teacher", "ind");
    let tasks = std::fs::read_to_string(&tasks_path).unwrap();
    let firsts: String = tasks
        .lines()
        .map(|l| {
            let task: Value = serde_json::from_str(l).unwrap();
            let prompt = format!("Q:{}\n\nA:Rationale:", task["prompt"].as_str().unwrap());
            format!("{}\n", serde_json::json!({ "prompt": prompt }))
        })
        .collect();
    let firsts_path = t.path("firsts.jsonl");
    std::fs::write(&firsts_path, firsts).unwrap();
    let yaml = format!(
        "seed: 9\nmodels:\n  m: {{path: '{model}'}}\nstages:\n\
         \x20 tasks:\n    kind: command\n    outputs: [out]\n    run: cat '{tasks_path}' > \"$RETORT_OUT_OUT\"\n\
         \x20 firsts:\n    kind: command\n    outputs: [out]\n    run: cat '{}' > \"$RETORT_OUT_OUT\"\n\
         \x20 step1:\n    kind: generate\n    model: m\n    prompts: firsts\n    batch_size: 4\n\
         \x20   sampling: {{temperature: 0, max_tokens: 12, stop: [\"Therefore, the answer is\"]}}\n\
         \x20 eval:\n    kind: evaluate\n    models: [m]\n    tasks: [tasks]\n    verifier: numeric\n    cascade: {{}}\n\
         \x20   batch_size: 4\n    sampling: {{temperature: 0, max_tokens: 12}}\n",
        firsts_path.display()
    );
    let p = TestPipeline::new(&yaml);
    let go = |cache: &str, only: &[&str]| {
        let (cache, yaml) = (p.path(cache).display().to_string(), p.path("p.yaml").display().to_string());
        let mut args = vec!["run", yaml.as_str(), "--format", "json", "--cache-dir", &cache];
        args.extend(only.iter().flat_map(|s| ["--only", s]));
        let r = p.retort(&args);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        r
    };
    let straight = go("a", &["eval"]);
    assert!(straight.stderr.contains("prompt tokens continued from step 1's KV cache"), "{}", straight.stderr);
    assert!(!straight.stderr.contains("step 2: 0 of"), "step 2 shared nothing: {}", straight.stderr);
    go("b", &["step1"]);
    let resumed = go("b", &["eval"]);
    assert!(resumed.stderr.contains("step 2: 0 of"), "step 1 came from the item cache: {}", resumed.stderr);
    let out = |r: &Run| r.stage("eval")["outputs"]["out"]["hash"].clone();
    assert_eq!(out(&straight), out(&resumed), "same rows whether step 2 continued step 1 or encoded it all");
}

/// Step 1 from `P + "Rationale:"`, cut at the marker; step 2 from
/// `P + "Rationale:" + r + "\n" + marker`: what evaluate wrote.
fn cascade_equals_two_hand_driven_calls(t: &TestPipeline, r: &Run) {
    let marker = "Therefore, the answer is";
    let model = stored_path(t, r, "cascod@alpha=0.1", "model");
    let tasks = std::fs::read_to_string(stored_path(t, r, "teacher", "ind")).unwrap();
    let out = std::fs::read_to_string(stored_path(t, r, "eval@split=ind,mode=cascade", "out")).unwrap();
    let task: Value = serde_json::from_str(tasks.lines().next().unwrap()).unwrap();
    let row: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["model"] == "cascod@alpha=0.1" && r["id"] == task["id"])
        .unwrap();
    let base = format!("Q:{}\n\nA:", task["prompt"].as_str().unwrap());
    let step1 = sample(t, &model, &format!("{base}Rationale:"), 12);
    let rationale = step1.split(marker).next().unwrap().trim().to_string();
    let step2 = sample(t, &model, &format!("{base}Rationale:{rationale}\n{marker}"), 12);
    assert_eq!(row["rationale"], rationale.as_str());
    assert_eq!(row["response"], format!("{rationale}\n{marker}{step2}").as_str());
}

#[test]
fn alpha_outside_zero_one_is_rejected_at_load() {
    let yaml = "name: x\nmodels: {m: {tiny: {preset: tiny}}}\nstages:\n  d:\n    kind: command\n    run: 'true'\n    outputs: [out]\n  t:\n    kind: train\n    model: m\n    data: d\n    objective: cascod\n    alpha: 1.5\n";
    crate::util::rejects(yaml, &["alpha", "`alpha` is 1.5: set it between 0 and 1"]);
}
