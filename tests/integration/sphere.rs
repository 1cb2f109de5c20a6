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
