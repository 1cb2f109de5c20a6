//! The README's main pipeline at reduced counts: every stage kind that
//! touches a model (train from scratch, generate, SFT, GRPO, evaluate) runs
//! end to end and the summary carries the evaluation table's metrics.

use std::path::Path;

use crate::util::TestPipeline;

#[test]
fn quickstart_runs_end_to_end_at_reduced_counts() {
    let t = TestPipeline::new("stages: {}\n");
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart.yaml");
    let cache = t.path("cache");
    let sets = [
        "stages.pretrain_tasks.count=60",
        "stages.base.steps=10",
        "stages.base.batch_size=8",
        "stages.train_tasks.count=6",
        "stages.samples.samples=2",
        // A 10-step base model answers nothing right; verify the solver's
        // traces instead so compose has correct samples to build on.
        "stages.verified.input=solver_traces",
        "stages.sf_sft.steps=3",
        "stages.sf_sft.max_len=400",
        "stages.sf_grpo.steps=1",
        "stages.sf_grpo.prompts_per_step=2",
        "stages.sf_grpo.group_size=2",
        "stages.sf_grpo.sampling.max_tokens=32",
        "stages.rl_only.steps=1",
        "stages.rl_only.prompts_per_step=2",
        "stages.rl_only.group_size=2",
        "stages.eval_tasks.count=6",
        "stages.eval.sampling.max_tokens=32",
    ];
    let mut args: Vec<String> = vec!["run".into(), pipeline.display().to_string(), "--format".into(), "json".into(), "-q".into()];
    args.push("--cache-dir".into());
    args.push(cache.display().to_string());
    for s in sets {
        args.push("--set".into());
        args.push(s.into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = t.retort(&args);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.statuses().iter().all(|(_, s)| s == "ran"), "{:?}", r.statuses());
    let eval = r.stage("eval");
    for model in ["base", "sf_sft", "sf_grpo", "rl_only"] {
        for key in ["acc", "acc@3", "acc@4", "skill_use"] {
            assert!(eval["metrics"].get(format!("{model}/{key}")).is_some(), "missing {model}/{key}: {}", eval["metrics"]);
        }
    }
    assert!(r.stage("base")["metrics"]["steps"] == 10);
    // The report of this run, also in a real browser (tests/integration/report.rs).
    crate::report::check_quickstart_report(&t, &pipeline, &cache, &sets, &r);
    // The same run again is all cache hits.
    let again = t.retort(&args);
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", again.statuses());
}
