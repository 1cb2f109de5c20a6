#!/usr/bin/env bash
# Engine benchmark (issue 2, "Speed"): retort vs DVC vs Snakemake on
# equivalent linear chains of trivial stages, plus blake3 hashing vs b3sum
# and the stat cache. Prints a Markdown report (also saved to
# $TARGET/bench-engine.md) with ratios and the targets marked PASS/FAIL.
# Always exits 0 once the report is printed: it is a report, not a test.
#
#   scripts/bench-engine.sh
#
# What it does:
#   1. builds retort (`cargo build --release`, honouring $CARGO_TARGET_DIR,
#      default target/) and scripts/bench/hash into the same target dir;
#   2. creates or reuses the venv .venv-bench/ with dvc and snakemake from
#      PyPI; installs hyperfine and eatmydata (apt) and b3sum (cargo install)
#      if missing
#      (without hyperfine, scripts/bench/wallclock.py times instead);
#   3. for each chain length (50, 200) generates the same chain for the three
#      tools (scripts/bench/chain.py) in a temp dir and times: first run, no-op
#      re-run, plan/status/dry-run, and the re-run after changing the
#      parameter of the middle stage; plus the same shell commands run bare
#      (scripts/bench/bare.sh) for retort's overhead per stage;
#      (eatmydata: a diagnostic repeat of the first run with fsync off);
#   4. hashes a 1 GiB random file with `b3sum --num-threads 1` and with
#      retort_cache::hash_file, then times `retort plan` of a pipeline that
#      has the file in `deps:` (stat cache hit);
#   5. prints the report (scripts/bench/report.py).
#
# Knobs (environment): BENCH_SIZES ("50 200"), BENCH_RUNS (10: retort, bare),
# BENCH_SNAKEMAKE_RUNS (5), BENCH_DVC_RUNS (3: DVC no-op and status),
# BENCH_DVC_SLOW_RUNS (2 at <= 50 stages, 1 above: DVC first run and
# parameter change, which take minutes at 200 stages), BENCH_HASH_MIB (1024),
# BENCH_HASH_RUNS (5), BENCH_VENV (.venv-bench), BENCH_TMP (/tmp).
set -euo pipefail

T_START=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH=$ROOT/scripts/bench

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
export CARGO_TARGET_DIR=$TARGET_DIR

SIZES=${BENCH_SIZES:-50 200}
RUNS=${BENCH_RUNS:-10}
SM_RUNS=${BENCH_SNAKEMAKE_RUNS:-5}
DVC_RUNS=${BENCH_DVC_RUNS:-3}
HASH_MIB=${BENCH_HASH_MIB:-1024}
HASH_RUNS=${BENCH_HASH_RUNS:-5}
VENV=${BENCH_VENV:-$ROOT/.venv-bench}
REPORT=$TARGET_DIR/bench-engine.md

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- build
say "building retort (cargo build --release, target dir $TARGET_DIR)"
cargo build --release --quiet
RETORT=$TARGET_DIR/release/retort
say "building scripts/bench/hash"
cargo build --release --quiet --manifest-path "$BENCH/hash/Cargo.toml"
HASHBIN=$TARGET_DIR/release/retort-bench-hash

# ---------------------------------------------------------------- tools
if [[ ! -x $VENV/bin/dvc || ! -x $VENV/bin/snakemake ]]; then
    say "creating $VENV with dvc and snakemake (PyPI)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet dvc snakemake
fi
export PATH=$VENV/bin:$HOME/.cargo/bin:$PATH
export DVC_NO_ANALYTICS=1
PY=$VENV/bin/python

if ! command -v hyperfine >/dev/null && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    say "installing hyperfine (apt-get)"
    apt-get install -y -qq hyperfine >/dev/null 2>&1 || say "apt-get install hyperfine failed; using scripts/bench/wallclock.py"
fi
if ! command -v eatmydata >/dev/null && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    say "installing eatmydata (apt-get; for the fsync diagnostic)"
    apt-get install -y -qq eatmydata >/dev/null 2>&1 || say "no eatmydata; skipping the fsync diagnostic"
fi
if ! command -v b3sum >/dev/null; then
    say "installing b3sum (cargo install)"
    cargo install --quiet b3sum || { [[ $(id -u) == 0 ]] && apt-get install -y -qq b3sum >/dev/null; }
fi

