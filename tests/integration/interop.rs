//! Data interop with the real HF `datasets` library (the venv of
//! scripts/setup-interop.sh, which .ci/run installs): retort's Parquet
//! exports load in `datasets` with the right features, and datasets that
//! `datasets` saved (to_parquet, Hub shards, save_to_disk) go through
//! `task: file` and `export` and come back equal. Without the venv the tests
//! skip, saying so on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::util::TestPipeline;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, installing `datasets` once; `Err` says why not.
fn python() -> Result<PathBuf, String> {
    static ONCE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let out = Command::new(repo().join("scripts/setup-interop.sh")).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("`datasets` cannot be installed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let venv = std::env::var_os("RETORT_INTEROP_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv-interop"));
        Ok(venv.join("bin/python"))
    })
    .clone()
}

/// Runs the `datasets` peer script (offline, with its caches in `dir`);
/// `None` (after saying why) when the venv is missing.
fn peer(dir: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipping: {why} (scripts/setup-interop.sh)");
            return None;
        }
    };
    let out = Command::new(py)
        .arg(repo().join("scripts/interop/datasets_peer.py"))
        .args(args)
        .env("HF_HOME", dir.join(".hf"))
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "datasets_peer.py {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

/// Each way `datasets` saves goes through `task: file` -> `export` (rows,
/// Parquet) and loads back in `datasets` with the same features and rows.
#[test]
fn datasets_files_round_trip_through_task_file_and_export() {
    let t = TestPipeline::new("");
    let Some(made) = peer(t.dir.path(), &["make", t.dir.path().to_str().unwrap()]) else { return };
    let mut yaml = String::from("name: interop\nseed: 1\nstages:\n");
    for (name, path) in [("hf", "hf.parquet"), ("hub", "hub"), ("saved", "saved")] {
        yaml += &format!("  {name}:\n    kind: task\n    task: file\n    path: {path}\n");
        yaml += &format!("  out_{name}:\n    kind: export\n    input: {name}\n    path: out/{name}.parquet\n");
    }
    t.write("p.yaml", &yaml);
    let r = t.run_ok(&[]);
    for name in ["hf", "hub", "saved"] {
        assert_eq!(r.stage(name)["outputs"]["out"]["rows"], 4, "{name}");
        let same = peer(t.dir.path(), &["same", t.dir.path().to_str().unwrap(), t.path(&format!("out/{name}.parquet")).to_str().unwrap()]).unwrap();
        assert_eq!(same["same"], true, "{name}: {same}");
    }
    // The rows `task: file` holds are the rows `datasets` made, nested types included.
    let show = t.retort(&["show", "p.yaml", "saved", "--head", "10", "--path"]);
    let stored = show.stdout.lines().last().unwrap().to_string();
    let stored: Vec<serde_json::Value> =
        std::fs::read_to_string(stored).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(serde_json::Value::Array(stored), made["rows"]);

    // Unchanged inputs (files and folders alike) are cached.
    let again = t.run_ok(&[]);
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", again.statuses());
}

