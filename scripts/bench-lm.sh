#!/usr/bin/env bash
# Model runtime benchmark (issue 3, "Speed and memory"): SmolLM2-135M from
# its GGUF, a 200-token prompt and 128 new tokens (greedy, EOS ignored), at
# batch 1 and 16, 2 threads each, for
#   retort       default build (flex + packed Q4_1/Q8_0 host engine)
#   retort       --q8 (8-bit activations and integer dot products, as llama.cpp)
#   retort       --unpacked (burn's flex path over f32 weights)
#   retort       --unpacked on the ndarray backend (flex vs ndarray)
#   transformers f32, the same GGUF dequantized (PyTorch)
#   llama.cpp    llama-cpp-python on the same GGUF (single stream)
# all in one run, then prints a Markdown report with the ratios and issue 3's
# targets marked PASS/FAIL (also saved to $TARGET/bench-lm.md). It is a
# report, not a test: it exits 0 once the report is printed.
#
#   scripts/bench-lm.sh            # idle
#   scripts/bench-lm.sh --load     # with a spinning process on one core
#
# --load starts a busy loop pinned to the last core before measuring and stops
# it on exit, runs retort at 1 thread too, and the report gives 2 threads ÷
# 1 thread (issue 17: 2 threads must never be slower than 1 under load).
#
# Needs models/ (scripts/fetch-smollm2.sh, run here if the model is missing)
# and .venv-peers/ (scripts/setup-peers.sh, run here if missing; building
# llama-cpp-python from source takes 10-20 minutes on 2 cores).
#
# Knobs (environment): BENCH_LM_NDARRAY=0 skips the ndarray build (a second
# burn build, ~10 minutes); BENCH_LM_PEERS=0 skips the Python peers;
# BENCH_LM_REPEAT (5) runs of each single stream (retort batch 1, llama.cpp),
# reported as their median; BENCH_LM_BATCHING=0 skips continuous-against-static batching (issue 17;
# lm/examples/batching.rs, about 3 minutes); BENCH_LM_THREADS (2); BENCH_LM_BUILD=0 reuses the binaries of the last run
# (target/bench-lm/bench-*) instead of building.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
export CARGO_TARGET_DIR=$TARGET_DIR
THREADS=${BENCH_LM_THREADS:-2}
REPEAT=${BENCH_LM_REPEAT:-5}
LOAD=0
[[ ${1:-} == --load ]] && LOAD=1
MODEL=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=$TARGET_DIR/bench-lm
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"

