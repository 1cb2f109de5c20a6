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
