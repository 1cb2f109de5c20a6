//! Checkpoints in transformers, both ways, and retort's TRL-format exports
//! through TRL's own helpers: slow (torch), so `#[ignore]`d and run by
//! scripts/test-slow.sh with the venv of scripts/setup-peers.sh
//! (torch, transformers, trl). Without that venv they skip, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::TestPipeline;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> Option<PathBuf> {
    let py = repo().join(".venv-peers/bin/python");
    let ok = Command::new(&py).args(["-c", "import torch, transformers, trl"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: .venv-peers with torch, transformers and trl is missing (scripts/setup-peers.sh)");
        return None;
    }
    Some(py)
}

fn peer(py: &Path, args: &[&str]) -> Value {
    let out = Command::new(py).arg(repo().join("scripts/interop/transformers_peer.py")).args(args).env("HF_HUB_OFFLINE", "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "transformers_peer.py {args:?}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

const TRAIN: &str = "name: tiny\nseed: 3\nmodels:\n  small: {tiny: {preset: micro}}\nstages:\n  rows:\n    kind: task\n    task: file\n    path: rows.jsonl\n  model:\n    kind: train\n    model: small\n    data: rows\n    objective: sft\n    steps: 30\n    batch_size: 4\n";

/// A retort checkpoint trained for a few steps (a character vocabulary).
fn trained(t: &TestPipeline) -> PathBuf {
    let rows: Vec<String> =
        (0..16).map(|i| format!("{{\"prompt\": \"{i} plus {i} is\", \"response\": \" {}\"}}", 2 * i)).collect();
    t.write("rows.jsonl", &(rows.join("\n") + "\n"));
    t.run_ok(&[]);
    let show = t.retort(&["show", "p.yaml", "model", "--path"]);
    PathBuf::from(show.stdout.lines().last().unwrap().trim())
}

fn sample(t: &TestPipeline, model: &Path, prompt: &str) -> (Vec<u64>, Vec<u64>) {
    let r = t.retort(&["sample", "--model", model.to_str().unwrap(), "--prompt", prompt, "--max-tokens", "12", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let ids = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    (ids("prompt_tokens"), ids("tokens"))
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// Greedy tokens of `model` in transformers after `prompt_ids` equal retort's
/// (retort stops at EOS; transformers is told not to, so compare retort's length).
fn same_greedy(py: &Path, model: &Path, prompt_ids: &[u64], ours: &[u64], what: &str) {
    let ids: Vec<String> = prompt_ids.iter().map(u64::to_string).collect();
    let mut args = vec!["greedy", model.to_str().unwrap(), "12"];
    args.extend(ids.iter().map(String::as_str));
    let theirs = u64s(&peer(py, &args)["tokens"]);
    assert!(!ours.is_empty() && theirs[..ours.len()] == ours[..], "{what}: transformers {theirs:?} vs retort {ours:?}");
}

#[test]
#[ignore = "slow: torch; scripts/test-slow.sh"]
fn a_retort_checkpoint_generates_the_same_tokens_in_transformers() {
    let Some(py) = python() else { return };
    let t = TestPipeline::new(TRAIN);
    let ckpt = trained(&t);
    for prompt in ["3 plus 3 is", "7 plus"] {
        let (prompt_ids, ours) = sample(&t, &ckpt, prompt);
        let tok = peer(&py, &["tokenize", ckpt.to_str().unwrap(), prompt]);
        assert_eq!(u64s(&tok["ids"]), prompt_ids, "tokenizer.json in transformers");
        same_greedy(&py, &ckpt, &prompt_ids, &ours, prompt);
    }
}

#[test]
#[ignore = "slow: torch; scripts/test-slow.sh"]
fn transformers_saved_llama_and_qwen2_generate_the_same_tokens_in_retort() {
    let Some(py) = python() else { return };
    let t = TestPipeline::new(TRAIN);
    let ckpt = trained(&t);
    for arch in ["llama", "qwen2"] {
        let dir = t.path(&format!("hf-{arch}"));
        peer(&py, &["save-random", arch, dir.to_str().unwrap(), ckpt.to_str().unwrap()]);
        for prompt in ["3 plus 3 is", "12 plus"] {
            let (prompt_ids, ours) = sample(&t, &dir, prompt);
            same_greedy(&py, &dir, &prompt_ids, &ours, &format!("{arch} {prompt:?}"));
        }
    }
}

/// retort's Parquet exports, loaded with `datasets`, are what TRL's
/// helpers expect: `messages` is conversational, prompt-completion and
/// preference rows are standard (passed through `maybe_apply_chat_template`
/// unchanged), and a conversational row gets the checkpoint's chat template.
#[test]
#[ignore = "slow: torch; scripts/test-slow.sh"]
fn trl_helpers_take_retorts_parquet_exports() {
    let Some(py) = python() else { return };
    let mut yaml = TRAIN.to_string();
    yaml += "  pairs:\n    kind: task\n    task: file\n    path: pairs.jsonl\n";
    for (f, input) in [("messages", "rows"), ("prompt_completion", "rows"), ("preference", "pairs")] {
        yaml += &format!("  x_{f}:\n    kind: export\n    input: {input}\n    path: out/{f}.parquet\n    format: {f}\n");
    }
    let t = TestPipeline::new(&yaml);
    t.write("pairs.jsonl", "{\"prompt\": \"1 plus 1 is\", \"chosen\": \" 2\", \"rejected\": \" 3\"}\n");
    let ckpt = trained(&t);
    let p = |f: &str| t.path(&format!("out/{f}.parquet")).to_str().unwrap().to_string();
    let (m, pc, pref) = (p("messages"), p("prompt_completion"), p("preference"));
    let v = peer(&py, &["trl", &m, &pc, &pref, ckpt.to_str().unwrap()]);
    assert_eq!(v["messages_conversational"], true, "{v}");
    assert_eq!(v["prompt_completion_conversational"], false, "{v}");
    assert_eq!(v["preference_conversational"], false, "{v}");
    assert_eq!(v["prompt_completion_applied"]["completion"], " 0", "{v}");
    assert_eq!(v["preference_applied"]["chosen"], " 2", "{v}");
    let text = v["messages_applied"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("0 plus 0 is") && text.contains("<|im_start|>"), "the checkpoint's chat template: {v}");
}