say() { printf '[bench-lm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

[[ -f $MODEL ]] || { say "fetching the model"; scripts/fetch-smollm2.sh; }

# ---------------------------------------------------------------- build
# The ndarray build first: both builds write target/release/examples/bench,
# so each binary is copied aside before the next build replaces it.
if [[ ${BENCH_LM_BUILD:-1} != 0 ]]; then
    if [[ ${BENCH_LM_NDARRAY:-1} != 0 ]]; then
        say "building the bench on burn's ndarray backend"
        cargo build --release --quiet -p retort-lm --example bench --no-default-features --features ndarray
        cp "$TARGET_DIR/release/examples/bench" "$OUT/bench-ndarray"
    fi
    say "building the bench (default features: flex)"
    cargo build --release --quiet -p retort-lm --example bench --example batching
    cp "$TARGET_DIR/release/examples/bench" "$OUT/bench-flex"
    cp "$TARGET_DIR/release/examples/batching" "$OUT/batching"
fi

if [[ ${BENCH_LM_PEERS:-1} != 0 ]]; then
    if ! .venv-peers/bin/python -c 'import torch, transformers, accelerate, llama_cpp' 2>/dev/null; then
        say "setting up .venv-peers (scripts/setup-peers.sh)"
        scripts/setup-peers.sh >&2 || say "warning: some peers failed to install; their rows will be missing"
    fi
fi
T_BUILT=$(date +%s)

# ---------------------------------------------------------------- measure
if [[ $LOAD == 1 ]]; then
    source "$ROOT/scripts/lib/spinner.sh"
    start_spinner
    say "spinning on $SPIN_AT while measuring"
fi
# Each configuration runs in its own process so that peak RSS is its own.
retort() { # LABEL BINARY ARGS...
    local label=$1 bin=$2; shift 2
    local threads=$THREADS
    [[ $label == retort-1-thread ]] && threads=1
    for b in 1 16; do
        # Single streams are short and this machine's speed drifts: the
        # report takes the median of $REPEAT runs at batch 1.
        local runs=1
        [[ $b == 1 ]] && runs=$REPEAT
        for ((rep = 1; rep <= runs; rep++)); do
            say "retort $label, batch $b (run $rep of $runs)"
            if RAYON_NUM_THREADS=$threads "$bin" --model "$MODEL" --batch "$b" --prompt-len 200 --new-tokens 128 "$@" \
                > "$OUT/one.json"; then
                python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["impl"]=sys.argv[2]; print(json.dumps(d))' \
                    "$OUT/one.json" "$label" >> "$RESULTS"
            else
                say "warning: retort $label batch $b failed"
            fi
        done
    done
}
retort retort "$OUT/bench-flex"
retort retort-q8 "$OUT/bench-flex" --q8
[[ $LOAD == 1 ]] && retort retort-1-thread "$OUT/bench-flex"
retort retort-unpacked "$OUT/bench-flex" --unpacked
[[ -x $OUT/bench-ndarray ]] && [[ ${BENCH_LM_NDARRAY:-1} != 0 ]] && retort retort-unpacked-ndarray "$OUT/bench-ndarray" --unpacked

if [[ ${BENCH_LM_PEERS:-1} != 0 && -x .venv-peers/bin/python ]]; then
    say "llama.cpp and transformers (lm/benches/peers.py)"
    OMP_NUM_THREADS=$THREADS .venv-peers/bin/python lm/benches/peers.py --model "$MODEL" >> "$RESULTS" \
        || say "warning: peers.py failed"
    for ((rep = 2; rep <= REPEAT; rep++)); do
        say "llama.cpp again (run $rep of $REPEAT)"
        OMP_NUM_THREADS=$THREADS .venv-peers/bin/python lm/benches/peers.py --model "$MODEL" --which llamacpp >> "$RESULTS" \
            || say "warning: peers.py failed"
    done
fi

# ---------------------------------------------------------------- report
META=$OUT/meta.json
python3 - "$META" <<PY
import json, sys, subprocess
def run(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
peers = run("$ROOT/.venv-peers/bin/python", "-c",
            "from importlib.metadata import version as v; print(v('transformers'), v('torch'), v('llama_cpp_python'))").split()
json.dump(dict(
    cpu=run("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
    cores=run("nproc"), load_start="$LOAD_START", load_end=open("/proc/loadavg").read().split()[:3],
    date=run("date", "-u", "+%Y-%m-%d %H:%M UTC"), commit=run("git", "rev-parse", "--short", "HEAD"),
    threads=$THREADS, load=bool($LOAD), build_s=$T_BUILT - $T_START, measure_s=int(run("date", "+%s")) - $T_BUILT,
    peers=peers,
), open(sys.argv[1], "w"))
PY
python3 scripts/bench/lm_report.py "$RESULTS" "$META" | tee "$OUT/../bench-lm.md"

# ---------------------------------------------------------------- batching
# Issue 17, continuous batching: one mixed-length workload (lm/examples/
# batching.rs) decoded with static and with continuous batching, on the
# host engine (SmolLM2) and on burn's path (the tiny preset); target 1.5x.
if [[ ${BENCH_LM_BATCHING:-1} != 0 && -x $OUT/batching ]]; then
    : > "$OUT/batching.jsonl"
    say "continuous against static batching, SmolLM2"
    RAYON_NUM_THREADS=$THREADS "$OUT/batching" --model "$MODEL" --prompts 48 --batch 16 --new-tokens 160 --repeats 3 \
        >> "$OUT/batching.jsonl" || say "warning: batching (SmolLM2) failed"
    say "continuous against static batching, tiny preset"
    RAYON_NUM_THREADS=$THREADS "$OUT/batching" --preset tiny --prompts 64 --batch 16 --new-tokens 160 --repeats 5 \
        >> "$OUT/batching.jsonl" || say "warning: batching (tiny) failed"
    python3 - "$OUT/batching.jsonl" <<'PY' | tee -a "$OUT/../bench-lm.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n### Continuous against static batching (median of repeats, same tokens both ways)\n")
print("| model | engine | prompts | slots | tokens | lengths min/median/max | static tok/s | continuous tok/s | ratio | target 1.5x |")
print("|---|---|---|---|---|---|---|---|---|---|")
for d in rows:
    r = d["continuous_over_static"]
    lens = "/".join(str(x) for x in d["length_min_median_max"])
    eng = "host (packed)" if d["packed"] else "burn"
    print(f"| {d['model'].split('/')[-1]} | {eng} | {d['prompts']} | {d['batch']} | {d['tokens']} | {lens} "
          f"| {d['static_tok_s']:.0f} | {d['continuous_tok_s']:.0f} | {r:.2f}x | {'PASS' if r >= 1.5 else 'FAIL'} |")
PY
fi
