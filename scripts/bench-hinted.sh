#!/usr/bin/env bash
# What Hinted Decoding costs (issue 12, "Speed"): `hint_rewrite` (two
# streams, a forward pass of each per token) against `generate` (one stream)
# on the same questions with SmolLM2-135M-Instruct (the Q4_1 GGUF, the
# default packed engine), at batch 1 and 16, in one run. Both sample at
# T = 0.3, top-p 0.95 and never switch streams (`delimiter: null`), so each
# writes its own `max_tokens`-or-EOS continuation; tokens/s counts the
# generated tokens over the stage's wall time (model load and prefill
# included, the hinted prompt being the longer).
#
# Second half: `cll_score` rows/s (φ of each row's reference under the same
# model, batch 32, fresh cache, model load included) against the same φ
# computed with transformers (scripts/bench/cll_peer.py: f32, the GGUF
# dequantized, one padded forward pass per batch of 32, 2 threads, load
# excluded), on the same rows in the same run; the issue's target is
# cll_score ≥ 1.5× transformers. It also prints how far the two avg φ lie
# apart per row (Q4_1 packed vs its f32 dequantization). Needs .venv-peers
# (scripts/setup-peers.sh) for the peer; without it only the retort side runs.
#
#   scripts/bench-hinted.sh
#
# BENCH_HINTED_ROWS (default 32), BENCH_HINTED_TOKENS (default 64),
# BENCH_HINTED_REPEATS (default 3; each repeat uses a fresh cache),
# BENCH_CLL_ROWS (default 128), BENCH_HINTED_HALVES (default "decode cll":
# which halves to run), BENCH_HINTED_BATCHES (default "1 16"). RETORT:
# the binary (default: a release build). Prints a Markdown table with the
# medians and the ratio; the issue's target is hinted ≥ 0.45× plain.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
N=${BENCH_HINTED_ROWS:-32}
NCLL=${BENCH_CLL_ROWS:-128}
TOKENS=${BENCH_HINTED_TOKENS:-64}
REPEATS=${BENCH_HINTED_REPEATS:-3}
HALVES=" ${BENCH_HINTED_HALVES:-decode cll} "
BATCHES=${BENCH_HINTED_BATCHES:-1 16}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows_of() {
python3 - "$1" <<'PY'
import json, random, sys
rng = random.Random(7)
for _ in range(int(sys.argv[1])):
    a, b, c = (rng.randint(10, 99) for _ in range(3))
    print(json.dumps({
        "prompt": f"What is {a} + {b} + {c}? Think step by step, then give the answer in \\boxed{{}}.",
        "reference": f"{a} + {b} = {a + b}. {a + b} + {c} = {a + b + c}. The answer is \\boxed{{{a + b + c}}}.",
    }))
PY
}
rows_of "$N" > "$work/rows.jsonl"
rows_of "$NCLL" > "$work/cll_rows.jsonl"
cat > "$work/bench.yaml" <<YAML
name: bench-hinted
seed: 42
device: cpu
models:
  smollm2:
    path: $ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
stages:
  rows:
    kind: task
    task: file
    path: rows.jsonl
  plain:
    kind: generate
    model: smollm2
    prompts: rows
    chat: true
    batch_size: 16
    sampling: {temperature: 0.3, top_p: 0.95, max_tokens: $TOKENS}
  hinted:
    kind: hint_rewrite
    model: smollm2
    data: rows
    chat: true
    hint: "{{ prompt }}\n\nA correct solution, to rewrite in your own words:\n{{ reference }}"
    delimiter: null
    batch_size: 16
    sampling: {temperature: 0.3, top_p: 0.95, max_tokens: $TOKENS}
  cll_rows:
    kind: task
    task: file
    path: cll_rows.jsonl
  phi:
    kind: cll_score
    model: smollm2
    data: cll_rows
    field: reference
    batch_size: 32
YAML

