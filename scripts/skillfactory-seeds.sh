#!/usr/bin/env bash
# pipelines/skillfactory-seeds.yaml: the quickstart's SkillFactory-vs-RL-only
# comparison over seeds 42, 43, 44 (one shared base model), scored on 300
# held-out Countdown questions per number count (3, 4), with 95% intervals
# and paired comparisons (issue 9). Runs it, then prints the evaluation table.
#
#   scripts/skillfactory-seeds.sh [extra retort run arguments, e.g. -j 2]
#
# RETORT: the retort binary (default: target/release/retort, built with
#         `cargo build --release` if it is missing).
# CACHE:  the cache directory (default: .retort/ next to the pipeline).
# With the same cache as the quickstart (the default, .retort/ next to the
# pipelines), the base model and the seed-42 arm are the quickstart's and are
# reused; BENCHMARKS.md ("SkillFactory vs RL-only over seeds") has the measured
# time of the rest. A second run reuses the cache and only prints.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${RETORT:-} ]]; then
    RETORT=${CARGO_TARGET_DIR:-$ROOT/target}/release/retort
    [[ -x $RETORT ]] || cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
fi
PIPELINE=$ROOT/pipelines/skillfactory-seeds.yaml
cache=()
[[ -n ${CACHE:-} ]] && cache=(--cache-dir "$CACHE")
start=$(date +%s)
"$RETORT" run "$PIPELINE" "${cache[@]}" "$@"
echo "wall time: $(( $(date +%s) - start )) s" >&2
"$RETORT" show "$PIPELINE" eval.table "${cache[@]}"