/// Every export format written as Parquet loads in `datasets` with the
/// features TRL expects: strings for prompt/completion/chosen/rejected, a
/// list of {role, content} structs for messages, int64 lists stay int64 lists.
#[test]
fn parquet_exports_load_in_datasets_with_their_types() {
    let rows = [
        r#"{"id": "a", "prompt": "2+2?", "response": "4", "chosen": "4", "rejected": "5", "nums": [2, 2], "reward": 1.0}"#,
        r#"{"id": "b", "prompt": "3+3?", "response": "6", "chosen": "6", "rejected": "7", "nums": [3, 3, 1], "reward": 0.5}"#,
    ];
    let mut yaml = String::from("name: fmt\nseed: 1\nstages:\n  rows:\n    kind: task\n    task: file\n    path: rows.jsonl\n");
    for f in ["rows", "prompt_completion", "messages", "preference"] {
        yaml += &format!("  x_{f}:\n    kind: export\n    input: rows\n    path: out/{f}.parquet\n    format: {f}\n");
    }
    let t = TestPipeline::new(&yaml);
    t.write("rows.jsonl", &(rows.join("\n") + "\n"));
    let r = t.run_ok(&[]);
    let describe = |f: &str| peer(t.dir.path(), &["describe", t.path(&format!("out/{f}.parquet")).to_str().unwrap()]);
    let Some(d) = describe("rows") else { return };
    let s = |v: &serde_json::Value| v.to_string();
    assert!(s(&d["features"]["nums"]).contains("List(Value('int64'))"), "{d}");
    assert!(s(&d["features"]["reward"]).contains("float64") && s(&d["features"]["prompt"]).contains("string"), "{d}");
    assert_eq!(d["rows"][1]["nums"], serde_json::json!([3, 3, 1]));

    let d = describe("messages").unwrap();
    let m = s(&d["features"]["messages"]);
    assert!(m.starts_with("\"List({") && m.contains("'role': Value('string')") && m.contains("'content': Value('string')"), "{m}");
    assert_eq!(d["rows"][0]["messages"], serde_json::json!([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]));

    let d = describe("prompt_completion").unwrap();
    assert_eq!(d["rows"][1], serde_json::json!({"prompt": "3+3?", "completion": "6", "id": "b"}));
    let d = describe("preference").unwrap();
    assert_eq!(d["rows"][0], serde_json::json!({"prompt": "2+2?", "chosen": "4", "rejected": "5", "id": "a"}));
    assert!(s(&d["features"]["chosen"]).contains("string"), "{d}");

    // A deleted Parquet export is restored byte for byte without re-running.
    let bytes = std::fs::read(t.path("out/messages.parquet")).unwrap();
    std::fs::remove_file(t.path("out/messages.parquet")).unwrap();
    let again = t.run_ok(&[]);
    assert_eq!(again.status_of("x_messages"), "cached");
    assert_eq!(std::fs::read(t.path("out/messages.parquet")).unwrap(), bytes);
    assert_eq!(r.stage("x_messages")["outputs"]["out"]["rows"], 2);
}

/// A Parquet file with the wrong schema fails `task: file` with one error
/// naming the file, the column and the row, exit 2, and nothing cached.
#[test]
fn a_parquet_file_with_the_wrong_schema_is_bad_input() {
    // The same check applies to JSONL.
    let jsonl = TestPipeline::new("stages:\n  rows:\n    kind: task\n    task: file\n    path: rows.jsonl\n");
    jsonl.write("rows.jsonl", "{\"prompt\": \"ok\", \"response\": \"r\"}\n{\"prompt\": [\"a\", \"b\"], \"response\": \"r\"}\n");
    let r = jsonl.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "a list prompt in JSONL is refused too: {}", r.stderr);
    assert!(r.stderr.contains("rows.jsonl") && r.stderr.contains("row 1") && r.stderr.contains("column `prompt` must be a string, got a list"), "{}", r.stderr);

    let t = TestPipeline::new("stages:\n  t:\n    kind: task\n    task: file\n    path: data.parquet\n");
    // A list where a string is needed (retort writes the bad file itself:
    // export does not judge columns).
    std::fs::write(t.path("data.parquet"), parquet_of(&[r#"{"prompt": ["a", "b"], "answer": 1}"#])).unwrap();
    let r = t.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("data.parquet") && r.stderr.contains("row 0") && r.stderr.contains("column `prompt` must be a string, got a list"), "{}", r.stderr);
    assert!(!t.path("retort.lock").exists() || !t.read("retort.lock").contains("\n  t:"), "nothing recorded");

    // No `prompt` column at all.
    std::fs::write(t.path("data.parquet"), parquet_of(&[r#"{"question": "2+2", "answer": 4}"#])).unwrap();
    let r = t.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("data.parquet") && r.stderr.contains("no `prompt` column") && r.stderr.contains("`question`"), "{}", r.stderr);
}

/// Parquet bytes of JSON rows, written by retort's own `export`.
fn parquet_of(rows: &[&str]) -> Vec<u8> {
    let t = TestPipeline::new("stages:\n  rows:\n    kind: command\n    run: cp rows.jsonl $RETORT_OUT_OUT\n    deps: [rows.jsonl]\n    outputs: [out]\n  x:\n    kind: export\n    input: rows\n    path: x.parquet\n");
    t.write("rows.jsonl", &(rows.join("\n") + "\n"));
    t.run_ok(&[]);
    std::fs::read(t.path("x.parquet")).unwrap()
}
