#!/usr/bin/env bash
# pipelines/skillfactory.yaml at small counts on the CPU: every stage of the
# paper-scale recipe (variant prompts, model-written reflections, *C_full
# traces, SFT and GRPO on SmolLM2-135M, RL-only baseline, evaluation) runs
# for real, in a few minutes on two cores.
#
# Two changes beyond smaller counts, so that a handful of questions yields
# any trace at all: the training questions use 2 numbers and target 10
# (SmolLM2-135M gets ~4% of those right, and ~0% of 3-number ones), and
# `traces` composes with rule reflections: at this scale none of the model's
# own verdicts on its few correct answers agrees with the verifier, so S4
# (which the full recipe runs) would keep nothing. The reflections stage
# still runs and its output is checked.
# The slow-test script (scripts/test-slow.sh) runs it through an ignored test.
#
#   scripts/skillfactory-small.sh [extra retort run arguments, e.g. --cache-dir D --format json]
#
# RETORT: the retort binary (default: build it with `cargo build --release`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
sets=(
    device=cpu
    stages.train_tasks.count=6
    stages.train_tasks.numbers=2
    stages.train_tasks.max_target=10
    stages.attempts.sampling.max_tokens=48
    stages.reflections.samples=2
    stages.traces.reflect=rule
    stages.reflections.sampling.max_tokens=64
    stages.sf_sft.epochs=1
    stages.sf_sft.max_len=1024
    stages.sf_grpo.steps=1
    stages.sf_grpo.group_size=4
    stages.sf_grpo.prompts_per_step=2
    stages.sf_grpo.sampling.max_tokens=96
    stages.rl_only.steps=1
    stages.rl_only.group_size=4
    stages.rl_only.prompts_per_step=2
    stages.rl_only.sampling.max_tokens=96
    stages.eval_tasks.count=8
    stages.eval.sampling.max_tokens=96
)
args=()
for s in "${sets[@]}"; do args+=(--set "$s"); done
exec "$RETORT" run "$ROOT/pipelines/skillfactory.yaml" "${args[@]}" "$@"
