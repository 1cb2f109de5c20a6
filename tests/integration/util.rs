//! A fresh directory with a pipeline in it, and a way to run `retort` there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestPipeline {
    pub dir: tempfile::TempDir,
}

/// What one `retort` invocation did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON summary (`--format json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }

    /// `name -> status` from the JSON summary.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.json()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
            .collect()
    }

    pub fn status_of(&self, stage: &str) -> String {
        self.statuses().into_iter().find(|(n, _)| n == stage).map(|(_, s)| s).unwrap_or_else(|| "absent".into())
    }

    pub fn stage(&self, stage: &str) -> serde_json::Value {
        self.json()["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).cloned().unwrap()
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl TestPipeline {
    pub fn new(yaml: &str) -> Self {
        let t = TestPipeline { dir: tempfile::tempdir().unwrap() };
        t.write("p.yaml", yaml);
        t
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_retort"));
        c.current_dir(self.dir.path()).env_remove("RETORT_CACHE_DIR").env("COUNTS", self.path("counts"));
        c
    }

    /// `retort ARGS...` in the pipeline's directory.
    pub fn retort(&self, args: &[&str]) -> Run {
        self.cmd().args(args).output().unwrap().into()
    }

    /// `retort run p.yaml --format json ARGS...`, asserting exit 0.
    pub fn run_ok(&self, extra: &[&str]) -> Run {
        let mut args = vec!["run", "p.yaml", "--format", "json", "-q"];
        args.extend_from_slice(extra);
        let r = self.retort(&args);
        assert_eq!(r.code, 0, "run failed:\n{}\n{}", r.stdout, r.stderr);
        r
    }

    /// How many times each stage's command executed (stages append their
    /// name to `$COUNTS`).
    pub fn executions(&self, stage: &str) -> usize {
        self.read("counts").lines().filter(|l| *l == stage).count()
    }

    pub fn cache_exists(&self) -> bool {
        self.path(".retort").exists()
    }
}

/// A linear chain of counting `command` stages `s0 -> s1 -> ...`: each copies
/// its input, appends its parameter, and records its execution in `$COUNTS`.
pub fn chain(n: usize) -> String {
    let mut y = String::from("name: chain\nseed: 1\nstages:\n");
    for i in 0..n {
        y += &format!("  s{i}:\n    kind: command\n");
        if i == 0 {
            y += "    run: echo s0 >> $COUNTS; echo start > $RETORT_OUT_OUT; echo $RETORT_PARAM_K >> $RETORT_OUT_OUT\n";
        } else {
            y += &format!(
                "    run: echo s{i} >> $COUNTS; cat $RETORT_IN_SRC > $RETORT_OUT_OUT; echo $RETORT_PARAM_K >> $RETORT_OUT_OUT\n    inputs: {{src: s{}.out}}\n",
                i - 1
            );
        }
        y += "    outputs: [out]\n    params: {k: 1}\n";
    }
    y
}

#[allow(dead_code)]
pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Runs `validate`, `plan` and `run` on a bad file: each must exit 2 with
/// every `expect` in its message, without a panic, and leave no cache or
/// lock behind (nothing ran). Returns `validate`'s message.
pub fn rejects(yaml: &str, expect: &[&str]) -> String {
    rejects_with(yaml, &[], expect)
}

/// [`rejects`] with `files` (path, text) written beside the pipeline first,
/// so the input files it names are in place.
pub fn rejects_with(yaml: &str, files: &[(&str, &str)], expect: &[&str]) -> String {
    let t = TestPipeline::new(yaml);
    for (path, text) in files {
        t.write(path, text);
    }
    for cmd in ["validate", "plan", "run"] {
        let r = t.retort(&[cmd, "p.yaml"]);
        assert_eq!(r.code, 2, "{cmd}: expected exit 2, got {}:\n{}", r.code, r.stderr);
        for e in expect {
            assert!(r.stderr.contains(e), "{cmd}: {e:?} not in:\n{}", r.stderr);
        }
        assert!(!r.stderr.contains("panicked"), "{cmd}: {}", r.stderr);
        assert!(!t.cache_exists(), "{cmd} created a cache for a bad file");
        assert!(!t.path("retort.lock").exists());
    }
    t.retort(&["validate", "p.yaml"]).stderr
}

/// A command stage writing four rows and a 3-step SFT of a very small
/// `tiny` model: the cheapest pipeline that trains.
pub const TINY_SFT: &str = r#"seed: 3
models:
  scratch: {tiny: {preset: tiny, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64}}
stages:
  data:
    kind: command
    outputs: [out]
    run: |
      for i in 1 2 3 4; do echo "{\"prompt\": \"1+$i=\", \"response\": \"$((1 + i))\"}"; done > "$RETORT_OUT_OUT"
  sft:
    kind: train
    model: scratch
    data: data
    objective: sft
    steps: 3
    batch_size: 2
    max_len: 32
"#;

/// Every file under `dir`, at any depth (none if `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
