//! `show`, `graph`, `cache ls|du|gc`.

use crate::util::{chain, TestPipeline, TINY_SFT};

#[test]
fn show_prints_rows_head_and_path() {
    let t = TestPipeline::new("stages:\n  tasks:\n    kind: task\n    task: arithmetic\n    count: 5\n");
    t.run_ok(&[]);
    let all = t.retort(&["show", "p.yaml", "tasks"]);
    assert_eq!(all.stdout.lines().count(), 5);
    let head = t.retort(&["show", "p.yaml", "tasks.out", "--head", "2"]);
    assert_eq!(head.stdout.lines().count(), 2);
    let path = t.retort(&["show", "p.yaml", "tasks", "--path"]);
    let last = path.stdout.lines().last().unwrap();
    assert_eq!(std::fs::read_to_string(last).unwrap(), all.stdout);
    let bad = t.retort(&["show", "p.yaml", "taks"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("did you mean `tasks`?"));
    let m = t.retort(&["show", "p.yaml", "tasks", "--metrics", "--format", "json"]);
    let m: serde_json::Value = serde_json::from_str(&m.stdout).unwrap();
    assert_eq!(m["metrics"]["rows"], 5);
    assert!(m.get("steps").is_none(), "a task stage has no per-step log: {m}");
    let m = t.retort(&["show", "p.yaml", "tasks", "--metrics"]);
    assert!(m.stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["rows", "5"]), "{}", m.stdout);
}

#[test]
fn graph_in_dot_and_mermaid() {
    let t = TestPipeline::new(&chain(3));
    let dot = t.retort(&["graph", "p.yaml"]);
    assert!(dot.stdout.starts_with("digraph") && dot.stdout.contains("s0 -> s1"), "{}", dot.stdout);
    let mm = t.retort(&["graph", "p.yaml", "--format", "mermaid"]);
    assert!(mm.stdout.starts_with("flowchart LR") && mm.stdout.contains("s1 -->|out| s2"), "{}", mm.stdout);
}

#[test]
fn gc_keeps_what_the_lock_references_plus_recent_runs() {
    let t = TestPipeline::new(&chain(2));
    t.run_ok(&[]);
    t.run_ok(&["--set", "stages.s1.params.k=2"]);
    t.run_ok(&["--set", "stages.s1.params.k=3"]);
    let ls = t.retort(&["cache", "ls", "p.yaml"]);
    assert_eq!(ls.stdout.lines().count(), 4, "{}", ls.stdout);
    let gc = t.retort(&["cache", "gc", "p.yaml", "--keep", "1"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert_eq!(t.retort(&["cache", "ls", "p.yaml"]).stdout.lines().count(), 3);
    // The newest (k=3) and the locked runs survive; k=2 is gone.
    assert_eq!(t.run_ok(&["--set", "stages.s1.params.k=3"]).status_of("s1"), "cached");
    assert_eq!(t.run_ok(&[]).status_of("s1"), "cached");
    assert_eq!(t.run_ok(&["--set", "stages.s1.params.k=2"]).status_of("s1"), "ran");
    let du = t.retort(&["cache", "du", "p.yaml"]);
    assert!(du.stdout.contains("objects"), "{}", du.stdout);
}

/// A training stage's per-step log: one table row per step, `--head` limits it,
/// JSON carries both the summary and the steps.
#[test]
fn show_metrics_prints_the_per_step_table_of_a_train_stage() {
    let t = TestPipeline::new(TINY_SFT);
    t.run_ok(&[]);
    let json = t.retort(&["show", "p.yaml", "sft", "--metrics", "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3, "{v}");
    assert!(steps.iter().all(|s| s["loss"].is_number() && s["lr"].is_number()), "{v}");
    assert_eq!(v["metrics"]["steps"], 3);
    let text = t.retort(&["show", "p.yaml", "sft", "--metrics", "--head", "2"]);
    let lines: Vec<&str> = text.stdout.lines().collect();
    let header = lines.iter().position(|l| l.split_whitespace().any(|c| c == "loss")).expect("a header with `loss`");
    assert_eq!(lines.len() - header - 1, 2, "--head 2 keeps two steps:\n{}", text.stdout);
}
