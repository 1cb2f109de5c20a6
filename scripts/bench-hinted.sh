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
# which halves to run), BENCH_HINTED_BATCHES (default "1 16"),
# BENCH_CLL_PRECISIONS (default "f32 bf16": `cll_score`'s `precision`
# arms, each against transformers at the same precision). RETORT:
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
PRECISIONS=${BENCH_CLL_PRECISIONS:-f32 bf16}
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
  phi_f32:
    kind: cll_score
    model: smollm2
    data: cll_rows
    field: reference
    batch_size: 32
  phi_bf16:
    kind: cll_score
    model: smollm2
    data: cll_rows
    field: reference
    batch_size: 32
    precision: bf16
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
# The scoring half: cll_score against transformers on the same rows, each
# at f32 and at bf16 (`precision: bf16`; torch's model cast to bfloat16).
declare -A cll
for precision in $PRECISIONS; do
    for r in $(seq "$REPEATS"); do
        cache=$work/cache-phi-$precision-$r
        "$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only cll_rows -q >/dev/null
        cll[$precision]+="$("$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only "phi_$precision" --format json -q | python3 -c '
import json, sys
s = [s for s in json.load(sys.stdin)["stages"] if s["name"] == sys.argv[1]][0]
print(round(s["metrics"]["rows"] / (s["duration_ms"] / 1000), 1))' "phi_$precision") "
    done
    "$RETORT" show "$work/bench.yaml" --cache-dir "$work/cache-phi-$precision-1" "phi_$precision.out" -q > "$work/phi-$precision.jsonl"
done
echo
echo "cll_score, $NCLL rows (prompt + reference, ~$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(round(sum(len(x["phi"]) for x in r)/len(r)))' "$work/phi-${PRECISIONS%% *}.jsonl") scored tokens each), batch 32, 2 threads; median of $REPEATS fresh-cache runs."
echo
if [[ -x $ROOT/.venv-peers/bin/python ]]; then
    for precision in $PRECISIONS; do
        "$ROOT/.venv-peers/bin/python" "$ROOT/scripts/bench/cll_peer.py" "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$work/cll_rows.jsonl" \
            --field reference --repeats "$REPEATS" --dtype "$precision" 2>/dev/null | tail -1 > "$work/peer-$precision.json"
    done
    args=()
    for precision in $PRECISIONS; do args+=("$precision" "${cll[$precision]}"); done
    python3 - "$work" "${args[@]}" <<'PY'
import json, statistics, sys
work, rest = sys.argv[1], sys.argv[2:]
arms = dict(zip(rest[::2], rest[1::2]))
peer = {p: json.load(open(f"{work}/peer-{p}.json")) for p in arms}
ours = {p: [json.loads(l)["avg_phi"] for l in open(f"{work}/phi-{p}.jsonl")] for p in arms}
med = lambda xs: statistics.median(xs)
print("| implementation | precision | rows/s (runs) | median | avg φ vs transformers f32: mean / max abs Δ |")
print("|---|---|---|---:|---|")
ref = peer["f32"]["avg_phi"] if "f32" in peer else None
def delta(phis):
    if ref is None:
        return "–"
    d = [abs(a - b) for a, b in zip(phis, ref)]
    return f"{statistics.mean(d):.4f} / {max(d):.4f}"
for p, runs in arms.items():
    runs = [float(x) for x in runs.split()]
    print(f"| retort cll_score (Q4_1 packed, load included) | {p} | {' '.join(f'{x:.1f}' for x in runs)} | {med(runs):.1f} | {delta(ours[p])} |")
for p in arms:
    q = peer[p]
    print(f"| transformers {q['torch']} (load excluded) | {p} | {' '.join(f'{x:.1f}' for x in q['rows_per_s'])} | {med(q['rows_per_s']):.1f} | {delta(q['avg_phi'])} |")
print()
for p, runs in arms.items():
    c = med([float(x) for x in runs.split()])
    line = ", ".join(f"÷ transformers {q}: {c / med(peer[q]['rows_per_s']):.2f}×" for q in arms)
    print(f"retort {p} {line}.")
print("Target: cll_score ≥ 1.5× transformers.")
PY
else
    for precision in $PRECISIONS; do
        echo "cll_score rows/s at $precision: ${cll[$precision]}(no .venv-peers: run scripts/setup-peers.sh for the transformers peer)"
    done
fi
fi
