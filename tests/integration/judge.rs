//! `kind: judge`: two models' answers to the same instructions, judged by a
//! (tiny, untrained) judge model in both orders. What is tested is the
//! stage's contract: the rows it writes, its metrics adding up, the item
//! cache, and bad input naming the row with exit 2.

use crate::util::TestPipeline;

const PIPELINE: &str = r#"
name: judged
seed: 3
models:
  scratch: {tiny: {preset: micro}}
stages:
  a: {kind: task, task: file, path: a.jsonl}
  b: {kind: task, task: file, path: b.jsonl}
  judge: {kind: train, model: scratch, data: a, objective: sft, steps: 1}
  judged:
    kind: judge
    model: judge
    a: a
    b: b
    sampling: {temperature: 0, max_tokens: 6}
"#;

const A: &str = r#"{"prompt": "Add 2 and 3.", "response": "5"}
{"prompt": "Name a colour.", "response": "blue"}
{"prompt": "Say hi.", "response": "hi"}
"#;
const B: &str = r#"{"prompt": "Say hi.", "response": "hello there"}
{"prompt": "Add 2 and 3.", "response": "6"}
{"prompt": "Name a colour.", "response": "seven"}
"#;

#[test]
fn every_pair_is_judged_in_both_orders_and_the_metrics_add_up() {
    let t = TestPipeline::new(PIPELINE);
    t.write("a.jsonl", A);
    t.write("b.jsonl", B);
    let r = t.run_ok(&[]);
    let m = r.stage("judged")["metrics"].clone();
    assert_eq!(m["pairs"], 3, "{m}");
    let count = |k: &str| m[k].as_u64().unwrap();
    assert_eq!(count("a_wins") + count("b_wins") + count("ties"), 3, "{m}");
    assert!(count("unparsed") <= 6, "{m}");
    let (lo, w, hi) = (m["win_rate_lo"].as_f64().unwrap(), m["win_rate"].as_f64().unwrap(), m["win_rate_hi"].as_f64().unwrap());
    assert!(lo <= w && w <= hi && (0.0..=1.0).contains(&w), "{m}");
    // Rows in `a`'s order, each with both replies and A's score.
    let out = t.retort(&["show", "p.yaml", "judged"]).stdout;
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.iter().map(|r| r["prompt"].as_str().unwrap()).collect::<Vec<_>>(), ["Add 2 and 3.", "Name a colour.", "Say hi."]);
    assert_eq!((rows[0]["a"].as_str(), rows[0]["b"].as_str()), (Some("5"), Some("6")));
    for row in &rows {
        assert!(row["judge_ab"].is_string() && row["judge_ba"].is_string(), "{row}");
        let s = row["score"].as_f64().unwrap();
        assert!([0.0, 0.25, 0.5, 0.75, 1.0].contains(&s), "{row}");
    }
    // Nothing changed: a no-op. One answer of B changed: only its pair's two
    // judgments are made again.
    assert_eq!(t.run_ok(&[]).status_of("judged"), "cached");
    t.write("b.jsonl", &B.replace("seven", "red"));
    let r = t.retort(&["run", "p.yaml", "--log-format", "plain"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("4 of 6 judgments from the item cache"), "{}", r.stderr);
}

#[test]
fn answers_that_do_not_match_name_the_row() {
    let t = TestPipeline::new(PIPELINE);
    t.write("a.jsonl", A);
    t.write("b.jsonl", &B.replace("Name a colour.", "Name a number."));
    let r = t.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("row 1 of `a`") && r.stderr.contains("same instructions"), "{}", r.stderr);
    let twice = TestPipeline::new(PIPELINE);
    twice.write("a.jsonl", A);
    twice.write("b.jsonl", &(B.to_string() + "{\"prompt\": \"Say hi.\", \"response\": \"yo\"}\n"));
    let r = twice.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("rows 0 and 3 of `b`"), "{}", r.stderr);
}

#[test]
fn the_same_rows_on_both_sides_are_refused_at_load_time() {
    let t = TestPipeline::new(&PIPELINE.replace("    b: b\n", "    b: a\n"));
    t.write("a.jsonl", A);
    t.write("b.jsonl", B);
    let r = t.retort(&["validate", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("same rows as `a`"), "{}", r.stderr);
}

/// A prefilled reply is read with the prefill: "Response 1 is better." names the
/// first position whatever the model adds, in both orders, so every pair
/// ties (what position swapping is for) and the bias shows in the metrics.
#[test]
fn a_prefill_is_read_with_the_reply_and_position_bias_ties() {
    let t = TestPipeline::new(&PIPELINE.replace("    sampling:", "    prefill: \"Response 1 is better.\"\n    sampling:"));
    t.write("a.jsonl", A);
    t.write("b.jsonl", B);
    let m = t.run_ok(&[]).stage("judged")["metrics"].clone();
    assert_eq!((m["unparsed"].as_u64(), m["ties"].as_u64(), m["first_position"].as_f64()), (Some(0), Some(3), Some(1.0)), "{m}");
    assert_eq!(m["win_rate"], 0.5, "{m}");
    assert_eq!(m["consistency"], 0.0, "{m}");
}
