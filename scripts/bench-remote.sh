#!/usr/bin/env bash
# The remote cache against a local s3s-fs: `retort push` and `retort pull`
# of a cache the size and shape of the quickstart's, against `aws s3 sync`
# (awscli from PyPI, in a venv this script makes) or, failing that,
# `rclone` (Debian) on the same files, in the same run; and a no-op
# `retort pull` (target: under 1 s).
#
# The cache is a stand-in, not the quickstart itself (running the
# quickstart takes ~9 minutes here): 17 outputs of exactly the byte sizes
# the quickstart's retort.lock records (pipelines/retort.lock), 4 of them
# model directories of 3 files, written by `command` stages from seeded
# pseudo-random bytes (14.3 MB). Its item logs are not reproduced.
#
# Usage: scripts/bench-remote.sh [REPEATS]   (default 5; medians printed)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-5}"
RETORT="${RETORT:-$REPO/target/release/retort}"
[ -x "$RETORT" ] || RETORT="$REPO/target/debug/retort"
[ -x "$RETORT" ] || { echo "build retort first (cargo build --release)" >&2; exit 2; }
"$REPO/scripts/setup-s3.sh"
S3S="${RETORT_S3S_FS:-${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs}"

WORK="$(mktemp -d)"
trap 'kill $S3_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret-not-real AWS_REGION=us-east-1
unset AWS_ENDPOINT_URL RETORT_REMOTE AWS_PROFILE
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/s3/bench"
"$S3S" --host 127.0.0.1 --port "$PORT" --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3" >/dev/null 2>&1 &
S3_PID=$!
ENDPOINT="http://127.0.0.1:$PORT"
export AWS_ENDPOINT_URL="$ENDPOINT"  # retort and awscli both read it
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null; do sleep 0.05; done

# The peer: awscli, else rclone.
PEER=""
VENV="${RETORT_AWSCLI_VENV:-${TMPDIR:-/tmp}/retort-bench-awscli}"  # kept between runs
if [ -x "$VENV/bin/aws" ] || { python3 -m venv "$VENV" >/dev/null 2>&1 && "$VENV/bin/pip" install -q --disable-pip-version-check awscli >/dev/null 2>&1; }; then
    PEER=aws
elif command -v rclone >/dev/null || { apt-get install -y -qq rclone >/dev/null 2>&1; command -v rclone >/dev/null; }; then
    PEER=rclone
fi
echo "bench-remote: retort=$RETORT peer=${PEER:-none} s3s-fs=$("$S3S" --version)"

# The stand-in pipeline: one command stage per quickstart output.
SRC="$WORK/src"
mkdir -p "$SRC"
python3 - "$SRC/p.yaml" <<'PY'
import sys
files = {"base_metrics": 135325, "eval_out": 941181, "eval_table": 699, "eval_tasks": 78271,
         "pretrain_tasks": 622012, "rl_only_metrics": 6066, "samples": 169793, "sf_grpo_metrics": 5027,
         "sf_sft_metrics": 10546, "solver_traces": 2247397, "traces": 142920, "train_tasks": 24647,
         "verified": 213393}
models = ["base", "rl_only", "sf_grpo", "sf_sft"]  # 2,420,522 bytes each
gen = "import random,sys; r=random.Random(sys.argv[1]); open(sys.argv[2],'wb').write(r.randbytes(int(sys.argv[3])))"
out = ["name: standin", "stages:"]
for name, n in files.items():
    out += [f"  {name}:", "    kind: command", f"    run: python3 -c \"{gen}\" {name} $RETORT_OUT_OUT {n}", "    outputs: [out]"]
