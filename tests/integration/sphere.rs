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
