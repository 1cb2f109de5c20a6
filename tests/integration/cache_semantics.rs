//! The cache semantics of DESIGN.md: what re-runs after each kind of edit.

use std::time::{Duration, Instant};

use crate::util::{chain, files_under, TestPipeline};

#[test]
fn a_cache_hit_executes_nothing() {
    let t = TestPipeline::new(&chain(3));
    let first = t.run_ok(&[]);
    assert!(first.statuses().iter().all(|(_, s)| s == "ran"));
    let second = t.run_ok(&[]);
    assert!(second.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", second.statuses());
    for s in ["s0", "s1", "s2"] {
        assert_eq!(t.executions(s), 1, "{s} executed again on a cache hit");
    }
    assert_eq!(first.stage("s2")["outputs"], second.stage("s2")["outputs"]);
}

#[test]
fn a_parameter_change_reruns_that_stage_and_its_dependents() {
    let t = TestPipeline::new(&chain(4));
    t.run_ok(&[]);
    t.write("p.yaml", &chain(4).replace(
        "inputs: {src: s1.out}\n    outputs: [out]\n    params: {k: 1}",
        "inputs: {src: s1.out}\n    outputs: [out]\n    params: {k: 2}",
    ));
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("s0"), "cached");
    assert_eq!(r.status_of("s1"), "cached");
    assert_eq!(r.status_of("s2"), "ran");
    assert_eq!(r.status_of("s3"), "ran");
    assert!(r.stage("s2")["reason"].as_str().unwrap().contains("`params.k` changed: 1 -> 2"), "{}", r.stage("s2")["reason"]);
}

#[test]
fn reverting_a_parameter_is_a_cache_hit() {
    let t = TestPipeline::new(&chain(3));
    t.run_ok(&[]);
    t.run_ok(&["--set", "stages.s1.params.k=5"]);
    let r = t.run_ok(&[]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", r.statuses());
    assert_eq!(t.executions("s1"), 2);
}

#[test]
fn identical_output_leaves_dependents_cached() {
    // s1 ignores its parameter, so changing it re-runs s1 with the same bytes.
    let yaml = "stages:\n  s0:\n    kind: command\n    run: echo s0 >> $COUNTS; echo x > $RETORT_OUT_OUT\n    outputs: [out]\n    params: {k: 1}\n  s1:\n    kind: command\n    run: echo s1 >> $COUNTS; cat $RETORT_IN_SRC > $RETORT_OUT_OUT\n    inputs: {src: s0.out}\n    outputs: [out]\n";
    let t = TestPipeline::new(yaml);
    t.run_ok(&[]);
    t.write("p.yaml", &yaml.replace("{k: 1}", "{k: 2}"));
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("s0"), "ran");
    assert_eq!(r.status_of("s1"), "cached", "early cutoff failed");
    assert_eq!(t.executions("s1"), 1);
}

#[test]
fn formatting_comments_key_order_and_stage_names_do_not_matter() {
    let t = TestPipeline::new(&chain(2));
    t.run_ok(&[]);
    let reformatted = "# a comment\nseed: 1\nname: chain\nstages:\n  first:   # renamed from s0\n    outputs:\n      - out\n    params:\n      k: 1\n    run: echo s0 >> $COUNTS; echo start > $RETORT_OUT_OUT; echo $RETORT_PARAM_K >> $RETORT_OUT_OUT\n    kind: command\n  s1: {kind: command, outputs: [out], inputs: {src: first.out}, params: {k: 1}, run: 'echo s1 >> $COUNTS; cat $RETORT_IN_SRC > $RETORT_OUT_OUT; echo $RETORT_PARAM_K >> $RETORT_OUT_OUT'}\n";
    t.write("p.yaml", reformatted);
    let r = t.run_ok(&[]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", r.statuses());
}

#[test]
fn a_deleted_or_corrupt_object_is_recomputed() {
    let t = TestPipeline::new(&chain(2));
    t.run_ok(&[]);
    let path = t.retort(&["show", "p.yaml", "s0", "--path"]).stdout.lines().last().unwrap().to_string();
    let good = std::fs::read(&path).unwrap();
    // Corrupt: flip the content (make it writable first; objects are read-only).
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&path, perm).unwrap();
    std::fs::write(&path, b"garbage\n").unwrap();
    let v = t.retort(&["cache", "verify", "p.yaml"]);
    assert_ne!(v.code, 0);
    assert!(v.stdout.contains("corrupt") && v.stdout.contains("s0.out"), "{}", v.stdout);
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("s0"), "ran");
    assert_eq!(r.status_of("s1"), "cached", "recomputed s0 has the same bytes");
    assert_eq!(std::fs::read(&path).unwrap(), good);
    // Delete.
    std::fs::remove_file(&path).unwrap();
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("s0"), "ran");
    assert_eq!(t.retort(&["cache", "verify", "p.yaml"]).code, 0);
}

