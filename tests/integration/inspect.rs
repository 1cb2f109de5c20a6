//! `show`, `graph`, `cache ls|du|gc`.

use crate::util::{chain, TestPipeline};

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
    let m = t.retort(&["show", "p.yaml", "tasks", "--metrics"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&m.stdout).unwrap()["rows"], 5);
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
