//! Files written outside the cache (`export`): a cached run restores one
//! that was deleted or edited, from the stored output, without re-running.

use crate::util::TestPipeline;

const EXPORT: &str = "stages:\n  rows:\n    kind: command\n    run: echo rows >> $COUNTS; printf '{\"prompt\":\"a\",\"response\":\"b\"}\\n{\"prompt\":\"c\",\"response\":\"d\"}\\n' > $RETORT_OUT_OUT\n    outputs: [out]\n  sft:\n    kind: export\n    input: rows\n    path: out/sft.jsonl\n    format: prompt_completion\n";

fn first_run() -> (TestPipeline, String) {
    let t = TestPipeline::new(EXPORT);
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("sft"), "ran");
    let bytes = t.read("out/sft.jsonl");
    assert_eq!(bytes.lines().count(), 2, "{bytes}");
    (t, bytes)
}

#[test]
fn a_deleted_export_is_restored_by_the_next_run() {
    let (t, bytes) = first_run();
    std::fs::remove_file(t.path("out/sft.jsonl")).unwrap();
    let p = t.retort(&["plan", "p.yaml", "--format", "json", "--exit-code"]);
    assert_eq!(p.code, 1, "plan --exit-code must report the restore as work");
    assert_eq!(p.status_of("sft"), "cached");
    assert_eq!(p.stage("sft")["reason"], "would restore `out/sft.jsonl` (file was missing)");
    assert!(!t.path("out/sft.jsonl").exists(), "plan wrote the file");
    let s = t.retort(&["status", "p.yaml"]);
    assert!(s.stdout.contains("stale") && s.stdout.contains("would restore `out/sft.jsonl`"), "{}", s.stdout);

    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("sft"), "cached");
    assert_eq!(r.stage("sft")["reason"], "restored `out/sft.jsonl` (file was missing)");
    assert_eq!(t.read("out/sft.jsonl"), bytes, "restored bytes differ");
    assert_eq!(t.executions("rows"), 1, "restoring re-ran upstream");
    let meta = std::fs::metadata(t.path("out/sft.jsonl")).unwrap();
    assert!(!meta.permissions().readonly(), "the restored file is read-only like a store object");

    let again = t.run_ok(&[]);
    assert_eq!(again.stage("sft")["reason"], "up to date");
    let p = t.retort(&["plan", "p.yaml", "--exit-code"]);
    assert_eq!(p.code, 0, "{}", p.stdout);
}

#[test]
fn an_edited_export_is_restored_by_the_next_run() {
    let (t, bytes) = first_run();
    t.write("out/sft.jsonl", "{\"prompt\":\"edited\"}\n");
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("sft"), "cached");
    assert_eq!(r.stage("sft")["reason"], "restored `out/sft.jsonl` (file was changed)");
    assert_eq!(t.read("out/sft.jsonl"), bytes);
    assert_eq!(t.executions("rows"), 1);
    let h = t.retort(&["run", "p.yaml"]);
    assert_eq!(h.code, 0);
    assert!(!h.stdout.contains("restored"), "restored twice:\n{}", h.stdout);
}

#[test]
fn an_untouched_export_is_left_alone() {
    let (t, _) = first_run();
    let before = std::fs::metadata(t.path("out/sft.jsonl")).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("sft"), "cached");
    assert_eq!(r.stage("sft")["reason"], "up to date");
    let after = std::fs::metadata(t.path("out/sft.jsonl")).unwrap().modified().unwrap();
    assert_eq!(before, after, "an untouched export was rewritten");
    let s = t.retort(&["status", "p.yaml"]);
    assert!(s.stdout.contains("2 up-to-date"), "{}", s.stdout);
}

#[test]
fn the_human_table_says_what_was_restored() {
    let (t, _) = first_run();
    std::fs::remove_file(t.path("out/sft.jsonl")).unwrap();
    let r = t.retort(&["run", "p.yaml", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("restored `out/sft.jsonl` (file was missing)"), "{}", r.stdout);
}
