//! Stage parameters: what is hashed, what is accepted, what the lock
//! records, `--set` paths, artifact types, and `matrix:` stages.

use crate::util::{rejects, TestPipeline};

const TINY: &str = "{tiny: {preset: tiny, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64}}";

/// Rows `{"prompt": "1+i=", "response": "..."}` from a command stage.
const DATA: &str = r#"  data:
    kind: command
    outputs: [out]
    run: |
      for i in 1 2 3 4; do echo "{\"prompt\": \"1+$i=\", \"response\": \"$((1 + i))\", \"nums\": [1, $i], \"target\": $((1 + i))}"; done > "$RETORT_OUT_OUT"
"#;

#[test]
fn a_typo_in_tiny_is_a_load_error_with_its_line() {
    let y = format!(
        "models:\n  scratch:\n    tiny: {{preset: tiny, hiden_size: 32}}\nstages:\n{DATA}  sft:\n    kind: train\n    model: scratch\n    data: data\n    objective: sft\n    steps: 1\n"
    );
    let e = rejects(&y, &["p.yaml:3:", "unknown field `hiden_size`"]);
    assert!(e.contains("did you mean `hidden_size`?"), "{e}");
    let y = "models:\n  scratch:\n    tiny: huge\nstages:\n  t: {kind: task, task: arithmetic, count: 2}\n";
    rejects(y, &["p.yaml:3:", "unknown variant `huge`"]);
}

#[test]
fn a_key_of_another_objective_is_a_load_error_listing_the_valid_keys() {
    let y = format!("models:\n  scratch: {TINY}\nstages:\n{DATA}  sft:\n    kind: train\n    model: scratch\n    data: data\n    objective: sft\n    steps: 1\n    beta: 0.2\n");
    let e = rejects(&y, &["p.yaml:15:5:", "unknown field `beta`", "objective"]);
    assert!(e.contains("valid keys here:") && e.contains("`epochs`") && e.contains("`lr`") && !e.contains("`kl_coef`"), "{e}");
    // The same key is fine where it belongs.
    let ok = y.replace("objective: sft", "objective: dpo");
    let t = TestPipeline::new(&ok);
    let r = t.retort(&["validate", "p.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_key_of_another_task_generator_is_a_load_error() {
    let e = rejects(
        "stages:\n  t:\n    kind: task\n    task: arithmetic\n    count: 3\n    numbers: 3\n",
        &["p.yaml:6:5:", "unknown field `numbers`"],
    );
    assert!(e.contains("`digits`") && e.contains("`ops`"), "{e}");
}

#[test]
fn a_model_where_rows_are_read_is_a_load_error_naming_the_field() {
    let y = format!("models:\n  scratch: {TINY}\nstages:\n{DATA}  sft:\n    kind: train\n    model: scratch\n    data: data\n    objective: sft\n    steps: 1\n  out:\n    kind: export\n    input: sft\n    path: out.jsonl\n");
    let e = rejects(&y, &["p.yaml:17:12:", "`input` needs a dataset", "`sft.model`"]);
    assert!(!e.contains("os error"), "{e}");
}

#[test]
fn a_tiny_spec_where_weights_are_needed_is_a_load_error() {
    let y = format!("models:\n  scratch: {TINY}\nstages:\n{DATA}  gen:\n    kind: generate\n    model: scratch\n    prompts: data\n");
    rejects(&y, &["p.yaml:11:12:", "needs a model with weights", "`tiny:`"]);
}

/// Train an SFT stage, then evaluate it with a sampling temperature: the
/// lock records the temperature as written.
#[test]
fn the_lock_records_parameters_as_written() {
    let y = format!(
        "seed: 1\nmodels:\n  scratch: {TINY}\nstages:\n{DATA}  sft:\n    kind: train\n    model: scratch\n    data: data\n    objective: sft\n    steps: 1\n    batch_size: 2\n    max_len: 32\n  eval:\n    kind: evaluate\n    models: [sft]\n    tasks: [data]\n    sampling: {{temperature: 0.8, max_tokens: 4}}\n"
    );
    let t = TestPipeline::new(&y);
    t.run_ok(&[]);
    let lock = t.read("retort.lock");
    assert!(lock.contains("temperature: 0.8\n"), "{lock}");
    assert!(!lock.contains("0.800000011920929"), "{lock}");
    // Only what the user wrote: no GRPO or DPO defaults on the SFT stage.
    let sft = &lock[lock.find("      sft:").unwrap()..];
    let sft = &sft[..sft.find("        inputs:").unwrap()];
    for absent in ["kl_coef", "group_size", "beta", "sampling"] {
        assert!(!sft.contains(absent), "`{absent}` in the SFT stage's lock entry:\n{sft}");
    }
}

#[test]
fn set_with_the_documented_params_path_works_for_every_kind() {
    let t = TestPipeline::new("stages:\n  t:\n    kind: task\n    task: arithmetic\n    count: 3\n");
    let first = t.run_ok(&[]);
    assert_eq!(first.stage("t")["outputs"]["out"]["rows"], 3);
    for path in ["stages.t.params.count=5", "stages.t.count=5"] {
        let r = t.retort(&["plan", "p.yaml", "--format", "json", "--set", path]);
        assert_eq!(r.code, 0, "{path}: {}", r.stderr);
        let s = &r.json()["stages"][0];
        assert_eq!(s["status"], "would-run", "{path}: {s}");
        assert!(s["reason"].as_str().unwrap().contains("count"), "{path}: {s}");
    }
    let r = t.run_ok(&["--set", "stages.t.params.count=5"]);
    assert_eq!(r.stage("t")["outputs"]["out"]["rows"], 5);
}

#[test]
fn a_matrix_expands_into_variants_that_equal_hand_written_stages() {
    let matrix = "stages:\n  t:\n    kind: task\n    task: arithmetic\n    matrix: {count: [2, 3], digits: [1, 2]}\n    count: ${matrix.count}\n    digits: ${matrix.digits}\n";
    let t = TestPipeline::new(matrix);
    let r = t.run_ok(&[]);
    let names: Vec<String> = r.statuses().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["t@count=2,digits=1", "t@count=2,digits=2", "t@count=3,digits=1", "t@count=3,digits=2"]);
    assert_eq!(r.stage("t@count=3,digits=2")["outputs"]["out"]["rows"], 3);
    // The same stages written out by hand are cache hits: same fingerprints.
    let mut by_hand = String::from("stages:\n");
    for (c, d) in [(2, 1), (2, 2), (3, 1), (3, 2)] {
        by_hand += &format!("  c{c}d{d}:\n    kind: task\n    task: arithmetic\n    count: {c}\n    digits: {d}\n");
    }
    t.write("p.yaml", &by_hand);
    let again = t.run_ok(&[]);
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", again.statuses());
    for (name, hand) in [("t@count=2,digits=1", "c2d1"), ("t@count=3,digits=2", "c3d2")] {
        assert_eq!(r.stage(name)["fingerprint"], again.stage(hand)["fingerprint"]);
    }
}

#[test]
fn references_name_one_variant_or_the_whole_family() {
    let y = "stages:\n  t:\n    kind: task\n    task: countdown\n    numbers: 3\n    matrix: {count: [2, 3]}\n    count: ${matrix.count}\n  one:\n    kind: export\n    input: t@count=3\n    path: one.jsonl\n";
    let t = TestPipeline::new(y);
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("one"), "ran");
    assert_eq!(t.read("one.jsonl").lines().count(), 3);
    let g = t.retort(&["graph", "p.yaml"]);
    assert!(g.stdout.contains("t@count=2") && g.stdout.contains("t@count=3"), "{}", g.stdout);
    // A single reference to the family is ambiguous.
    let bad = y.replace("input: t@count=3", "input: t");
    let e = rejects(&bad, &["p.yaml:10:12:", "`t` is a matrix of 2 stages", "`t@count=2`"]);
    assert!(e.contains("one variant"), "{e}");
}

