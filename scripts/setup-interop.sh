#!/usr/bin/env bash
# Create .venv-interop/ (git-ignored) at the repository root with HF
# `datasets` (and pyarrow, which it pulls in): no torch, about 30 MB of wheels.
# The interop tests (tests/integration/interop.rs) load retort's Parquet
# exports with it and feed it datasets it saved (to_parquet, save_to_disk)
# back to `task: file`.
#
# Idempotent: nothing is installed when the pinned version already imports.
# Exits non-zero when it cannot be installed (the tests then skip, saying
# so; .ci/run runs this first, so CI does not skip).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source=lib/pip-venv.sh
source "$SCRIPT_DIR/lib/pip-venv.sh"
SPEC="datasets==5.2.0"
pip_venv setup-interop "${RETORT_INTEROP_VENV:-$REPO_ROOT/.venv-interop}" "$SPEC" \
    "import datasets; assert datasets.__version__ == '${SPEC#*==}'"
