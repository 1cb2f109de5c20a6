#!/usr/bin/env bash
# Create .venv-llama/ (git-ignored) at the repository root with llama.cpp's
# llama-server, from the `xllamacpp` wheel on PyPI (34 MB, no dependencies:
# about 2 s to install, 0.5 s to start). The `openai:` model tests serve
# SmolLM2's GGUF with it through scripts/llama-server.py.
#
# Idempotent: nothing is installed when the pinned version already imports.
# Exits non-zero when the wheel cannot be installed (the tests then skip,
# saying so; .ci/run runs this first, so CI does not skip).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source=lib/pip-venv.sh
source "$SCRIPT_DIR/lib/pip-venv.sh"
pip_venv setup-llama-server "${RETORT_LLAMA_VENV:-$REPO_ROOT/.venv-llama}" "xllamacpp==2026.10.11549" "import xllamacpp"
