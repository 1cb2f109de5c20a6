#!/usr/bin/env bash
# What local data influence costs (issue 13, "Speed"): examples per second
# of retort's `influence` stage (restore the warm student and its AdamW
# state, one step on the example, the reference loss) against the same
# procedure in PyTorch (scripts/bench/influence_peer.py: load_state_dict of
# model and optimizer, one AdamW step, the reference loss under no_grad), on
# the same warm checkpoint, the same rows, batch 1 for the step and 16 for
# the reference set, 2 threads, in one run. Two students:
#   tiny     the montessori.yaml student's shape (hidden 128, 3 layers), from scratch
#   smollm2  SmolLM2-135M-Instruct (its Q4_1 GGUF, trained and saved in f32)
# Both sides time the probing loop only (model load, the warm-up and
# L_before excluded), and report what restoring cost in all.
#
#   scripts/bench-influence.sh
#
# BENCH_INFLUENCE_TINY (default 96 probes), BENCH_INFLUENCE_SMOL (default 8),
# BENCH_INFLUENCE_REPEATS (default 3; retort: fresh caches). Needs
# .venv-peers (scripts/setup-peers.sh) for the peer. RETORT: the binary
# (default: a release build). The issue's target: retort ≥ 1.5× PyTorch on both.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"
NT=${BENCH_INFLUENCE_TINY:-96}
NS=${BENCH_INFLUENCE_SMOL:-8}
REPEATS=${BENCH_INFLUENCE_REPEATS:-3}
PY=$ROOT/.venv-peers/bin/python
[[ -x $PY ]] || { echo "bench-influence: run scripts/setup-peers.sh first (the PyTorch peer)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$NT" "$NS" <<'PY'
import json, random, sys
work, nt, ns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(5)
def row():
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return {"prompt": f"sum {a} {b}\n", "response": f"{a}+{b}={a + b}"}
for name, n in [("probes_tiny", nt), ("probes_smol", ns), ("refs", 16)]:
    with open(f"{work}/{name}.jsonl", "w") as f:
        for _ in range(n):
            f.write(json.dumps(row()) + "\n")
PY
cat > "$work/bench.yaml" <<YAML
name: bench-influence
seed: 42
models:
  scratch:
    tiny: {preset: tiny, hidden_size: 128, intermediate_size: 384, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}
  smollm2:
    path: $ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
stages:
  probes_tiny: {kind: task, task: file, path: probes_tiny.jsonl}
  probes_smol: {kind: task, task: file, path: probes_smol.jsonl}
  refs: {kind: task, task: file, path: refs.jsonl}
  warm_tiny:
    kind: train
    model: scratch
    data: probes_tiny
    objective: sft
    steps: 20
    batch_size: 8
    lr: 0.001
    max_len: 64
    save_optimizer: true
  warm_smol:
    kind: train
    model: smollm2
    data: probes_smol
    objective: sft
    steps: 1
    batch_size: 1
    lr: 0.00001
    max_len: 64
    save_optimizer: true
  inf_tiny: {kind: influence, model: warm_tiny, data: probes_tiny, reference: refs, batch_size: 16, max_len: 64}
  inf_smol: {kind: influence, model: warm_smol, data: probes_smol, reference: refs, batch_size: 16, max_len: 64}
YAML

# "examples/s restore_s" of one influence stage on a fresh item cache
# (the warm checkpoints come from the shared cache).
time_stage() {
    local stage=$1 cache=$work/cache log=$work/$1-$2.log
    rm -rf "$cache/items"
    "$RETORT" run "$work/bench.yaml" --cache-dir "$cache" --only "$stage" --force "$stage" --log-format plain 2>"$log" >/dev/null
    sed -n 's/.* scored in \([0-9.]*\) s (\([0-9.]*\) per second, restoring \([0-9.]*\) s in all).*/\2 \3/p' "$log" | tail -1
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

"$RETORT" run "$work/bench.yaml" --cache-dir "$work/cache" --only warm_tiny --only warm_smol -q >/dev/null
declare -A ours restore peer peer_restore
for which in tiny smol; do
    dir=$("$RETORT" show "$work/bench.yaml" --cache-dir "$work/cache" "warm_$which.model" --path -q | tail -1)
    for r in $(seq "$REPEATS"); do
        read -r rate secs < <(time_stage "inf_$which" "$r")
        ours[$which]+="$rate "
        restore[$which]+="$secs "
        out=$("$PY" "$ROOT/scripts/bench/influence_peer.py" "$dir" "$work/probes_$which.jsonl" "$work/refs.jsonl" --lr "$( [[ $which == tiny ]] && echo 0.001 || echo 0.00001 )" 2>/dev/null | tail -1)
        peer[$which]+="$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["examples_per_s"], 2))' "$out") "
        peer_restore[$which]+="$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["restore_s"], 3))' "$out") "
    done
done
echo "Machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg). Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Commit: $(git -C "$ROOT" rev-parse --short HEAD). Peer: torch $("$PY" -c 'import torch; print(torch.__version__)'), transformers $("$PY" -c 'import transformers; print(transformers.__version__)')."
echo "Influence: restore, one AdamW step on one example (batch 1), reference loss over 16 rows (batch 16); 2 threads; median of $REPEATS runs. Probes: tiny $NT, SmolLM2 $NS."
echo
echo "| student | retort examples/s (runs) | PyTorch examples/s (runs) | retort ÷ PyTorch | restore, retort (s, all probes) | restore, PyTorch (s, all probes) |"
echo "|---|---|---|---:|---|---|"
for which in tiny smol; do
    o=$(tr ' ' '\n' <<<"${ours[$which]}" | grep . | median)
    p=$(tr ' ' '\n' <<<"${peer[$which]}" | grep . | median)
    echo "| $which | ${ours[$which]}→ $o | ${peer[$which]}→ $p | $(echo "scale=2; $o / $p" | bc)× | ${restore[$which]} | ${peer_restore[$which]} |"
done
echo
echo "Target: retort ≥ 1.5× PyTorch on both."