#[test]
fn a_bad_matrix_entry_is_a_load_error_with_its_line() {
    rejects(
        "stages:\n  t:\n    kind: task\n    task: arithmetic\n    matrix:\n      count: []\n    count: ${matrix.count}\n",
        &["p.yaml:6:", "`matrix.count` has no values"],
    );
    // A value that does not fit the field: the error names the variant and
    // points at the matrix entry that made it.
    rejects(
        "stages:\n  t:\n    kind: task\n    task: arithmetic\n    matrix:\n      count: [2, many]\n    count: ${matrix.count}\n",
        &["p.yaml:6:", "t@count=many", "invalid type"],
    );
}

#[test]
fn rows_without_the_fields_an_objective_reads_are_a_load_error() {
    let y = format!("models:\n  scratch: {TINY}\nstages:\n  t:\n    kind: task\n    task: arithmetic\n    count: 4\n  rl:\n    kind: train\n    model: scratch\n    data: t\n    objective: grpo\n    steps: 1\n");
    let e = rejects(&y, &["p.yaml:11:11:", "objective grpo's Countdown reward reads `nums`", "`t.out` (a `task` stage)", "`question`"]);
    assert!(e.contains("help:"), "{e}");
    // SFT on task rows (no `response`) is caught the same way.
    let sft = y.replace("objective: grpo", "objective: sft");
    rejects(&sft, &["objective sft reads `response` or `messages`"]);
}
