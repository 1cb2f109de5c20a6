#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/*) for SECONDS each (default 60),
# one after another, with one libFuzzer job: the GGUF reader, the tokenizer
# built from GGUF metadata, and the pipeline loader (YAML -> spec -> graph).
# See FUZZING.md for what each target does and what was found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Installs cargo-fuzz if it is missing. The machine's toolchain is stable, so
# cargo-fuzz's nightly flags are allowed with RUSTC_BOOTSTRAP=1. Targets build
# without a sanitizer (`-s none`): the code is safe Rust, and what we look for
# is panics, aborts, hangs and oversized allocations (the targets' global
# allocator aborts on any single allocation over 512 MiB; -rss_limit_mb
# catches slow growth). New inputs go to fuzz/corpus/<target> (not checked
# in); the checked-in seeds (fuzz/seeds/<target>, and pipelines/ for the
# pipeline target) are read-only extra corpora. Crashes land in
# fuzz/artifacts/<target>; minimize one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s none <target> <file>
# and add it as a regression input (FUZZING.md says where).
set -euo pipefail

SECONDS_EACH="${1:-60}"
shift || true
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(gguf tokenizer pipeline)
fi

status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$ROOT/fuzz/corpus/$t" "$ROOT/fuzz/artifacts/$t"
    extra=("$ROOT/fuzz/seeds/$t")
    if [ "$t" = pipeline ]; then extra+=("$ROOT/pipelines"); fi
    echo "== fuzz target $t for ${SECONDS_EACH}s"
    # -timeout: an input taking over 10 s is a hang; -max_len: GGUF seeds
    # are up to ~40 KB, and bigger inputs only slow the search down.
    if ! cargo fuzz run -s none --release "$t" "$ROOT/fuzz/corpus/$t" "${extra[@]}" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len=65536 -jobs=1 -workers=1 -print_final_stats=1 \
        -artifact_prefix="$ROOT/fuzz/artifacts/$t/"; then
        echo "fuzz target $t found a crash: see fuzz/artifacts/$t" >&2
        status=1
    fi
done
exit $status
