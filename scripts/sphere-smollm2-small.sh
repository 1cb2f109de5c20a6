#!/usr/bin/env bash
# pipelines/sphere-smollm2.yaml at small counts on the CPU: SmolLM2-135M-Instruct
# learns the step format (60 SFT steps on the noisy solver's traces), searches
# 48 Countdown problems with 3 numbers step by step (E = 3, the rule PRM), its
# own samples make the baselines' data, every arm trains for 12 steps, and all
# are evaluated on 60 + 60 held-out problems. About 15 minutes with a release
# build; the counts are too small for a confident comparison (README, "SPHERE").
#
#   scripts/sphere-smollm2-small.sh [extra retort run arguments, e.g. --cache-dir D --format json]
#
# RETORT: the retort binary (default: build it with `cargo build --release`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
sets=(device=cpu stages.data.params.train=96 stages.data.params.test=60
      stages.base.steps=60 stages.base.batch_size=8 stages.base.max_len=80
      stages.samples.samples=4)
for s in search search_nocorr search_nodiv search_r2; do
    sets+=("stages.$s.candidates=3" "stages.$s.max_steps=4")
done
for s in search search_nocorr search_r2; do sets+=("stages.$s.explore=4"); done
for arm in rs_sft outcome_dpo sphere sphere_nocorr sphere_nodiv sphere_r2; do
    sets+=("stages.$arm.steps=12" "stages.$arm.batch_size=4" "stages.$arm.max_len=80")
done
# §2 P5's rates are meant for 100 steps; at 12, DPO at 1e-5 overfit a handful
# of pairs (margins past 4, every arm below the base), so these sit between.
sets+=(stages.rs_sft.lr=0.000005)
for arm in outcome_dpo sphere sphere_nocorr sphere_nodiv sphere_r2; do sets+=("stages.$arm.lr=0.000003"); done
args=()
for s in "${sets[@]}"; do args+=(--set "$s"); done
exec "$RETORT" run "$ROOT/pipelines/sphere-smollm2.yaml" "${args[@]}" "$@"
