//! A stage that cannot work on zero rows names the upstream stage that wrote
//! none, and what that stage reported, instead of only "no rows".

use crate::util::TestPipeline;

/// Two wrong countdown samples: verify marks them wrong, compose keeps no
/// question, and the SFT stage gets nothing to train on.
const NOTHING_CORRECT: &str = "models:\n  scratch:\n    tiny: {preset: tiny}\nstages:\n  samples:\n    kind: command\n    run: printf '{\"id\":\"q1\",\"prompt\":\"Use 1 2 to make 3\",\"nums\":[1,2],\"target\":3,\"response\":\"<answer>1*2</answer>\"}\\n{\"id\":\"q1\",\"prompt\":\"Use 1 2 to make 3\",\"nums\":[1,2],\"target\":3,\"response\":\"<answer>2-1</answer>\"}\\n' > $RETORT_OUT_OUT\n    outputs: [out]\n  graded:\n    kind: verify\n    input: samples\n  traces:\n    kind: compose\n    input: graded\n  sft:\n    kind: train\n    model: scratch\n    data: traces\n    objective: sft\n    steps: 1\n";

#[test]
fn an_empty_input_names_the_stage_that_wrote_no_rows_and_its_metrics() {
    let t = TestPipeline::new(NOTHING_CORRECT);
    let r = t.retort(&["run", "p.yaml", "--format", "json", "-q"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.status_of("traces"), "ran");
    assert_eq!(r.status_of("sft"), "failed");
    let err = r.stage("sft")["error"].as_str().unwrap().to_string();
    assert!(err.contains("input `data` is empty: stage `traces` (compose) wrote 0 rows"), "{err}");
    assert!(err.contains("questions=0") && err.contains("check that stage's inputs"), "{err}");
    // Cached upstream stages still tell: the metrics come from the run record.
    let again = t.retort(&["run", "p.yaml", "--format", "json", "-q"]);
    assert_eq!(again.status_of("traces"), "cached");
    assert_eq!(again.stage("sft")["error"].as_str().unwrap(), err);
}

#[test]
fn a_command_that_wrote_nothing_is_named() {
    let t = TestPipeline::new("stages:\n  split:\n    kind: cascade_split\n    input: rows\n  rows:\n    kind: command\n    run: ': > $RETORT_OUT_OUT'\n    outputs: [out]\n");
    let r = t.retort(&["run", "p.yaml", "--format", "json", "-q"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let err = r.stage("split")["error"].as_str().unwrap().to_string();
    assert!(err.contains("input `input` is empty: stage `rows` (command) wrote 0 rows; it reported no metrics"), "{err}");
}
