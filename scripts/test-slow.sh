#!/usr/bin/env bash
# The tests too slow for CI (`#[ignore]`d): today the paper-scale SkillFactory
# recipe at small counts on SmolLM2-135M (~5 minutes on 2 cores). Release
# build, so the models run at speed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]] || scripts/fetch-smollm2.sh
exec cargo test --release --workspace -- --ignored --nocapture "$@"
