#!/usr/bin/env bash
# pipelines/montessori-smollm2.yaml at small counts on the CPU: SmolLM2-135M-Instruct
# writes a few questions from few-shot prompts and answers them, warms up as the
# student with its AdamW state, scores each probing row's influence, is
# DPO-trained as the teacher on the pairs (and on shuffled ones), writes each
# teacher's training set, trains a student on each, and evaluates them, on a
# handful of rows. What is tested here is that the recipe runs on a real
# instruction-tuned model, not its result.
#
#   scripts/montessori-smollm2-small.sh [extra retort run arguments, e.g. --cache-dir D --format json]
#
# RETORT: the retort binary (default: build it with `cargo build --release`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
sets=(device=cpu stages.data.params.seeds=16 stages.data.params.reference=8 stages.data.params.test=16
      stages.synth0.prompts=6 stages.synth0.prompts_per_round=3 stages.synth0.shots=4 stages.synth0.from_generated=1
      stages.synth0.sampling.max_tokens=96 stages.answers0.sampling.max_tokens=64
      stages.split0.params.warmup=4 stages.split0.params.probe=16
      stages.influence.batch_size=4 stages.influence.max_len=256 stages.warm.max_len=256
      stages.eval.sampling.max_tokens=64 stages.eval_tuned.sampling.max_tokens=64
      stages.eval_untuned.sampling.max_tokens=64)
for arm in untuned tuned random; do
    sets+=("stages.synth_$arm.prompts=4" "stages.synth_$arm.prompts_per_round=2" "stages.synth_$arm.shots=4"
           "stages.synth_$arm.from_generated=1" "stages.synth_$arm.sampling.max_tokens=96"
           "stages.answers_$arm.sampling.max_tokens=64" "stages.student_$arm.max_len=256")
done
for t in tuned random; do sets+=("stages.teacher_$t.max_len=256"); done
args=()
for s in "${sets[@]}"; do args+=(--set "$s"); done
exec "$RETORT" run "$ROOT/pipelines/montessori-smollm2.yaml" "${args[@]}" "$@"
