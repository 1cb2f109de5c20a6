#!/usr/bin/env bash
# The wgpu backend, run for real on a machine without a GPU: Mesa's lavapipe
# (Debian `mesa-vulkan-drivers`) is a conformant Vulkan driver on the CPU, and
# burn's wgpu backend runs on it. Checks, each against the CPU path:
#   - SmolLM2's goldens: prompt tokens, transformers' greedy tokens, and the
#     last position's logits within the CPU path's 1e-3 (lm/tests/golden.rs);
#   - one SFT step of the `tiny` model: loss, every gradient, the update
#     (lm/src/train/wgpu_tests.rs, tolerances stated there);
#   - GRPO's per-token log-probs at two temperatures (same file);
#   - `device: wgpu` with no Vulkan driver: exit 2 naming the package to
#     install (tests/integration/devices.rs).
# Speed on lavapipe means nothing (it is ~100x slower than `device: cpu`).
#
# Cost on 2 cores (BENCHMARKS.md, "wgpu on lavapipe"): the `--features wgpu`
# release build took 29 minutes (it shares the non-GPU dependencies with the
# plain release build), then ~6 minutes of tests, most of it shader
# compilation. Too slow for CI's 45-minute budget, so scripts/test-slow.sh
# runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1; then
    echo "test-wgpu: installing mesa-vulkan-drivers (lavapipe)" >&2
    { apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends mesa-vulkan-drivers >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends mesa-vulkan-drivers >/dev/null; }; }
fi
[[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]] || scripts/fetch-smollm2.sh

# Mesa warns on every start without a runtime dir; give it one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# A test that finds no adapter fails here instead of skipping.
export RETORT_REQUIRE_WGPU=1

# One cargo invocation, one package selection: `-p retort-lm` alone resolves
# burn's features differently and rebuilds it (another ~30 minutes here).
# The filter picks lm's `wgpu_*` tests, the wgpu golden test and the
# no-driver integration test.
cargo test --release --features wgpu -p retort -p retort-lm -- wgpu --nocapture
