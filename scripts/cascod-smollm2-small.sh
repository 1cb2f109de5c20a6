#!/usr/bin/env bash
# pipelines/cascod-smollm2.yaml at small counts on the CPU: the program
# teacher, the split, all six arms fine-tuned from SmolLM2-135M-Instruct for
# a few steps, and the four evaluations, on a handful of questions.
#
#   scripts/cascod-smollm2-small.sh [extra retort run arguments, e.g. --cache-dir D --format json]
#
# RETORT: the retort binary (default: build it with `cargo build --release`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
sets=(device=cpu stages.teacher.params.train=32 stages.teacher.params.test=8 stages.eval.sampling.max_tokens=48)
for arm in answer_sft std_cot weighted_std_cot cascod; do
    sets+=("stages.$arm.steps=4" "stages.$arm.batch_size=4")
done
args=()
for s in "${sets[@]}"; do args+=(--set "$s"); done
exec "$RETORT" run "$ROOT/pipelines/cascod-smollm2.yaml" "${args[@]}" "$@"