DVC_VERSION=$(dvc --version)
SM_VERSION=$(snakemake --version)
B3_VERSION=$(b3sum --version | awk '{print $2}')
if command -v hyperfine >/dev/null; then TIMER="hyperfine $(hyperfine --version | awk '{print $2}')"; else TIMER="scripts/bench/wallclock.py"; fi
say "retort $("$RETORT" --version | awk '{print $2}') ($RETORT), dvc $DVC_VERSION, snakemake $SM_VERSION, b3sum $B3_VERSION, timer $TIMER"

# ---------------------------------------------------------------- harness
WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/retort-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results.tsv
META=$WORK/meta.tsv
: >"$RESULTS"
: >"$META"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# measure KEY RUNS WARMUP DIR PREPARE COMMAND: median seconds of COMMAND run
# in DIR (output discarded), PREPARE (untimed) before each run. A failure is
# recorded as "nan" and the benchmark goes on.
measure() {
    local key=$1 runs=$2 warmup=$3 dir=$4 prepare=$5 cmd=$6 json=$WORK/$1.json median
    local args=(--runs "$runs" --warmup "$warmup" --export-json "$json")
    [[ -n $prepare ]] && args+=(--prepare "$prepare")
    if command -v hyperfine >/dev/null; then
        (cd "$dir" && hyperfine --style none "${args[@]}" "$cmd" >/dev/null 2>"$WORK/$key.err") || true
    else
        (cd "$dir" && "$PY" "$BENCH/wallclock.py" "${args[@]}" "$cmd" 2>"$WORK/$key.err") || true
    fi
    if [[ -s $json ]] && median=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$json" 2>/dev/null); then
        say "$key: $(printf '%.4f' "$median") s (median of $runs)"
    else
        median=nan
        say "$key: FAILED: $(tail -c 400 "$WORK/$key.err" | tr '\n' ' ')"
    fi
    printf '%s\t%s\t%s\n' "$key" "$median" "$runs" >>"$RESULTS"
}

# check_output TOOL N DIR FILE: FILE (the chain's last output) must carry the
# middle stage's latest parameter value, i.e. the downstream stages re-ran.
CHECKS=()
check_output() {
    local tool=$1 n=$2 dir=$3 file=$4 mid=$(($2 / 2)) want got
    want=$((1000000 + $(cat "$dir/.bump-counter" 2>/dev/null || echo 0)))
    got=$(sed -n "$((mid + 2))p" "$file" 2>/dev/null || true)
    if [[ $got == "$want" ]]; then CHECKS+=("$tool/$n ok"); else
        CHECKS+=("$tool/$n FAILED")
        say "check $tool/$n FAILED: line $((mid + 2)) of the last output is '$got', expected '$want'"
    fi
}