#[test]
fn sigkill_mid_stage_leaves_no_partial_object_and_the_next_run_reruns() {
    let yaml = "stages:\n  slow:\n    kind: command\n    run: echo slow >> $COUNTS; echo partial > $RETORT_OUT_OUT; sleep 30; echo done >> $RETORT_OUT_OUT\n    outputs: [out]\n";
    let t = TestPipeline::new(yaml);
    let mut child = t.cmd().args(["run", "p.yaml", "-q"]).spawn().unwrap();
    let start = Instant::now();
    while t.executions("slow") == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "stage never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let objects: Vec<_> = files_under(&t.path(".retort/objects"));
    assert!(objects.is_empty(), "partial objects visible: {objects:?}");
    assert_eq!(t.retort(&["plan", "p.yaml", "--format", "json"]).status_of("slow"), "would-run");
    // The next run re-runs it (with a quick command this time).
    t.write("p.yaml", &yaml.replace("sleep 30", "true"));
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("slow"), "ran");
}

#[test]
fn two_concurrent_runs_both_succeed_and_run_each_stage_once() {
    let yaml = "stages:\n  a:\n    kind: command\n    run: echo a >> $COUNTS; sleep 1; echo a > $RETORT_OUT_OUT\n    outputs: [out]\n  b:\n    kind: command\n    run: echo b >> $COUNTS; cat $RETORT_IN_X > $RETORT_OUT_OUT\n    inputs: {x: a}\n    outputs: [out]\n";
    let t = TestPipeline::new(yaml);
    let spawn = || t.cmd().args(["run", "p.yaml", "-q", "--format", "json"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let (c1, c2) = (spawn(), spawn());
    let (o1, o2) = (c1.wait_with_output().unwrap(), c2.wait_with_output().unwrap());
    assert!(o1.status.success() && o2.status.success());
    assert_eq!(t.executions("a"), 1);
    assert_eq!(t.executions("b"), 1);
    assert_eq!(t.retort(&["cache", "verify", "p.yaml"]).code, 0);
    let r = t.run_ok(&[]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"));
}

#[test]
fn a_200_stage_noop_run_executes_nothing() {
    let t = TestPipeline::new(&chain(200));
    t.run_ok(&[]);
    let start = Instant::now();
    let r = t.run_ok(&[]);
    let took = start.elapsed();
    assert_eq!(r.statuses().len(), 200);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"));
    assert_eq!(t.read("counts").lines().count(), 200);
    // Not a timing assertion (scripts/bench-engine.sh measures); a sanity bound.
    assert!(took < Duration::from_secs(10), "no-op run took {took:?}");
}

#[test]
fn lock_file_is_stable_and_unchanged_by_a_noop_run() {
    let t = TestPipeline::new(&chain(3));
    t.run_ok(&[]);
    let lock = t.read("retort.lock");
    assert!(lock.contains("format_version: 1"));
    assert!(!lock.contains("duration") && !lock.contains("created"), "volatile fields in lock:\n{lock}");
    let mtime = std::fs::metadata(t.path("retort.lock")).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    t.run_ok(&[]);
    assert_eq!(t.read("retort.lock"), lock);
    assert_eq!(std::fs::metadata(t.path("retort.lock")).unwrap().modified().unwrap(), mtime);
}
