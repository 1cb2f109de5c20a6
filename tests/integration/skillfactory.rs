//! `pipelines/skillfactory.yaml` at small counts on SmolLM2-135M
//! (`scripts/skillfactory-small.sh`): minutes of CPU, so `#[ignore]`d and run
//! by `scripts/test-slow.sh`. Needs models/ (scripts/fetch-smollm2.sh).

use std::path::Path;
use std::process::Command;

use crate::util::{Run, TestPipeline};

#[test]
#[ignore = "slow (~2 min on 2 cores, release build): run scripts/test-slow.sh"]
fn skillfactory_runs_small_on_smollm2() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf").exists(),
        "needs the model: run scripts/fetch-smollm2.sh"
    );
    let t = TestPipeline::new("stages: {}\n");
    let cache = t.path("cache");
    let run = |extra: &[&str]| -> Run {
        Command::new(root.join("scripts/skillfactory-small.sh"))
            .env("RETORT", env!("CARGO_BIN_EXE_retort"))
            .args(["--cache-dir", cache.to_str().unwrap(), "--format", "json", "-q"])
            .args(extra)
            .output()
            .unwrap()
            .into()
    };
    let r = run(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // S1: every question under each of the four prompt variants, 2 samples each.
    assert_eq!(r.stage("attempts")["metrics"]["rows"], 6 * 4 * 2);
    // S3: one row per attempt, its 2 reflections collected into a list.
    assert_eq!(r.stage("reflections")["metrics"]["rows"], 6 * 4 * 2);
    assert_eq!(r.stage("reflections")["metrics"]["samples"], 6 * 4 * 2 * 2);
    assert!(r.stage("traces")["metrics"]["traces"].as_u64().unwrap() > 0, "{}", r.stage("traces"));
    let eval = r.stage("eval");
    for model in ["smollm2", "sf_sft", "sf_grpo", "rl_only"] {
        for key in ["acc@3", "acc@4", "acc@5", "acc@6", "skill_use"] {
            assert!(eval["metrics"].get(format!("{model}/{key}")).is_some(), "missing {model}/{key}: {}", eval["metrics"]);
        }
    }
    let again = run(&[]);
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", again.statuses());
}
