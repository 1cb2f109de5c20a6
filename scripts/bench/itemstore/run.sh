#!/usr/bin/env bash
# Builds and runs the item-store micro-benchmark (its own target dir).
#   scripts/bench/itemstore/run.sh [ITEMS] [STORES]   # STORES: files,log,redb-none,redb-immediate,sqlite
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
N=${1:-100000}
export CARGO_TARGET_DIR=${ITEMSTORE_TARGET:-$DIR/target}
cargo build --release --manifest-path "$DIR/Cargo.toml" -q
WORK=$(mktemp -d -p "${ITEMSTORE_WORK:-$DIR}")
trap 'rm -rf "$WORK"' EXIT
"$CARGO_TARGET_DIR/release/itemstore-bench" "$N" "$WORK" ${2:-}
