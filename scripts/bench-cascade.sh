#!/usr/bin/env bash
# What cascaded inference costs (issue 11, "Speed"): `evaluate` with
# `cascade: {mode: cascade}` (step 1 samples the rationale, step 2 the answer
# after prompt + rationale + marker) against `{mode: one_pass}` on
# SmolLM2-135M-Instruct at batch 16, on the CasCoD program teacher's
# in-domain questions, in one run.
#
#   scripts/bench-cascade.sh
#
# The model is a CasCoD student: SmolLM2-135M-Instruct fine-tuned with
# `objective: cascod` on the teacher's chains for BENCH_CASCADE_STUDENT_STEPS
# steps (default 16), then exported to a Q4_0 GGUF, so both modes run the
# default packed engine on a model that writes the format (a rationale right
# after "Rationale:", then the marker and the answer). The untrained model
# (BENCH_CASCADE_STUDENT_STEPS=0) starts its rationale with a space that the
# answer prompt trims, so step 2 can reuse only the question's KV cache, and
# it rarely writes an answer in one pass; the cost it shows is not the
# recipe's. The student is trained once into BENCH_CASCADE_STUDENT_CACHE
# (default ~/.cache/retort-bench-cascade, content-addressed, so a re-run
# reuses it); the timed runs use fresh caches.
#
# BENCH_CASCADE_QUESTIONS (default 32), BENCH_CASCADE_TOKENS (max new tokens
# per step, default 64), BENCH_CASCADE_REPEATS (default 3; every repeat uses
# a fresh cache, so nothing comes from the item cache). RETORT: the binary
# (default: a release build). Prints a Markdown table with the median of
# each mode and the ratio; the issue's target is cascade ≤ 1.3× one pass.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
N=${BENCH_CASCADE_QUESTIONS:-32}
TOKENS=${BENCH_CASCADE_TOKENS:-64}
REPEATS=${BENCH_CASCADE_REPEATS:-3}
STEPS=${BENCH_CASCADE_STUDENT_STEPS:-16}
STUDENT_CACHE=${BENCH_CASCADE_STUDENT_CACHE:-$HOME/.cache/retort-bench-cascade}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/scripts"
cp "$ROOT/pipelines/scripts/cascod_teacher.py" "$work/scripts/"
# The program teacher's stage, the same in the student's pipeline and the bench's.
TEACHER_STAGE="  teacher:
    kind: command
    run: python3 scripts/cascod_teacher.py
    deps: [scripts/cascod_teacher.py]
    outputs: [chains, ind, ood]
    params: {train: 512, test: $N, ood_operands: 4, cue_agree: 0.9, slip: 0.1, unfinished: 0.1, tries: 3}"
model=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
label="SmolLM2-135M-Instruct Q4_1 (untrained for the format)"
if (( STEPS > 0 )); then
    cat > "$work/student.yaml" <<YAML
name: bench-cascade-student
seed: 42
device: cpu
models:
  smollm2:
    path: $model
stages:
$TEACHER_STAGE
  split:
    kind: cascade_split
    input: teacher.chains
  student:
    kind: train
    model: smollm2
    data: split
    objective: cascod
    alpha: 0.3
    lr: 0.0001
    schedule: warmup_cosine
    warmup: 0.1
    min_lr_ratio: 0.1
    steps: $STEPS
    batch_size: 8
    max_len: 128
  gguf:
    kind: export
    input: student
    path: student.gguf
    quant: q4_0
YAML
    echo "bench-cascade: training the student ($STEPS steps; cached in $STUDENT_CACHE)" >&2
    "$RETORT" run "$work/student.yaml" --cache-dir "$STUDENT_CACHE" -q >/dev/null
    model=$work/student.gguf
    label="a CasCoD student of SmolLM2-135M-Instruct ($STEPS steps of 8 questions, α 0.3), Q4_0"
fi
cat > "$work/bench.yaml" <<YAML
name: bench-cascade
seed: 42
device: cpu
models:
  smollm2:
    path: $model
stages:
$TEACHER_STAGE
  eval:
    kind: evaluate
    matrix: {mode: [cascade, one_pass]}
    models: [smollm2]
    tasks: [teacher.ind]
    verifier: numeric
    batch_size: 16
    cascade:
      mode: \${matrix.mode}
    sampling: {temperature: 0, max_tokens: $TOKENS}
YAML

# Seconds of one `retort run --only STAGE` on a fresh cache (teacher first,
# untimed, so both modes time only the evaluation and the model load).
time_stage() {
    local cache=$work/cache-$1-$2
    "$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only teacher -q >/dev/null
    local t0 t1
    t0=$(date +%s.%N)
    "$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only "eval@mode=$1" --log-format plain >/dev/null 2>"$work/log-$1"
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -A runs
for r in $(seq "$REPEATS"); do
    for mode in one_pass cascade; do
        t=$(time_stage "$mode" "$r") || exit 1
        runs[$mode]+="$(printf '%.2f' "$t") "
    done
done
one=$(tr ' ' '\n' <<<"${runs[one_pass]}" | grep . | median)
cas=$(tr ' ' '\n' <<<"${runs[cascade]}" | grep . | median)
echo "Machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg). Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Commit: $(git -C "$ROOT" rev-parse --short HEAD)."
echo "Model: $label."
echo "$N questions, batch 16, greedy, max $TOKENS new tokens per step; median of $REPEATS fresh-cache runs (model load included)."
echo
echo "| mode | runs (s) | median (s) |"
echo "|---|---|---:|"
echo "| one pass | ${runs[one_pass]}| $one |"
echo "| cascade | ${runs[cascade]}| $cas |"
echo
# What the last runs did: accuracy, and how much of step 2's prompts came
# from step 1's KV cache.
for mode in one_pass cascade; do
    acc=$("$RETORT" show "$work/bench.yaml" --cache-dir "$work/cache-$mode-$REPEATS" "eval@mode=$mode" --metrics --format json -q |
        python3 -c '
import json, sys
m = json.load(sys.stdin)["metrics"]
k = next(k[: -len("/acc")] for k in m if k.endswith("/acc"))
acc, lo, hi = m[k + "/acc"], m[k + "/acc_lo"], m[k + "/acc_hi"]
cons = m.get(k + "/consistency", float("nan"))
print("accuracy %.3f [%.3f, %.3f], rationale-answer consistency %.3f" % (acc, lo, hi, cons))')
    echo "$mode: $acc"
done
grep -o 'step 2: .*KV cache' "$work/log-cascade" || true
echo
echo "cascade ÷ one pass: $(echo "scale=2; $cas / $one" | bc)× (target ≤ 1.3×)"
