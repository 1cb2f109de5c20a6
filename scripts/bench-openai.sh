#!/usr/bin/env bash
# Remote-model client benchmark (issue 14, "Speed and scale"), in one run:
#   1. llama-server with 16 slots (SmolLM2-135M, 2 threads): aggregate
#      tokens/s of retort's client vs a plain concurrent Python client at the
#      same concurrency (16), each on its own distinct prompts (the server
#      caches repeated prompts), EOS ignored so both generate the same tokens;
#   2. an endpoint that answers at once (Python, threaded): the client's own
#      ceiling, requests/s with the item cache on for BENCH_OPENAI_ITEMS
#      items (default 100000), then the warm re-run (every item cached).
# Prints a Markdown report. A report, not a test.
#
#   scripts/bench-openai.sh                     # builds the release binary
#   RETORT=path/to/retort scripts/bench-openai.sh
#
# Knobs: BENCH_OPENAI_PROMPTS (64), BENCH_OPENAI_TOKENS (64),
# BENCH_OPENAI_ITEMS (100000), BENCH_OPENAI_CONCURRENCY (16).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROMPTS=${BENCH_OPENAI_PROMPTS:-64}
TOKENS=${BENCH_OPENAI_TOKENS:-64}
ITEMS=${BENCH_OPENAI_ITEMS:-100000}
CONC=${BENCH_OPENAI_CONCURRENCY:-16}
if [[ -z "${RETORT:-}" ]]; then
    cargo build --release --bin retort
    RETORT=${CARGO_TARGET_DIR:-$ROOT/target}/release/retort
fi
scripts/fetch-smollm2.sh >/dev/null
scripts/setup-llama-server.sh
PY=${RETORT_LLAMA_VENV:-$ROOT/.venv-llama}/bin/python
PEER="$PY scripts/bench/openai_peer.py"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1$2" >/dev/null && return 0; sleep 0.1; done; echo "no server on $1" >&2; exit 1; }
now() { date +%s.%N; }

# A pipeline generating one sample per row of PROMPTS.jsonl from URL/MODEL.
pipeline() {
    cat > "$1/p.yaml" <<YAML
name: bench
seed: 1
models:
  remote:
    openai: {base_url: "$2", model: "$3", max_concurrency: $CONC, extra_body: {ignore_eos: true}}
stages:
  prompts:
    kind: command
    run: cat $4 > \$RETORT_OUT_OUT
    deps: [$4]
    outputs: [out]
  gen:
    kind: generate
    model: remote
    prompts: prompts
    sampling: {max_tokens: $5, temperature: 1.0}
YAML
}

echo "## Remote models (issue 14)"
echo
echo "retort: $RETORT; $(nproc) cores; $(date -u +%F)"
echo

# 1. The real server.
PORT=$(free_port)
$PY scripts/llama-server.py models/SmolLM2-135M-Instruct.Q4_1.gguf "$PORT" 16 2 >/dev/null 2>&1 &
PIDS+=($!)
wait_for "$PORT" /health
URL="http://127.0.0.1:$PORT/v1"
$PEER prompts "$PROMPTS" py "$WORK/py.jsonl"
$PEER prompts "$PROMPTS" rt "$WORK/rt.jsonl"
$PEER client "$URL" smollm2 "$WORK/rt.jsonl" "$CONC" 4 >/dev/null   # warm-up, its own prompts
$PEER prompts "$PROMPTS" rt2 "$WORK/rt.jsonl"
PYJ=$($PEER client "$URL" smollm2 "$WORK/py.jsonl" "$CONC" "$TOKENS")
mkdir -p "$WORK/real"
pipeline "$WORK/real" "$URL" smollm2 "$WORK/rt.jsonl" "$TOKENS"
t0=$(now)
"$RETORT" run "$WORK/real/p.yaml" -q --format json > "$WORK/real.json"
t1=$(now)
RT_TOK=$(python3 -c "import json; s=[x for x in json.load(open('$WORK/real.json'))['stages'] if x['name']=='gen'][0]['metrics']; print(round(s['samples']*s['mean_tokens']))")
python3 - "$PYJ" "$RT_TOK" "$t0" "$t1" "$PROMPTS" "$TOKENS" "$CONC" <<'PYEOF'
import json, sys
py = json.loads(sys.argv[1]); rt_tok = int(sys.argv[2]); secs = float(sys.argv[4]) - float(sys.argv[3])
rt = rt_tok / secs
print(f"### llama-server, 16 slots: {sys.argv[5]} distinct prompts x {sys.argv[6]} tokens, concurrency {sys.argv[7]}")
print()
print("| client | tokens | seconds | tokens/s |")
print("|---|---|---|---|")
print(f"| Python (threads, keep-alive) | {py['tokens']} | {py['seconds']:.2f} | {py['tok_per_s']:.1f} |")
print(f"| retort run (whole pipeline) | {rt_tok} | {secs:.2f} | {rt:.1f} |")
print()
print(f"retort / Python: {rt / py['tok_per_s']:.3f} (target: within 5%: {'PASS' if rt >= 0.95 * py['tok_per_s'] else 'FAIL'})")
print()
PYEOF

# 2. The instant endpoint.
IPORT=$(free_port)
$PY scripts/bench/openai_peer.py instant "$IPORT" &
PIDS+=($!)
wait_for "$IPORT" /v1/models
$PEER prompts "$ITEMS" many "$WORK/many.jsonl"
mkdir -p "$WORK/instant"
pipeline "$WORK/instant" "http://127.0.0.1:$IPORT/v1" instant "$WORK/many.jsonl" 1
t0=$(now)
"$RETORT" run "$WORK/instant/p.yaml" -q > /dev/null
t1=$(now)
"$RETORT" run "$WORK/instant/p.yaml" -q --force gen > /dev/null
t2=$(now)
python3 - "$ITEMS" "$t0" "$t1" "$t2" <<'PYEOF'
import sys
n = int(sys.argv[1]); t0, t1, t2 = map(float, sys.argv[2:5])
cold, warm = t1 - t0, t2 - t1
print(f"### An instant endpoint (Python), {n} items, item cache on")
print()
print("| run | seconds | items/s |")
print("|---|---|---|")
print(f"| cold (every item requested and cached) | {cold:.2f} | {n / cold:.0f} |")
print(f"| warm (`--force gen`: every item from the item cache) | {warm:.2f} | {n / warm:.0f} |")
print()
print(f"targets: >= 2000 requests/s cold: {'PASS' if n / cold >= 2000 else 'FAIL'}; warm re-run < 2 s: {'PASS' if warm < 2 else 'FAIL'}")
PYEOF
