#!/usr/bin/env bash
# The tests too slow for CI: the `#[ignore]`d integration tests (today the
# paper-scale SkillFactory recipe at small counts on SmolLM2-135M, ~2 minutes
# on 2 cores after a release build of the tests), then the wgpu backend on
# Mesa's lavapipe (scripts/test-wgpu.sh: a ~16-minute feature build). Only the
# integration tests' ignored ones run: other `#[ignore]`d tests are child
# processes of other tests or by-hand benchmarks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]] || scripts/fetch-smollm2.sh
cargo test --release --test integration -- --ignored "$@"
scripts/test-wgpu.sh
