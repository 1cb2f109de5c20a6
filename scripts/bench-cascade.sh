#!/usr/bin/env bash
# What cascaded inference costs (issue 11, "Speed"): `evaluate` with
# `cascade: {mode: cascade}` (step 1 samples the rationale, step 2 the answer
# after prompt + rationale + marker) against `{mode: one_pass}` on
# SmolLM2-135M-Instruct (the Q4_1 GGUF, the default packed engine) at batch
# 16, on the CasCoD program teacher's in-domain questions, in one run.
#
#   scripts/bench-cascade.sh
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
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/scripts"
cp "$ROOT/pipelines/scripts/cascod_teacher.py" "$work/scripts/"
cat > "$work/bench.yaml" <<YAML
name: bench-cascade
seed: 42
device: cpu
models:
  smollm2:
    path: $ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
stages:
  teacher:
    kind: command
    run: python3 scripts/cascod_teacher.py
    deps: [scripts/cascod_teacher.py]
    outputs: [chains, ind, ood]
    params: {train: 16, test: $N, ood_operands: 4, cue_agree: 0.9, slip: 0.1, unfinished: 0.1, tries: 3}
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
    "$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only "eval@mode=$1" -q >/dev/null
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
echo "SmolLM2-135M-Instruct Q4_1, $N questions, batch 16, greedy, max $TOKENS new tokens per step; median of $REPEATS fresh-cache runs (model load included)."
echo
echo "| mode | runs (s) | median (s) |"
echo "|---|---|---:|"
echo "| one pass | ${runs[one_pass]}| $one |"
echo "| cascade | ${runs[cascade]}| $cas |"
echo
echo "cascade ÷ one pass: $(echo "scale=2; $cas / $one" | bc)× (target ≤ 1.3×)"
