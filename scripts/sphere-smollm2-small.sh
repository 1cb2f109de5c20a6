#!/usr/bin/env bash
# pipelines/sphere-smollm2.yaml at small counts on the CPU: SmolLM2-135M-Instruct
# searches a few Countdown problems step by step (E = 3, the rule PRM), its own
# samples make the baselines' data, every arm trains for 2 steps, and all are
# evaluated on a handful of held-out problems. What is tested here is that the
# recipe runs on a real instruction-tuned model, not its result.
#
#   scripts/sphere-smollm2-small.sh [extra retort run arguments, e.g. --cache-dir D --format json]
#
# RETORT: the retort binary (default: build it with `cargo build --release`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
sets=(device=cpu stages.train_tasks.count=12 stages.test_tasks.count=8
      stages.samples.samples=2 stages.samples.sampling.max_tokens=64 stages.eval.sampling.max_tokens=64)
for s in search search_nocorr search_nodiv; do
    sets+=("stages.$s.candidates=3" "stages.$s.max_steps=4")
done
for s in search search_nocorr; do sets+=("stages.$s.explore=4" "stages.$s.explore_sampling.max_tokens=64"); done
for arm in rs_sft outcome_dpo sphere sphere_nocorr sphere_nodiv; do
    sets+=("stages.$arm.steps=2" "stages.$arm.batch_size=2" "stages.$arm.max_len=256")
done
args=()
for s in "${sets[@]}"; do args+=(--set "$s"); done
exec "$RETORT" run "$ROOT/pipelines/sphere-smollm2.yaml" "${args[@]}" "$@"
