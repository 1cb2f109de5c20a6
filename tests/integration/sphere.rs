//! SPHERE's pieces built so far (issue 10): `prm_filter` with the Countdown
//! rule scorer over file rows, end to end through the CLI.

use crate::util::TestPipeline;

const PIPELINE: &str = r#"name: sphere-pieces
seed: 1
stages:
  rows:
    kind: task
    task: file
    path: rows.jsonl
  scored:
    kind: prm_filter
    input: rows
  good:
    kind: prm_filter
    input: rows
    min_value: 0.75
"#;

#[test]
fn prm_filter_scores_steps_and_keeps_the_good_trajectories() {
    let t = TestPipeline::new(PIPELINE);
    let rows = [
        // Right steps, right answer: V = 0.5·1 + 0.5·1.
        r#"{"nums": [3, 5, 2], "target": 16, "response": "3 + 5 = 8\n8 * 2 = 16\n<answer>(3 + 5) * 2</answer>"}"#,
        // A slip in step 2, a wrong answer: V = 0.
        r#"{"nums": [3, 5, 2], "target": 16, "response": "3 + 5 = 8\n8 * 2 = 18\n<answer>(3 + 5) * 2 + 2</answer>"}"#,
        // An illegal number in step 1, the right answer: V = 0.5.
        r#"{"nums": [3, 5, 2], "target": 16, "response": "4 * 4 = 16\n<answer>(3 + 5) * 2</answer>"}"#,
    ];
    t.write("rows.jsonl", &(rows.join("\n") + "\n"));
    let r = t.run_ok(&[]);
    let m = r.stage("scored")["metrics"].clone();
    assert_eq!(m["rows"], 3, "{m}");
    assert_eq!(m["step_validity"], 0.6, "3 of 5 steps: {m}");
    assert_eq!(m["outcome_share"], 0.6667, "{m}");
    assert_eq!(m["rows_with_error"], 2, "{m}");
    assert_eq!(m["first_error_depth"], 0.5, "depths 1 and 0: {m}");
    let out = t.retort(&["show", "p.yaml", "scored"]).stdout;
    let vals: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(vals.iter().map(|v| v["value"].as_f64().unwrap()).collect::<Vec<_>>(), [1.0, 0.0, 0.5]);
    assert_eq!(vals[1]["first_error"], 1);
    assert_eq!(vals[0]["step_scores"], serde_json::json!([1.0, 1.0]));
    assert_eq!(r.stage("good")["metrics"]["rows"], 1);
}