# "tokens seconds" of one stage on a fresh cache, at `batch`.
time_stage() {
    local stage=$1 batch=$2 cache=$work/cache-$1-$2-$3
    "$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only rows -q >/dev/null
    "$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only "$stage" --set "stages.$stage.batch_size=$batch" --format json -q |
        python3 -c '
import json, sys
s = [s for s in json.load(sys.stdin)["stages"] if s["name"] == sys.argv[1]][0]
m = s["metrics"]
print(round(m["mean_tokens"] * m["rows" if "rows" in m else "samples"]), s["duration_ms"] / 1000)' "$stage"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "Machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg). Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Commit: $(git -C "$ROOT" rev-parse --short HEAD)."
# The decoding half (not indented: it holds here-documents).
if [[ $HALVES == *" decode "* ]]; then
declare -A rates
for batch in $BATCHES; do
    for r in $(seq "$REPEATS"); do
        for stage in plain hinted; do
            read -r tokens secs < <(time_stage "$stage" "$batch" "$r")
            rates[$stage-$batch]+="$(echo "scale=1; $tokens / $secs" | bc) "
        done
    done
done
echo "SmolLM2-135M-Instruct Q4_1, $N rows, T 0.3, top-p 0.95, max $TOKENS new tokens; median of $REPEATS fresh-cache runs (model load and prefill included)."
echo
echo "| batch | plain tok/s (runs) | hinted tok/s (runs) | hinted ÷ plain |"
echo "|---:|---|---|---:|"
for batch in $BATCHES; do
    p=$(tr ' ' '\n' <<<"${rates[plain-$batch]}" | grep . | median)
    h=$(tr ' ' '\n' <<<"${rates[hinted-$batch]}" | grep . | median)
    echo "| $batch | ${rates[plain-$batch]}→ $p | ${rates[hinted-$batch]}→ $h | $(echo "scale=2; $h / $p" | bc)× |"
done
echo
echo "Target: hinted ≥ 0.45× plain."
fi

if [[ $HALVES == *" cll "* ]]; then
# The scoring half: cll_score against transformers on the same rows.
cll=""
for r in $(seq "$REPEATS"); do
    cache=$work/cache-phi-$r
    "$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only cll_rows -q >/dev/null
    cll+="$("$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only phi --format json -q | python3 -c '
import json, sys
s = [s for s in json.load(sys.stdin)["stages"] if s["name"] == "phi"][0]
print(round(s["metrics"]["rows"] / (s["duration_ms"] / 1000), 1))') "
done
c=$(tr ' ' '\n' <<<"$cll" | grep . | median)
"$RETORT" show "$work/bench.yaml" --cache-dir "$work/cache-phi-1" phi.out -q > "$work/phi.jsonl"
echo
echo "cll_score, $NCLL rows (prompt + reference, ~$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(round(sum(len(x["phi"]) for x in r)/len(r)))' "$work/phi.jsonl") scored tokens each), batch 32, 2 threads; median of $REPEATS fresh-cache runs."
echo
if [[ -x $ROOT/.venv-peers/bin/python ]]; then
    peer=$("$ROOT/.venv-peers/bin/python" "$ROOT/scripts/bench/cll_peer.py" "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$work/cll_rows.jsonl" --field reference --repeats "$REPEATS" 2>/dev/null | tail -1)
    python3 - "$peer" "$work/phi.jsonl" "$cll" <<'PY'
import json, statistics, sys
peer = json.loads(sys.argv[1])
ours = [json.loads(l)["avg_phi"] for l in open(sys.argv[2])]
runs = [float(x) for x in sys.argv[3].split()]
p, c = statistics.median(peer["rows_per_s"]), statistics.median(runs)
diff = [abs(a - b) for a, b in zip(ours, peer["avg_phi"])]
print("| implementation | rows/s (runs) | median |")
print("|---|---|---:|")
print(f"| retort cll_score (Q4_1 packed, load included) | {' '.join(f'{x:.1f}' for x in runs)} | {c:.1f} |")
print(f"| transformers {peer['torch']} (f32, load excluded) | {' '.join(f'{x:.1f}' for x in peer['rows_per_s'])} | {p:.1f} |")
print()
print(f"cll_score ÷ transformers: {c / p:.2f}× (target ≥ 1.5×). avg φ per row: mean |Δ| {statistics.mean(diff):.4f}, max {max(diff):.4f} over {len(diff)} rows.")
PY
else
    echo "cll_score rows/s: $cll→ $c (no .venv-peers: run scripts/setup-peers.sh for the transformers peer)"
fi
fi
