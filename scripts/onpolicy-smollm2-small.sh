#!/usr/bin/env bash
# pipelines/onpolicy_sft-smollm2.yaml at small counts on the CPU: the data,
# SmolLM2-135M-Instruct's own answers, Hinted Decoding, the φ scores, every
# arm fine-tuned for a few steps, and both evaluations, on a handful of
# questions.
#
#   scripts/onpolicy-smollm2-small.sh [extra retort run arguments, e.g. --cache-dir D --format json]
#
# RETORT: the retort binary (default: build it with `cargo build --release`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
sets=(device=cpu stages.data.params.train_a=16 stages.data.params.test_a=8 stages.data.params.test_b=8
      stages.own.sampling.max_tokens=96 stages.hd3.sampling.max_tokens=96 stages.hd_wrong.sampling.max_tokens=96
      stages.eval.sampling.max_tokens=96
      # Untrained SmolLM2 gets few of 16 sums right (0 in our run): keep its
      # wrong answers as the rejection-sampling arm, so every arm has data
      # (what is tested here is that the recipe runs, not its result).
      stages.own_right.where.correct=false)
for arm in sft_raw idft_raw sft_rs sft_hd3 sft_mix idft_mix; do
    sets+=("stages.$arm.steps=2" "stages.$arm.batch_size=4")
done
args=()
for s in "${sets[@]}"; do args+=(--set "$s"); done
exec "$RETORT" run "$ROOT/pipelines/onpolicy_sft-smollm2.yaml" "${args[@]}" "$@"