T_BENCH=$(date +%s)
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- chains
for n in $SIZES; do
    mid=$((n / 2))
    slow=${BENCH_DVC_SLOW_RUNS:-$((n <= 50 ? 2 : 1))}
    last=$(printf 's%03d' $((n - 1)))

    say "== $n-stage chain: retort"
    d=$WORK/retort-$n
    "$PY" "$BENCH/chain.py" gen retort "$n" "$d"
    measure "retort.$n.first" "$RUNS" 0 "$d" "rm -rf .retort retort.lock" "$RETORT run pipeline.yaml"
    measure "bare.$n" "$RUNS" 1 "$WORK" "" "bash $BENCH/bare.sh $n $WORK/bare-$n"
    if command -v eatmydata >/dev/null; then
        # Diagnostic: the same first run with fsync made a no-op, to show
        # how much of the overhead per stage is durability.
        measure "retort.$n.first_nofsync" "$RUNS" 0 "$d" "rm -rf .retort retort.lock" "eatmydata $RETORT run pipeline.yaml"
    fi
    measure "retort.$n.noop" "$RUNS" 1 "$d" "" "$RETORT run pipeline.yaml"
    measure "retort.$n.plan" "$RUNS" 1 "$d" "" "$RETORT plan pipeline.yaml"
    measure "retort.$n.param" "$RUNS" 0 "$d" "$PY $BENCH/chain.py bump retort $mid ." "$RETORT run pipeline.yaml"
    check_output retort "$n" "$d" "$("$RETORT" show "$d/pipeline.yaml" "$last" --path 2>/dev/null | tail -n 1)"

    say "== $n-stage chain: Snakemake"
    d=$WORK/snakemake-$n
    "$PY" "$BENCH/chain.py" gen snakemake "$n" "$d"
    measure "snakemake.$n.first" "$SM_RUNS" 0 "$d" "rm -rf .snakemake s[0-9]*.out" "snakemake -c1"
    measure "snakemake.$n.noop" "$SM_RUNS" 0 "$d" "" "snakemake -c1"
    measure "snakemake.$n.plan" "$SM_RUNS" 0 "$d" "" "snakemake -n"
    measure "snakemake.$n.param" "$SM_RUNS" 0 "$d" "$PY $BENCH/chain.py bump snakemake $mid ." "snakemake -c1"
    check_output snakemake "$n" "$d" "$d/$last.out"

    say "== $n-stage chain: DVC ($slow run(s) for first run and parameter change, $DVC_RUNS for the rest)"
    d=$WORK/dvc-$n
    "$PY" "$BENCH/chain.py" gen dvc "$n" "$d"
    (cd "$d" && git init -q && dvc init -q && dvc config core.site_cache_dir "$d/.dvc-site")
    measure "dvc.$n.first" "$slow" 0 "$d" "rm -rf .dvc/cache .dvc/tmp .dvc-site dvc.lock s[0-9]*.out" "dvc repro"
    measure "dvc.$n.noop" "$DVC_RUNS" 0 "$d" "" "dvc repro"
    measure "dvc.$n.plan" "$DVC_RUNS" 0 "$d" "" "dvc status"
    measure "dvc.$n.param" "$slow" 0 "$d" "$PY $BENCH/chain.py bump dvc $mid ." "dvc repro"
    check_output dvc "$n" "$d" "$d/$last.out"
    rm -rf "$WORK"/*-"$n"
done

# ---------------------------------------------------------------- hashing
say "== hashing: ${HASH_MIB} MiB from /dev/urandom"
big=$WORK/big.bin
dd if=/dev/urandom of="$big" bs=1M count="$HASH_MIB" status=none
cat "$big" >/dev/null # into the page cache: we time hashing, not the disk
meta hash_bytes "$(stat -c %s "$big")"
if [[ $(b3sum --num-threads 1 --no-names "$big") == "$("$HASHBIN" "$big")" ]]; then
    meta hash_match "identical"
else
    meta hash_match "DIFFERENT (bug!)"
fi
measure hash.b3sum "$HASH_RUNS" 1 "$WORK" "" "b3sum --num-threads 1 --no-names $big"
measure hash.retort "$HASH_RUNS" 1 "$WORK" "" "$HASHBIN $big"

say "== stat cache: a pipeline with the ${HASH_MIB} MiB file in deps"
d=$WORK/statcache
mkdir -p "$d"
ln "$big" "$d/big.bin"
cat >"$d/pipeline.yaml" <<'EOF'
name: statcache
seed: 1
stages:
  touch:
    kind: command
    run: echo "$RETORT_PARAM_K" > "$RETORT_OUT_OUT"
    deps: [big.bin]
    outputs: [out]
    params: {k: 1}
EOF
# The stat cache trusts an entry only if the file's mtime was >= 2 s old
# when it was recorded ("racy clean"); the hashing above took longer, but be sure.
sleep 2
measure stat.first 1 0 "$d" "rm -rf .retort retort.lock" "$RETORT run pipeline.yaml"
measure stat.plan_cold 3 0 "$d" "rm -f .retort/stat-cache*" "$RETORT plan pipeline.yaml"
# The cold plans deleted the stat cache (and plan does not save one): a no-op
# run records it again.
(cd "$d" && "$RETORT" run pipeline.yaml >/dev/null 2>&1) || true
measure stat.plan "$RUNS" 1 "$d" "" "$RETORT plan pipeline.yaml"
rm -f "$big" "$d/big.bin"

# ---------------------------------------------------------------- report
meta sizes "$SIZES"
meta checks "${CHECKS[*]:-none}"
meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta machine "$(nproc) cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- cache engine stages src 2>/dev/null || echo ' + uncommitted changes')"
meta command "scripts/bench-engine.sh"
meta build_s "$((T_BENCH - T_START))"
meta bench_s "$(($(date +%s) - T_BENCH))"
meta retort_version "$("$RETORT" --version | awk '{print $2}')"
meta dvc_version "$DVC_VERSION"
meta snakemake_version "$SM_VERSION"
meta b3sum_version "$B3_VERSION"
meta timer "$TIMER"

"$PY" "$BENCH/report.py" "$RESULTS" "$META" | tee "$REPORT"
say "report saved to $REPORT"
exit 0
