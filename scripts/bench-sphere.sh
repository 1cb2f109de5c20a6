#!/usr/bin/env bash
# What SPHERE's Math-Shepherd rollouts cost (issue 10, "Speed"): step
# rollouts per second of `prm_filter`'s `mc` scorer against the same
# rollouts done with transformers (scripts/bench/mc_peer.py: batched
# `generate` with `num_return_sequences`, the same contexts, the same K,
# 2 threads), on the tiny model and on SmolLM2-135M-Instruct, in one run.
#
# The rows are Countdown problems in a few-shot step prompt (two worked
# problems in `a op b = c` steps), each with a right two-step solution,
# so there are two step prefixes per row and K rollouts of each (T = 0.7,
# up to BENCH_SPHERE_TOKENS new tokens, stopping at `</answer>`). The tiny
# model is trained here for a few steps on those rows (its rollouts are
# babble; what is timed is the sampling). retort's figure is the stage's
# wall time on a fresh cache (model load included); the peer's excludes
# its model load. SmolLM2: retort runs the Q4_1 GGUF (the packed engine),
# transformers its f32 dequantization. The issue's target is ≥ 2×
# transformers on SmolLM2.
#
#   scripts/bench-sphere.sh
#
# BENCH_SPHERE_ROWS (default 8), BENCH_SPHERE_ROLLOUTS (K, default 8),
# BENCH_SPHERE_TOKENS (default 48), BENCH_SPHERE_REPEATS (default 3),
# BENCH_SPHERE_MODELS (default "tiny smollm2"). RETORT: the binary
# (default: a release build). Needs .venv-peers (scripts/setup-peers.sh)
# for the peer; without it only retort's side runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
N=${BENCH_SPHERE_ROWS:-8}
K=${BENCH_SPHERE_ROLLOUTS:-8}
TOKENS=${BENCH_SPHERE_TOKENS:-48}
REPEATS=${BENCH_SPHERE_REPEATS:-3}
MODELS=${BENCH_SPHERE_MODELS:-tiny smollm2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Rows for the pipeline and, from the same text, the contexts the `mc`
# scorer rolls out (prompt + the steps so far, each with its newline).
python3 - "$N" "$work" <<'PY'
import json, random, sys
n, work = int(sys.argv[1]), sys.argv[2]
shots = ("Use [2, 5, 3] to make 21.\n2 + 5 = 7\n7 * 3 = 21\n<answer>(2 + 5) * 3</answer>\n\n"
         "Use [9, 4, 1] to make 6.\n9 - 4 = 5\n5 + 1 = 6\n<answer>9 - 4 + 1</answer>\n\n")
rng = random.Random(3)
with open(f"{work}/rows.jsonl", "w") as rows, open(f"{work}/contexts.jsonl", "w") as ctx:
    for _ in range(n):
        a, b, c = (rng.randint(1, 9) for _ in range(3))
        s, t = a + b, (a + b) * c
        prompt = f"{shots}Use [{a}, {b}, {c}] to make {t}.\n"
        steps = [f"{a} + {b} = {s}\n", f"{s} * {c} = {t}\n"]
        response = "".join(steps) + f"<answer>({a} + {b}) * {c}</answer>"
        rows.write(json.dumps({"prompt": prompt, "response": response, "nums": [a, b, c], "target": t}) + "\n")
        for i in range(len(steps)):
            ctx.write(json.dumps({"text": prompt + "".join(steps[: i + 1])}) + "\n")
PY

cat > "$work/bench.yaml" <<YAML
name: bench-sphere
seed: 42
device: cpu
models:
  smollm2:
    path: $ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
  scratch:
    tiny: {preset: tiny, hidden_size: 96, intermediate_size: 256, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512}
stages:
  rows:
    kind: task
    task: file
    path: rows.jsonl
  tiny:
    kind: train
    model: scratch
    data: rows
    objective: sft
    steps: 20
    batch_size: 8
    max_len: 256
  mc_tiny:
    kind: prm_filter
    input: rows
    scorer: mc
    model: tiny
    rollouts: $K
    sampling: {temperature: 0.7, max_tokens: $TOKENS, stop: ["</answer>"]}
  mc_smollm2:
    kind: prm_filter
    input: rows
    scorer: mc
    model: smollm2
    rollouts: $K
    sampling: {temperature: 0.7, max_tokens: $TOKENS, stop: ["</answer>"]}
YAML

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "Machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg). Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Commit: $(git -C "$ROOT" rev-parse --short HEAD)."
echo "$N rows × 2 step prefixes × K = $K rollouts, T 0.7, up to $TOKENS new tokens, stop at </answer>; median of $REPEATS runs."
echo
echo "| model | retort mc rollouts/s (runs) | transformers rollouts/s (runs) | retort ÷ transformers |"
echo "|---|---|---|---:|"
# The tiny model is trained once, into a cache every repeat copies.
base=$work/cache-base
"$RETORT" run "$work/bench.yaml" --cache-dir "$base" --only rows --only tiny -q >/dev/null
tiny_dir=$("$RETORT" show "$work/bench.yaml" --cache-dir "$base" tiny.model --path -q 2>/dev/null)
for m in $MODELS; do
    ours=""
    for r in $(seq "$REPEATS"); do
        cache=$work/cache-$m-$r
        cp -a "$base" "$cache"
        ours+="$("$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only "mc_$m" --format json -q | python3 -c '
import json, sys
s = [s for s in json.load(sys.stdin)["stages"] if s["name"] == sys.argv[1]][0]
print(round(s["metrics"]["rollouts"] / (s["duration_ms"] / 1000), 1))' "mc_$m") "
    done
    o=$(tr ' ' '\n' <<<"$ours" | grep . | median)
    if [[ -x $ROOT/.venv-peers/bin/python ]]; then
        model=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
        [[ $m == tiny ]] && model=$tiny_dir
        peer=$("$ROOT/.venv-peers/bin/python" "$ROOT/scripts/bench/mc_peer.py" "$model" "$work/contexts.jsonl" \
            --rollouts "$K" --batch $((K * 2)) --max-tokens "$TOKENS" --repeats "$REPEATS" 2>/dev/null | tail -1)
        python3 - "$m" "$ours" "$o" "$peer" <<'PY'
import json, statistics, sys
m, runs, o, peer = sys.argv[1], sys.argv[2].split(), float(sys.argv[3]), json.loads(sys.argv[4])
p = statistics.median(peer["rollouts_per_s"])
print(f"| {m} | {' '.join(runs)} → {o:.1f} | {' '.join(f'{x:.1f}' for x in peer['rollouts_per_s'])} → {p:.1f} | {o / p:.2f}× |")
PY
    else
        echo "| $m | $ours→ $o | (no .venv-peers: scripts/setup-peers.sh) | – |"
    fi
done
echo
echo "Target: ≥ 2× transformers on SmolLM2."
