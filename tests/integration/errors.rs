//! Bad pipeline files: one clear message with file:line:col, exit code 2, and
//! nothing written to the cache.

use crate::util::{rejects, TestPipeline};

#[test]
fn malformed_yaml() {
    rejects("stages:\n  a:\n    kind: command\n    run: [x\n", &["p.yaml:5:1:", "invalid YAML"]);
}

#[test]
fn unknown_key_lists_valid_keys_and_suggests() {
    let e = rejects("stages:\n  a:\n    kind: command\n    run: x\n    ouputs: [o]\n", &["p.yaml:5:5:", "unknown field `ouputs`", "`outputs`"]);
    assert!(e.contains("did you mean `outputs`?"), "{e}");
}

#[test]
fn unknown_top_level_key() {
    rejects("stagez: {}\n", &["p.yaml:1:1:", "unknown field `stagez`", "did you mean `stages`?"]);
}

#[test]
fn wrong_type() {
    rejects("stages:\n  a:\n    kind: command\n    run: x\n    outputs: 5\n", &["p.yaml:5:14:", "invalid type", "sequence"]);
}

#[test]
fn wrong_type_in_a_typed_kind() {
    rejects("stages:\n  t:\n    kind: task\n    task: countdown\n    numbers: 3..4\n    count: many\n", &["p.yaml:6:12:", "invalid type"]);
}

#[test]
fn unknown_kind() {
    rejects("stages:\n  a:\n    kind: comand\n    run: x\n", &["p.yaml:3:11:", "unknown stage kind `comand`", "did you mean `command`?"]);
}

#[test]
fn missing_kind() {
    rejects("stages:\n  a:\n    run: x\n", &["p.yaml:2:3:", "has no `kind`"]);
}

#[test]
fn reference_to_a_missing_stage() {
    rejects("stages:\n  gen:\n    kind: command\n    run: x\n    outputs: [o]\n  b:\n    kind: verify\n    input: gne\n", &["p.yaml:8:12:", "unknown stage `gne`", "did you mean `gen`?"]);
}

#[test]
fn reference_to_a_missing_output() {
    rejects("stages:\n  a:\n    kind: command\n    run: x\n    outputs: [o]\n  b:\n    kind: command\n    run: x\n    inputs: {s: a.nope}\n", &["p.yaml:9:17:", "no output `nope`", "`a.o`"]);
}

#[test]
fn a_cycle_names_its_stages() {
    let y = "stages:\n  a:\n    kind: command\n    run: x\n    inputs: {s: c.out}\n    outputs: [out]\n  b:\n    kind: command\n    run: x\n    inputs: {s: a.out}\n    outputs: [out]\n  c:\n    kind: command\n    run: x\n    inputs: {s: b.out}\n    outputs: [out]\n  free:\n    kind: command\n    run: x\n";
    rejects(y, &["p.yaml:2:3:", "cycle between stages: a -> b -> c -> a"]);
}

#[test]
fn a_missing_input_file() {
    rejects("stages:\n  a:\n    kind: command\n    run: x\n    deps: [data/nope.jsonl]\n", &["p.yaml:5:12:", "`data/nope.jsonl` does not exist"]);
    rejects("stages:\n  t:\n    kind: task\n    task: file\n    path: rows.jsonl\n", &["p.yaml:5:11:", "`rows.jsonl` does not exist"]);
}

#[test]
fn parameters_that_do_not_apply() {
    rejects("stages:\n  t:\n    kind: task\n    task: file\n    path: p.yaml\n    count: 3\n", &["p.yaml:6:5:", "unknown field `count`", "valid keys here: `path`"]);
}

#[test]
fn a_missing_pipeline_file() {
    let t = TestPipeline::new("stages: {}\n");
    let r = t.retort(&["run", "nope.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope.yaml") && r.stderr.contains("cannot read"));
}

#[test]
fn a_bad_set_override() {
    let t = TestPipeline::new("stages:\n  a:\n    kind: command\n    run: x\n");
    let r = t.retort(&["run", "p.yaml", "--set", "stages.zz.params.k=1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no stage named `zz`"), "{}", r.stderr);
    let r = t.retort(&["run", "p.yaml", "--set", "stages.a.colour=1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown field `colour`"), "{}", r.stderr);
    assert!(!t.cache_exists());
}
