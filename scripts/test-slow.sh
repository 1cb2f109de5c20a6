#!/usr/bin/env bash
# The tests too slow for CI: the `#[ignore]`d integration tests (today the
# paper-scale SkillFactory recipe at small counts on SmolLM2-135M, ~2 minutes
# on 2 cores after a release build of the tests, and a Slurm job past its
# one-minute time limit, about 100 s: Slurm's smallest limit is a minute and it
# checks limits every 30 s; it needs the cluster of scripts/setup-slurm.sh),
# then the wgpu backend on Mesa's lavapipe (scripts/test-wgpu.sh: a ~16-minute
# feature build). Only the integration tests' ignored ones run: other
# `#[ignore]`d tests are child processes of other tests or by-hand benchmarks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]] || scripts/fetch-smollm2.sh
scripts/setup-slurm.sh || echo "test-slow: no Slurm cluster; the Slurm time-limit test will skip" >&2
cargo test --release --test integration -- --ignored "$@"
scripts/test-wgpu.sh