for name in models:
    m = "$RETORT_OUT_MODEL"
    out += [f"  {name}:", "    kind: command",
            f"    run: mkdir {m} && python3 -c \"{gen}\" {name}c {m}/config.json 612 && "
            f"python3 -c \"{gen}\" {name}w {m}/model.mpk 2410388 && python3 -c \"{gen}\" {name}t {m}/tokenizer.json 9522",
            "    outputs: [model]"]
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
"$RETORT" run "$SRC/p.yaml" -q >/dev/null
echo "bench-remote: local cache $(du -sb "$SRC/.retort/objects" | cut -f1) bytes of objects in $(find "$SRC/.retort/objects" -type f | wc -l) files"

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }; e=$(date +%s.%N); python3 -c "print(f'{$e - $s:.3f}')"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
fresh_clone() { rm -rf "$1"; mkdir -p "$1"; cp "$SRC/p.yaml" "$SRC/retort.lock" "$1/"; }

peer_up() {  # $1: destination prefix
    case $PEER in
        aws) "$VENV/bin/aws" --endpoint-url "$ENDPOINT" s3 sync --only-show-errors "$SRC/.retort/" "s3://bench/$1/" --exclude 'tmp/*' --exclude lock ;;
        rclone) rclone --config /dev/null --s3-provider Other --s3-endpoint "$ENDPOINT" --s3-access-key-id "$AWS_ACCESS_KEY_ID" \
                    --s3-secret-access-key "$AWS_SECRET_ACCESS_KEY" copy "$SRC/.retort/" ":s3:bench/$1/" --exclude 'tmp/**' --exclude lock ;;
    esac
}
peer_down() {  # $1: source prefix, $2: local directory
    case $PEER in
        aws) "$VENV/bin/aws" --endpoint-url "$ENDPOINT" s3 sync --only-show-errors "s3://bench/$1/" "$2" ;;
        rclone) rclone --config /dev/null --s3-provider Other --s3-endpoint "$ENDPOINT" --s3-access-key-id "$AWS_ACCESS_KEY_ID" \
                    --s3-secret-access-key "$AWS_SECRET_ACCESS_KEY" copy ":s3:bench/$1/" "$2" ;;
    esac
}

declare -a RP RL PP PL NOOP
for i in $(seq 1 "$N"); do
    # Fresh prefixes each time, so every push uploads everything.
    RP+=("$(t "$RETORT" push "$SRC/p.yaml" --remote "s3://bench/retort$i")")
    fresh_clone "$WORK/c$i"
    RL+=("$(t "$RETORT" pull "$WORK/c$i/p.yaml" --remote "s3://bench/retort$i")")
    NOOP+=("$(t "$RETORT" pull "$WORK/c$i/p.yaml" --remote "s3://bench/retort$i")")
    if [ -n "$PEER" ]; then
        PP+=("$(t peer_up "peer$i")")
        rm -rf "$WORK/d$i"
        PL+=("$(t peer_down "peer$i" "$WORK/d$i")")
    fi
done
# The clone's run must execute nothing: pulled means complete.
"$RETORT" run "$WORK/c1/p.yaml" --format json -q | python3 -c 'import json,sys; s=json.load(sys.stdin)["stages"]; assert all(x["status"]=="cached" for x in s), s; print("bench-remote: the pulled clone runs nothing (%d stages cached)" % len(s))'

rp=$(printf '%s\n' "${RP[@]}" | median); rl=$(printf '%s\n' "${RL[@]}" | median); noop=$(printf '%s\n' "${NOOP[@]}" | median)
echo "retort push        median ${rp}s over $N  (${RP[*]})"
echo "retort pull        median ${rl}s over $N  (${RL[*]})"
echo "retort pull no-op  median ${noop}s over $N  (${NOOP[*]})  target < 1 s"
if [ -n "$PEER" ]; then
    pp=$(printf '%s\n' "${PP[@]}" | median); pl=$(printf '%s\n' "${PL[@]}" | median)
    echo "$PEER upload        median ${pp}s over $N  (${PP[*]})"
    echo "$PEER download      median ${pl}s over $N  (${PL[*]})"
    echo "ratio push/peer-upload = $(python3 -c "print(f'{$rp / $pp:.3f}')")   pull/peer-download = $(python3 -c "print(f'{$rl / $pl:.3f}')")   (below 1: retort faster)"
fi
