//! Failures, skips, parallelism and stage selection.

use std::time::Instant;

use crate::util::{chain, TestPipeline};

const DIAMOND_WITH_FAILURE: &str = "stages:\n  root:\n    kind: command\n    run: echo r > $RETORT_OUT_OUT\n    outputs: [out]\n  bad:\n    kind: command\n    run: echo oops >&2; exit 3\n    inputs: {x: root}\n    outputs: [out]\n  after_bad:\n    kind: command\n    run: cat $RETORT_IN_X > $RETORT_OUT_OUT\n    inputs: {x: bad}\n    outputs: [out]\n  good:\n    kind: command\n    run: cat $RETORT_IN_X > $RETORT_OUT_OUT\n    inputs: {x: root}\n    outputs: [out]\n";

#[test]
fn a_failed_stage_fails_the_run_but_independent_branches_finish() {
    let t = TestPipeline::new(DIAMOND_WITH_FAILURE);
    let r = t.retort(&["run", "p.yaml", "--format", "json", "-q"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.status_of("root"), "ran");
    assert_eq!(r.status_of("bad"), "failed");
    assert_eq!(r.status_of("after_bad"), "skipped");
    assert_eq!(r.status_of("good"), "ran");
    let err = r.stage("bad")["error"].as_str().unwrap().to_string();
    assert!(err.contains("code 3") && err.contains("oops"), "{err}");
    assert!(r.stage("after_bad")["reason"].as_str().unwrap().contains("`bad` failed"));
}

#[test]
fn a_stage_that_does_not_write_its_output_fails() {
    let t = TestPipeline::new("stages:\n  a:\n    kind: command\n    run: 'true'\n    outputs: [out]\n");
    let r = t.retort(&["run", "p.yaml", "--format", "json", "-q"]);
    assert_eq!(r.code, 1);
    assert!(r.stage("a")["error"].as_str().unwrap().contains("did not write its output `out`"));
}

#[test]
fn independent_stages_run_in_parallel() {
    let mut y = String::from("stages:\n");
    for i in 0..4 {
        y += &format!("  p{i}:\n    kind: command\n    run: sleep 1; echo {i} > $RETORT_OUT_OUT\n    outputs: [out]\n");
    }
    let t = TestPipeline::new(&y);
    let start = Instant::now();
    t.run_ok(&["-j", "4"]);
    let secs = start.elapsed().as_secs_f64();
    assert!(secs < 3.5, "4 one-second stages with -j 4 took {secs:.1}s");
}

#[test]
fn only_from_and_force_select_stages() {
    let t = TestPipeline::new(&chain(4));
    let r = t.run_ok(&["--only", "s1"]);
    assert_eq!(r.statuses(), vec![("s0".into(), "ran".into()), ("s1".into(), "ran".into())]);
    let r = t.run_ok(&["--from", "s2"]);
    assert_eq!(r.status_of("s2"), "ran");
    assert_eq!(r.status_of("s3"), "ran");
    assert_eq!(r.status_of("s1"), "cached");
    let r = t.run_ok(&["--force", "s1"]);
    assert_eq!(r.status_of("s1"), "ran");
    assert_eq!(r.stage("s1")["reason"], "forced by --force");
    assert_eq!(r.status_of("s2"), "cached", "forced re-run wrote the same bytes");
    let bad = t.retort(&["run", "p.yaml", "--only", "s9"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("no stage named `s9`"));
}

#[test]
fn plan_names_the_first_changed_parameter_and_exit_code_reports_work() {
    let t = TestPipeline::new(&chain(3));
    let p = t.retort(&["plan", "p.yaml", "--format", "json"]);
    assert!(p.statuses().iter().all(|(_, s)| s == "would-run"));
    assert!(!t.path("counts").exists(), "plan executed something");
    t.run_ok(&[]);
    let p = t.retort(&["plan", "p.yaml", "--exit-code"]);
    assert_eq!(p.code, 0);
    let p = t.retort(&["plan", "p.yaml", "--format", "json", "--exit-code", "--set", "stages.s1.params.k=9"]);
    assert_eq!(p.code, 1);
    assert_eq!(p.stage("s1")["reason"], "param `params.k` changed: 1 -> 9");
    assert_eq!(p.stage("s2")["reason"], "upstream `s1` would run");
    assert_eq!(p.status_of("s0"), "cached");
}

#[test]
fn an_input_file_change_is_named_and_unchanged_files_are_not_rehashed() {
    let yaml = "stages:\n  a:\n    kind: command\n    run: echo a >> $COUNTS; wc -c < data.txt > $RETORT_OUT_OUT\n    deps: [data.txt]\n    outputs: [out]\n";
    let t = TestPipeline::new(yaml);
    t.write("data.txt", "hello\n");
    t.run_ok(&[]);
    assert_eq!(t.run_ok(&[]).status_of("a"), "cached");
    t.write("data.txt", "hello world\n");
    let p = t.retort(&["plan", "p.yaml", "--format", "json"]);
    assert!(p.stage("a")["reason"].as_str().unwrap().contains("data.txt"), "{}", p.stage("a")["reason"]);
    assert_eq!(t.run_ok(&[]).status_of("a"), "ran");
}

#[test]
fn status_compares_the_lock_with_the_pipeline() {
    let t = TestPipeline::new(&chain(2));
    let s = t.retort(&["status", "p.yaml"]);
    assert!(s.stdout.contains("new"), "{}", s.stdout);
    t.run_ok(&[]);
    let s = t.retort(&["status", "p.yaml"]);
    assert!(s.stdout.contains("2 up-to-date"), "{}", s.stdout);
    t.write("p.yaml", &chain(2).replacen("{k: 1}", "{k: 3}", 1));
    let s = t.retort(&["status", "p.yaml"]);
    assert!(s.stdout.contains("stale") && s.stdout.contains("1 -> 3"), "{}", s.stdout);
}

/// A prompt longer than the model's context (`max_position_embeddings` 64)
/// fails its `generate` stage with exit 1 and a message naming the stage and
/// the row, not with a caught panic; the short rows before it are no excuse.
#[test]
fn a_prompt_longer_than_the_context_names_the_stage_and_row() {
    let long = "1+1=".repeat(40);
    let t = TestPipeline::new(&format!(
        r#"seed: 3
models:
  scratch: {{tiny: {{preset: tiny, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64}}}}
stages:
  data:
    kind: command
    outputs: [out]
    run: |
      for i in 1 2 3 4; do echo "{{\"prompt\": \"1+$i=\", \"response\": \"$((1 + i))\"}}"; done > "$RETORT_OUT_OUT"
  prompts:
    kind: command
    outputs: [out]
    run: |
      printf '{{"prompt": "1+1="}}\n{{"prompt": "1+2="}}\n{{"prompt": "{long}"}}\n' > "$RETORT_OUT_OUT"
  sft:
    kind: train
    model: scratch
    data: data
    objective: sft
    steps: 1
    batch_size: 2
    max_len: 32
  probe:
    kind: generate
    model: sft
    prompts: prompts
    sampling: {{max_tokens: 8}}
"#
    ));
    let r = t.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 1, "expected exit 1:\n{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let line = r.stderr.lines().find(|l| l.contains("max_position_embeddings")).unwrap_or_else(|| panic!("no context error in:\n{}", r.stderr));
    assert!(line.contains("probe") && line.contains("row 2"), "stage and row not named: {line}");
}