#[test]
fn prm_filter_refuses_rows_without_the_countdown_fields() {
    let t = TestPipeline::new(PIPELINE);
    t.write("rows.jsonl", "{\"response\": \"1 + 1 = 2\"}\n");
    let r = t.retort(&["run", "p.yaml"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("scored") && r.stderr.contains("input row 0") && r.stderr.contains("nums"), "{}", r.stderr);
}

const DIVERSIFY: &str = r#"name: diversify
seed: 1
models:
  small: {tiny: {preset: micro}}
stages:
  rows:
    kind: task
    task: file
    path: rows.jsonl
  model:
    kind: train
    model: small
    data: rows
    objective: sft
    steps: 1
    batch_size: 2
  more:
    kind: diversify
    model: model
    prompts: rows
    samples: 4
    sampling: {temperature: 0, max_tokens: 12}
"#;

#[test]
fn diversify_drops_near_duplicates_of_kept_and_existing_samples() {
    let t = TestPipeline::new(DIVERSIFY);
    t.write("rows.jsonl", "{\"prompt\": \"sum 1 2\\n\", \"response\": \"1+2=3\"}\n{\"prompt\": \"sum 3 4\\n\", \"response\": \"3+4=7\"}\n");
    // Greedy: the four samples of a prompt are the same text, so one is kept.
    let r = t.run_ok(&[]);
    let m = r.stage("more")["metrics"].clone();
    assert_eq!((m["samples"].as_u64(), m["kept"].as_u64(), m["near_duplicates"].as_u64()), (Some(8), Some(2), Some(6)), "{m}");
    let kept: Vec<serde_json::Value> = t.retort(&["show", "p.yaml", "more"]).stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(kept.iter().all(|r| r["source"] == "diversify" && r["sample_index"] == 0), "{kept:?}");
    // Those responses already there: nothing new is kept.
    let existing: String = kept.iter().map(|r| format!("{}\n", serde_json::json!({"prompt": r["prompt"], "response": r["response"]}))).collect();
    t.write("existing.jsonl", &existing);
    t.write(
        "p.yaml",
        &(DIVERSIFY.replace("    prompts: rows\n", "    prompts: rows\n    existing: seen\n")
            + "  seen:\n    kind: task\n    task: file\n    path: existing.jsonl\n"),
    );
    let m = t.run_ok(&[]).stage("more")["metrics"].clone();
    assert_eq!((m["kept"].as_u64(), m["near_duplicates"].as_u64(), m["existing"].as_u64()), (Some(0), Some(8), Some(2)), "{m}");
}

/// A tiny from-scratch policy trained on `train.jsonl` until it finishes
/// some of those solutions (not all: 100 steps), then
/// `prm_filter`'s `mc` scorer rolling it out from each step of `rows.jsonl`.
const MC: &str = r#"name: sphere-mc
seed: 5
models:
  scratch: {tiny: {preset: tiny, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 128}}
stages:
  train_rows:
    kind: task
    task: file
    path: train.jsonl
  rows:
    kind: task
    task: file
    path: rows.jsonl
  policy:
    kind: train
    model: scratch
    data: train_rows
    objective: sft
    steps: 100
    batch_size: 3
    lr: 0.01
    max_len: 96
  scored:
    kind: prm_filter
    input: rows
    scorer: mc
    model: policy
    rollouts: 4
    sampling: {temperature: 1.0, max_tokens: 40, stop: ["</answer>"]}
"#;

const MC_TRAIN: &str = r#"{"prompt": "Use 3 5 2 to make 16.\n", "response": "3 + 5 = 8\n8 * 2 = 16\n<answer>(3 + 5) * 2</answer>"}
{"prompt": "Use 4 6 1 to make 11.\n", "response": "4 + 6 = 10\n10 + 1 = 11\n<answer>4 + 6 + 1</answer>"}
{"prompt": "Use 7 2 3 to make 17.\n", "response": "7 * 2 = 14\n14 + 3 = 17\n<answer>7 * 2 + 3</answer>"}
"#;

/// Rows 0 and 1 share their prompt and first step (one context, rolled out
/// once); row 2 has one step. Distinct step prefixes: 2 + 1 + 1 = 4.
const MC_ROWS: &str = r#"{"prompt": "Use 3 5 2 to make 16.\n", "nums": [3, 5, 2], "target": 16, "response": "3 + 5 = 8\n8 * 2 = 16\n<answer>(3 + 5) * 2</answer>"}
{"prompt": "Use 3 5 2 to make 16.\n", "nums": [3, 5, 2], "target": 16, "response": "3 + 5 = 8\n8 + 2 = 10\n<answer>3 + 5 + 2</answer>"}
{"prompt": "Use 4 6 1 to make 11.\n", "nums": [4, 6, 1], "target": 11, "response": "4 + 6 = 10\n<answer>4 + 6 + 1</answer>"}
"#;

fn step_scores(t: &TestPipeline) -> Vec<Vec<f64>> {
    let out = t.retort(&["show", "p.yaml", "scored"]).stdout;
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| v["step_scores"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect())
        .collect()
}

fn mc_pipeline() -> TestPipeline {
    let t = TestPipeline::new(MC);
    t.write("train.jsonl", MC_TRAIN);
    t.write("rows.jsonl", MC_ROWS);
    t
}

#[test]
fn prm_filter_mc_scores_steps_by_rollouts_through_the_item_cache() {
    let t = mc_pipeline();
    let r = t.run_ok(&[]);
    let m = r.stage("scored")["metrics"].clone();
    assert_eq!((m["rollouts"].as_u64(), m["rollouts_cached"].as_u64()), (Some(16), Some(0)), "4 step prefixes × 4: {m}");
    let scores = step_scores(&t);
    assert_eq!(scores.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1], "{scores:?}");
    for s in scores.iter().flatten() {
        assert!((0.0..=1.0).contains(s) && (s * 4.0).fract() == 0.0, "a share of 4 rollouts: {scores:?}");
    }
    assert_eq!(scores[0][0], scores[1][0], "one context, one set of rollouts");
    // The policy has learnt to finish some: the scores are not the
    // untrained model's zeros (measured here: [[0.75, 1], [0.75, 0.5], [1]]).
    assert!(scores.iter().flatten().any(|&s| s > 0.0), "{scores:?}");
    eprintln!("mc step scores: {scores:?}");

    // Unchanged: nothing runs.
    assert_eq!(t.run_ok(&[]).status_of("scored"), "cached");
    // A new threshold re-runs the filter, with every rollout from the item cache.
    t.write("p.yaml", &MC.replace("    rollouts: 4\n", "    rollouts: 4\n    min_value: 0.0\n"));
    let r = t.run_ok(&[]);
    assert_eq!((r.status_of("policy"), r.status_of("scored")), ("cached".into(), "ran".into()));
    let m = r.stage("scored")["metrics"].clone();
    assert_eq!((m["rollouts"].as_u64(), m["rollouts_cached"].as_u64()), (Some(16), Some(16)), "{m}");
    assert_eq!(step_scores(&t), scores);
    // A new row rolls out only its own step prefixes.
    t.write("rows.jsonl", &(MC_ROWS.to_string() + r#"{"prompt": "Use 7 2 3 to make 17.\n", "nums": [7, 2, 3], "target": 17, "response": "7 * 2 = 14\n14 + 3 = 17\n<answer>7 * 2 + 3</answer>"}"# + "\n"));
    let m = t.run_ok(&[]).stage("scored")["metrics"].clone();
    assert_eq!((m["rollouts"].as_u64(), m["rollouts_cached"].as_u64()), (Some(24), Some(16)), "{m}");
    assert_eq!(step_scores(&t)[..3], scores[..]);

    // The same pipeline and seed elsewhere: the same scores.
    let again = mc_pipeline();
    again.run_ok(&[]);
    assert_eq!(step_scores(&again), scores);
}

#[test]
fn prm_filter_mc_needs_a_model_and_rollouts() {
    let base = "name: bad\nseed: 1\nstages:\n  rows:\n    kind: task\n    task: file\n    path: rows.jsonl\n  scored:\n    kind: prm_filter\n    input: rows\n    scorer: mc\n";
    crate::util::rejects(base, &["stage `scored`", "`scorer: mc` rolls out with a model"]);
    crate::util::rejects(&MC.replace("    rollouts: 4\n", "    rollouts: 0\n"), &["stage `scored`", "`rollouts` is 0: set it to at least 1"]);
}

// --- step_search: SPHERE's search ---------------------------------------------

/// The MC test's memorising policy, searched on its three training problems
/// and `extra` others (`problems.jsonl`), diversity from the same model at
/// T = 1. One sequence per forward pass, so a kill lands mid-search.
fn search_yaml(extra: &str) -> String {
    MC.replace("max_position_embeddings: 128", "max_position_embeddings: 256")
        .replace("  rows:\n    kind: task\n    task: file\n    path: rows.jsonl\n", "  rows:\n    kind: task\n    task: file\n    path: problems.jsonl\n")
        .split("  scored:\n")
        .next()
        .unwrap()
        .to_string()
        + "  search:\n    kind: step_search\n    model: policy\n    problems: rows\n    small: policy\n    candidates: 3\n    max_steps: 4\n    batch_size: 1\n\
           \x20   sampling: {temperature: 0.8, max_tokens: 40}\n    explore_sampling: {temperature: 1.0, max_tokens: 48}\n"
        + extra
}

const PROBLEMS: &str = r#"{"prompt": "Use 3 5 2 to make 16.\n", "nums": [3, 5, 2], "target": 16}
{"prompt": "Use 4 6 1 to make 11.\n", "nums": [4, 6, 1], "target": 11}
{"prompt": "Use 7 2 3 to make 17.\n", "nums": [7, 2, 3], "target": 17}
{"prompt": "Use 3 5 2 to make 10.\n", "nums": [3, 5, 2], "target": 10}
{"prompt": "Use 4 6 2 to make 12.\n", "nums": [4, 6, 2], "target": 12}
{"prompt": "Use 7 2 1 to make 15.\n", "nums": [7, 2, 1], "target": 15}
"#;

/// `PROBLEMS` and 24 more (sums and products of three numbers), so that
/// the search takes long enough to be killed in the middle.
fn many_problems() -> String {
    let mut out = PROBLEMS.to_string();
    for i in 0..24i64 {
        let (a, b, c) = (1 + i % 7, 2 + i % 5, 1 + i % 3);
        let target = if i % 2 == 0 { a + b + c } else { (a + b) * c };
        out += &format!("{{\"prompt\": \"Use {a} {b} {c} to make {target}.\\n\", \"nums\": [{a}, {b}, {c}], \"target\": {target}}}\n");
    }
    out
}

fn search_pipeline(problems: &str) -> TestPipeline {
    let t = TestPipeline::new(&search_yaml(""));
    t.write("train.jsonl", MC_TRAIN);
    t.write("problems.jsonl", problems);
    t
}

fn rows(t: &TestPipeline, stage: &str) -> Vec<serde_json::Value> {
    t.retort(&["show", "p.yaml", stage]).stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Total bytes of the item logs (what the search has stored).
fn item_bytes(t: &TestPipeline) -> u64 {
    crate::util::files_under(&t.path(".retort/items")).iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum()
}

#[test]
fn step_search_resumes_after_a_kill_and_searches_only_added_problems() {
    use std::time::{Duration, Instant};
    // An uninterrupted run: the reference.
    let whole = search_pipeline(&many_problems());
    let r = whole.run_ok(&[]);
    let m = r.stage("search")["metrics"].clone();
    eprintln!("step_search metrics: {m}");
    let pairs = rows(&whole, "search");
    assert!(!pairs.is_empty() && m["pairs"] == pairs.len(), "{m}");
    let by_source: u64 = ["generation", "correction", "diversity"].iter().map(|s| m[format!("pairs_{s}")].as_u64().unwrap()).sum();
    assert_eq!(by_source, pairs.len() as u64, "{m}");
    for p in &pairs {
        assert!(p["chosen"].is_string() && p["rejected"].is_string() && p["chosen"] != p["rejected"], "{p}");
        assert!(["generation", "correction", "diversity"].contains(&p["source"].as_str().unwrap()), "{p}");
        assert!(p["chosen_score"].as_f64() > p["rejected_score"].as_f64() || p["source"] != "generation", "{p}");
        let nums: Vec<i64> = p["nums"].as_array().unwrap().iter().map(|n| n.as_i64().unwrap()).collect();
        let right = retort_stages::methods::verify_countdown(p["chosen"].as_str().unwrap(), &nums, p["target"].as_i64().unwrap(), 0.0).correct;
        assert!(right, "the chosen is always right: {p}");
    }
    assert_eq!(m["step_samples_cached"], 0, "{m}");

    // Killed mid-search, then resumed: the same pairs, the stored samples reused.
    let t = search_pipeline(&many_problems());
    let mut child = t.cmd().args(["run", "p.yaml", "-q"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while item_bytes(&t) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL, possibly mid-append
    child.wait().unwrap();
    let before = item_bytes(&t);
    assert!(before > 0, "nothing sampled before the kill");
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("search"), "ran", "the kill came before the search finished");
    let m2 = r.stage("search")["metrics"].clone();
    let cached = m2["step_samples_cached"].as_u64().unwrap() + m2["explore_samples_cached"].as_u64().unwrap();
    assert!(cached > 0, "the resumed run reused what was stored: {m2}");
    assert_eq!(rows(&t, "search"), pairs, "resumed = uninterrupted");
    assert_eq!(m2["step_samples"], m["step_samples"]);

    // One more problem: only its own contexts are sampled; the others' pairs stay.
    let more = many_problems() + "{\"prompt\": \"Use 6 4 1 to make 24.\\n\", \"nums\": [6, 4, 1], \"target\": 24}\n";
    whole.write("problems.jsonl", &more);
    let r = whole.retort(&["run", "p.yaml", "--format", "json", "-q"]);
    let m3 = r.stage("search")["metrics"].clone();
    let new_step = m3["step_samples"].as_u64().unwrap() - m3["step_samples_cached"].as_u64().unwrap();
    let new_explore = m3["explore_samples"].as_u64().unwrap() - m3["explore_samples_cached"].as_u64().unwrap();
    assert_eq!(m3["step_samples_cached"], m["step_samples"], "every old problem's samples come from the cache: {m3}");
    assert_eq!(m3["explore_samples_cached"], m["explore_samples"], "{m3}");
    assert!(new_step > 0 && new_step + new_explore <= 3 * 4 * 2 * 2 + 6, "one problem's worth: {m3}");
    if r.code == 0 {
        let after = rows(&whole, "search");
        assert_eq!(after[..pairs.len()], pairs[..], "the old problems' pairs are unchanged");
    }
}

#[test]
fn step_search_with_no_pairs_names_the_stage_and_why() {
    // An untrained policy never reaches a right answer: nothing to choose.
    let t = TestPipeline::new(&search_yaml("").replace("    steps: 100\n", "    steps: 1\n"));
    t.write("train.jsonl", MC_TRAIN);
    t.write("problems.jsonl", &PROBLEMS.lines().take(2).map(|l| format!("{l}\n")).collect::<String>());
    let r = t.retort(&["run", "p.yaml"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("search") && r.stderr.contains("no pairs from 2 problems") && r.stderr.contains("both wrong"), "{}", r.stderr);
}

#[test]
fn step_search_rejects_bad_settings_at_load_time() {
    let base = search_yaml("");
    let bad = |from: &str, to: &str, expect: &[&str]| {
        assert!(base.contains(from), "{from}");
        crate::util::rejects_with(&base.replace(from, to), &[("train.jsonl", MC_TRAIN), ("problems.jsonl", PROBLEMS)], expect);
    };
    bad("    candidates: 3\n", "    candidates: 1\n", &["stage `search`", "`candidates` is 1: set it to at least 2"]);
    bad("    small: policy\n", "", &["stage `search`", "diversity needs a smaller model"]);
    bad("    max_steps: 4\n", "    max_steps: 4\n    error_below: 2\n", &["stage `search`", "`error_below` is 2"]);
    bad("    max_steps: 4\n", "    max_steps: 4\n    rollouts: 3\n", &["stage `search`", "`rollouts` applies only to `scorer: mc`"]);
    bad("    max_steps: 4\n", "    max_steps: 4\n    beam: 3\n", &["stage `search`", "beam"]);
    bad("    problems: rows\n", "    problems: policy\n", &["stage `search`", "problems"]);
}

// --- pipelines/sphere.yaml at reduced counts ------------------------------------

const RECIPE_SETS: &[&str] = &[
    // A base that memorises 8 gold traces, searched and sampled on those
    // same problems at a high temperature, so that every search and arm has
    // pairs and examples (the pipeline's shape is what is tested here).
    "stages.data.params.pretrain=8",
    "stages.data.params.train=4",
    "stages.data.params.test=4",
    "stages.data.params.gold=1.0",
    "stages.data.params.slip=0",
    "stages.data.params.illegal=0",
    "models.scratch.tiny.hidden_size=48",
    "models.scratch.tiny.intermediate_size=96",
    "models.scratch.tiny.num_hidden_layers=1",
    "models.small_scratch.tiny.hidden_size=32",
    "models.small_scratch.tiny.intermediate_size=64",
    "stages.base.steps=150",
    "stages.base.lr=0.01",
    "stages.base.batch_size=8",
    "stages.small.steps=5",
    "stages.small.batch_size=4",
    "stages.search.problems=data.pretrain",
    "stages.search_nocorr.problems=data.pretrain",
    "stages.search_nodiv.problems=data.pretrain",
    "stages.search_prm.problems=data.pretrain",
    "stages.search_r2.problems=data.pretrain",
    "stages.search_r2.sampling.temperature=1.0",
    "stages.search_prm.sampling.temperature=1.0",
    "stages.prm.steps=10",
    "stages.test_samples.sampling.max_tokens=40",
    "stages.search.sampling.temperature=1.0",
    "stages.search_nocorr.sampling.temperature=1.0",
    "stages.search_nodiv.sampling.temperature=1.0",
    "stages.samples.prompts=data.pretrain",
    "stages.samples.sampling.temperature=1.0",
    "stages.eval.sampling.max_tokens=40",
];

const RECIPE_ARMS: &[&str] = &["rs_sft", "outcome_dpo", "sphere", "sphere_nocorr", "sphere_nodiv", "sphere_r2", "sphere_prm"];

fn recipe(t: &TestPipeline) -> crate::util::Run {
    let pipeline = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/sphere.yaml");
    let cache = t.path("cache");
    let mut args: Vec<String> = vec!["run".into(), pipeline.display().to_string(), "--format".into(), "json".into(), "-q".into()];
    args.extend(["--cache-dir".into(), cache.display().to_string()]);
    for s in RECIPE_SETS {
        args.extend(["--set".into(), s.to_string()]);
    }
    for arm in RECIPE_ARMS {
        args.extend(["--set".into(), format!("stages.{arm}.steps=2"), "--set".into(), format!("stages.{arm}.batch_size=4")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    t.retort(&args)
}

#[test]
fn sphere_recipe_runs_end_to_end_at_reduced_counts() {
    let t = TestPipeline::new("stages: {}\n");
    let r = recipe(&t);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.statuses().iter().all(|(_, s)| s == "ran"), "{:?}", r.statuses());
    for search in ["search", "search_nocorr", "search_nodiv", "search_prm", "search_r2"] {
        let m = r.stage(search)["metrics"].clone();
        eprintln!("{search}: {m}");
        for key in ["pairs", "pairs_generation", "pairs_correction", "pairs_diversity", "both_right", "both_wrong", "mixed"] {
            assert!(m.get(key).is_some(), "{search}: missing {key}: {m}");
        }
    }
    assert_eq!(r.stage("search_nocorr")["metrics"]["pairs_correction"], 0);
    assert_eq!(r.stage("search_nodiv")["metrics"]["pairs_diversity"], 0);
    // Generation is the same search in all three: the same samples, from the item cache.
    let gen = |s: &str| r.stage(s)["metrics"]["pairs_generation"].clone();
    assert_eq!((gen("search_nocorr"), gen("search_nodiv")), (gen("search"), gen("search")));
    assert!(r.stage("search_nodiv")["metrics"]["step_samples_cached"].as_u64().unwrap() > 0);
    let m = r.stage("eval")["metrics"].clone();
    for arm in ["base", "rs_sft", "outcome_dpo", "sphere", "sphere_nocorr", "sphere_nodiv", "sphere_r2", "sphere_prm"] {
        for key in ["acc", "acc_lo", "acc_hi", "acc@3", "acc@4"] {
            assert!(m.get(format!("{arm}/{key}")).is_some(), "missing {arm}/{key}: {m}");
        }
        let s = r.stage("steps")["metrics"].clone();
        for key in ["step_validity", "first_error_depth", "rows"] {
            assert!(s.get(format!("{arm}/{key}")).is_some(), "steps: missing {arm}/{key}: {s}");
        }
    }
    // The learned PRM scored the held-out samples' steps, as the rule did.
    let (rule, prm) = (r.stage("test_rule")["metrics"].clone(), r.stage("test_prm")["metrics"].clone());
    assert_eq!((rule["rows"].clone(), rule["steps_per_row"].clone()), (prm["rows"].clone(), prm["steps_per_row"].clone()), "{rule} {prm}");
    for cmp in ["sphere_vs_outcome_dpo", "sphere_vs_sphere_nocorr", "sphere_vs_sphere_nodiv", "sphere_prm_vs_sphere", "sphere_r2_vs_sphere"] {
        assert!(m.get(format!("{cmp}/p_mcnemar")).is_some(), "missing {cmp}: {m}");
    }
    let again = recipe(&t);
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", again.statuses());
}

// --- a trained PRM: `train` `objective: prm`, `scorer: model` -----------------

/// Rule-labelled solutions, a PRM trained on the labels from scratch, and
/// the same solutions scored by it (`scorer: model`). Wrong steps all
/// claim `= 0`, so a small model can learn the label in a few dozen steps.
const PRM: &str = r#"name: prm
seed: 1
models:
  small: {tiny: {preset: micro, max_position_embeddings: 96}}
stages:
  rows:
    kind: task
    task: file
    path: rows.jsonl
  labelled:
    kind: prm_filter
    input: rows
  prm:
    kind: train
    model: small
    data: labelled
    objective: prm
    steps: 60
    batch_size: 8
    lr: 0.003
    max_len: 96
  scored:
    kind: prm_filter
    input: rows
    scorer: model
    model: prm
"#;

/// 16 two-step solutions over four numbers; step k is right when bit k of
/// the row's index is 0.
fn prm_rows() -> String {
    let mut out = String::new();
    for i in 0..16i64 {
        let nums = [1 + i % 5, 2 + i % 3, 3 + i % 4, 1 + i % 2];
        let step = |k: usize, a: i64, b: i64| if (i >> k) & 1 == 0 { format!("{a} + {b} = {}", a + b) } else { format!("{a} + {b} = 0") };
        let target = nums[0] + nums[1] + nums[2] + nums[3];
        let response = format!("{}\\n{}\\n<answer>{} + {} + {} + {}</answer>", step(0, nums[0], nums[1]), step(1, nums[2], nums[3]), nums[0], nums[1], nums[2], nums[3]);
        out += &format!("{{\"prompt\": \"Use {nums:?} to make {target}.\\n\", \"nums\": {nums:?}, \"target\": {target}, \"response\": \"{response}\"}}\n");
    }
    out
}

#[test]
fn a_prm_trained_on_rule_labels_scores_steps_as_the_rule_does() {
    let t = TestPipeline::new(PRM);
    t.write("rows.jsonl", &prm_rows());
    let r = t.run_ok(&[]);
    let trained = r.stage("prm")["metrics"].clone();
    assert!(trained["last_accuracy"].as_f64().unwrap() >= 0.9, "the PRM's last step: {trained}");
    assert!(t.path(".retort").exists());
    let rule = step_scores_of(&t, "labelled");
    let model = step_scores_of(&t, "scored");
    assert_eq!(rule.len(), 16);
    let (mut agree, mut all) = (0, 0);
    for (r, m) in rule.iter().zip(&model) {
        assert_eq!(r.len(), m.len(), "one score per step");
        for (a, b) in r.iter().zip(m) {
            all += 1;
            agree += usize::from((*a > 0.5) == (*b > 0.5));
        }
    }
    assert!(agree * 10 >= all * 9, "the PRM agrees with the rule on {agree} of {all} steps");
    // The model scorer's metrics are the same kind as the rule's.
    let m = r.stage("scored")["metrics"].clone();
    assert_eq!(m["rows"], 16, "{m}");
    assert!((m["step_validity"].as_f64().unwrap() - 0.5).abs() < 0.1, "half the steps are right: {m}");
}

fn step_scores_of(t: &TestPipeline, stage: &str) -> Vec<Vec<f64>> {
    let out = t.retort(&["show", "p.yaml", stage]).stdout;
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step_scores"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
        .collect()
}

#[test]
fn a_model_that_is_not_a_prm_is_refused_before_anything_runs() {
    // An SFT model where a PRM is needed: exit 2 at load time, at the field.
    let sft = PRM.replace("    objective: prm\n", "    objective: sft\n").replace("  labelled:\n    kind: prm_filter\n    input: rows\n", "  labelled:\n    kind: task\n    task: file\n    path: rows.jsonl\n");
    let rows = prm_rows();
    crate::util::rejects_with(&sft, &[("rows.jsonl", &rows)], &["stage `scored`", "needs a process reward model", "objective: prm"]);
    // The search's `scorer: model` needs its `prm`.
    let search = "name: bad\nseed: 1\nmodels:\n  m: {tiny: {preset: micro}}\nstages:\n  rows:\n    kind: task\n    task: file\n    path: rows.jsonl\n  \
                  search:\n    kind: step_search\n    model: m\n    problems: rows\n    diversity: false\n    scorer: model\n";
    crate::util::rejects_with(search, &[("rows.jsonl", PROBLEMS)], &["stage `search`", "name it in `prm`"]);
}

#[test]
fn prm_labels_that_do_not_match_the_steps_name_the_row() {
    let t = TestPipeline::new(&PRM.replace("    data: labelled\n", "    data: rows\n"));
    // Row 1 has two steps but one label.
    let rows: Vec<String> = prm_rows()
        .lines()
        .take(2)
        .enumerate()
        .map(|(i, l)| l.replacen('{', &format!("{{\"step_scores\": {}, ", if i == 1 { "[1]" } else { "[1, 0]" }), 1))
        .collect();
    t.write("rows.jsonl", &(rows.join("\n") + "\n"));
    let r = t.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("prm") && r.stderr.contains("data row 1") && r.stderr.contains("`step_scores` has 1 scores"), "{}", r.stderr);
}

#[test]
fn step_search_scores_steps_with_a_trained_prm() {
    // The PRM: the memorising policy trained with `objective: prm` on the
    // rule's labels of MC_ROWS (one wrong step among four). Its own three
    // problems come out right on both branches, so the pairs are diversity's.
    let extra = "  sol:\n    kind: task\n    task: file\n    path: sol.jsonl\n  labelled:\n    kind: prm_filter\n    input: sol\n  \
                 prm:\n    kind: train\n    model: policy\n    data: labelled\n    objective: prm\n    steps: 20\n    batch_size: 3\n    max_len: 96\n  \
                 search_prm:\n    kind: step_search\n    model: policy\n    problems: rows\n    small: policy\n    candidates: 3\n    max_steps: 4\n    \
                 scorer: model\n    prm: prm\n    sampling: {temperature: 0.8, max_tokens: 40}\n    explore_sampling: {temperature: 1.0, max_tokens: 48}\n";
    let t = TestPipeline::new(&search_yaml(extra));
    t.write("train.jsonl", MC_TRAIN);
    t.write("problems.jsonl", &many_problems());
    t.write("sol.jsonl", MC_ROWS);
    let r = t.run_ok(&["--only", "search_prm"]);
    let m = r.stage("search_prm")["metrics"].clone();
    let pairs = rows(&t, "search_prm");
    assert!(!pairs.is_empty() && m["pairs"] == pairs.len(), "{m}");
    // Step scores are the PRM's σ(z), not the rule's 0/1.
    let scores: Vec<f64> =
        pairs.iter().flat_map(|p| p["chosen_step_scores"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect::<Vec<_>>()).collect();
    assert!(!scores.is_empty() && scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
    assert!(scores.iter().any(|s| *s != 0.0 && *s != 1.0), "PRM scores, not rule scores: {scores:?}");
    // Fresh: only repeats within the search (branches share candidates) hit the cache.
    assert!(m["prm_scores_cached"].as_u64() < m["prm_scores"].as_u64(), "{m}");
    // The same search again is a no-op.
    let again = t.run_ok(&["--only", "search_prm"]);
    assert_eq!(again.status_of("search_prm"), "cached");
    // A changed pairing threshold re-runs the search, every PRM score from the item cache.
    let yaml = t.read("p.yaml").replace("    prm: prm\n", "    prm: prm\n    min_margin: 0.2\n");
    t.write("p.yaml", &yaml);
    let m = t.run_ok(&["--only", "search_prm"]).stage("search_prm")["metrics"].clone();
    assert!(m["prm_scores"].as_u64().unwrap() > 0 && m["prm_scores_cached"] == m["prm_scores"], "{m}");
}

#[test]
fn a_prm_leaves_out_solutions_without_steps_and_refuses_data_with_none() {
    let stepless = r#"{"prompt": "Use [3, 4] to make 7.\n", "nums": [3, 4], "target": 7, "response": "<answer>3 + 4</answer>"}"#;
    let t = TestPipeline::new(&PRM.replace("    steps: 60\n", "    steps: 2\n"));
    t.write("rows.jsonl", &format!("{stepless}\n{}", prm_rows()));
    let r = t.run_ok(&["--only", "prm"]);
    assert_eq!(r.status_of("prm"), "ran");
    let none = TestPipeline::new(PRM);
    none.write("rows.jsonl", &format!("{stepless}\n{stepless}\n"));
    let r = none.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("prm") && r.stderr.contains("none of the 2 data rows has a step"), "{}", r.stderr);
}
