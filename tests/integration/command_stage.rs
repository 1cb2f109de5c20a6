//! What a `command` stage's own output does: it goes to the stage log, never
//! to `retort`'s stdout, and it is shown while the command runs.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::util::TestPipeline;

const NOISY: &str = "stages:\n  noisy:\n    kind: command\n    run: echo to-stdout; echo to-stderr >&2; printf 'no newline'; echo x > $RETORT_OUT_OUT\n    outputs: [out]\n  after:\n    kind: command\n    run: echo '{\"not\":\"the summary\"}'; cat $RETORT_IN_X > $RETORT_OUT_OUT\n    inputs: {x: noisy}\n    outputs: [out]\n";

#[test]
fn a_commands_stdout_goes_to_the_log_and_run_json_stays_one_object() {
    let t = TestPipeline::new(NOISY);
    for log in ["plain", "json"] {
        let r = t.retort(&["run", "p.yaml", "--format", "json", "--log-format", log, "--force", "noisy", "--force", "after"]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", r.stdout));
        assert_eq!(v["stages"].as_array().map(Vec::len), Some(2), "{v}");
        for line in ["to-stdout", "to-stderr", "no newline", "the summary"] {
            assert!(r.stderr.contains(line), "--log-format {log}: `{line}` not in the log:\n{}", r.stderr);
        }
    }
    let r = t.retort(&["run", "p.yaml", "--format", "json", "--log-format", "plain", "--force", "noisy"]);
    assert!(r.stderr.contains("[noisy] to-stdout"), "{}", r.stderr);
}

#[test]
fn a_failed_commands_message_shows_the_last_lines_of_both_streams() {
    let t = TestPipeline::new(
        "stages:\n  bad:\n    kind: command\n    run: 'for i in $(seq 1 30); do echo line$i; done; echo last-err >&2; exit 4'\n    outputs: [out]\n",
    );
    let r = t.retort(&["run", "p.yaml", "--format", "json", "-q"]);
    assert_eq!(r.code, 1);
    let err = r.stage("bad")["error"].as_str().unwrap().to_string();
    assert!(err.contains("code 4") && err.contains("line30") && err.contains("last-err"), "{err}");
    assert!(!err.contains("line10\n"), "more than the last 20 lines: {err}");
}

/// The command prints a line, then waits (at most 20 s) for a file that the
/// test writes only once that line has reached retort's log: if output were
/// shown after the command ends, the command would time out and fail.
#[test]
fn a_commands_output_is_streamed_while_it_runs() {
    let t = TestPipeline::new(
        "stages:\n  waits:\n    kind: command\n    run: 'echo ready; i=0; while [ ! -f go ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; test -f go && echo ok > $RETORT_OUT_OUT'\n    outputs: [out]\n",
    );
    let mut child = t
        .cmd()
        .args(["run", "p.yaml", "--format", "json", "--log-format", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) {
        let ready = line.contains("[waits] ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    t.write("go", "");
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    assert!(seen.iter().any(|l| l.contains("[waits] ready")), "`ready` never reached the log while running: {seen:?}");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}
