#!/usr/bin/env bash
# Create .venv-peers/ (git-ignored) at the repository root with the reference
# ("peer") implementations we compare against:
#   llama-cpp-python  built from source with the machine's gcc (slow: ~10-20 min on 2 cores)
#   torch, transformers, accelerate, gguf, numpy   for the f32 transformers reference
#   trl, datasets                                   TRL's dataset-format helpers (interop slow tests)
# Versions follow shared/golden (llama-cpp-python 0.3.36, transformers 5.23).
#
# Idempotent: a package already importable at the pinned version is not reinstalled.
# Each install is attempted independently; the script prints a status line per
# package and the versions at the end, and exits non-zero if any failed.
#
# Environment:
#   PYTHON       interpreter to create the venv with (default python3)
#   CMAKE_ARGS   passed to llama.cpp's CMake build (default: -DGGML_NATIVE=ON)
#   PEERS_SKIP   space-separated subset of "llama torch transformers accelerate gguf numpy trl" to skip
#
# Note: only PyPI is reachable, so torch is the default PyPI wheel (which on
# Linux x86_64 pulls the CUDA runtime wheels, a few GB); it runs fine on CPU.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/.venv-peers"
PYTHON="${PYTHON:-python3}"
SKIP=" ${PEERS_SKIP:-} "

LLAMA_SPEC="llama-cpp-python==0.3.36"
TRANSFORMERS_SPEC="transformers==5.23.0"
TORCH_SPEC="torch"
GGUF_SPEC="gguf"
NUMPY_SPEC="numpy"
ACCELERATE_SPEC="accelerate"
TRL_SPEC="trl==1.16.0"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup-peers: creating $VENV"
    "$PYTHON" -m venv "$VENV" || { echo "setup-peers: error: could not create $VENV" >&2; exit 1; }
    "$VENV/bin/python" -m pip install --upgrade --quiet pip setuptools wheel \
        || echo "setup-peers: warning: could not upgrade pip" >&2
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

declare -A STATUS=()

# installed_version DIST  -> prints the installed version of a distribution, or nothing
installed_version() {
    "$PY" - "$1" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
PY
}

# want NAME DIST SPEC [pip args...]
want() {
    local name="$1" dist="$2" spec="$3"; shift 3
    if [[ "$SKIP" == *" $name "* ]]; then STATUS[$name]="skipped"; return; fi
    local have; have="$(installed_version "$dist")"
    local pinned=""
    [[ "$spec" == *"=="* ]] && pinned="${spec#*==}"
    if [[ -n "$have" && ( -z "$pinned" || "$have" == "$pinned" ) ]]; then
        STATUS[$name]="ok (already $have)"; return
    fi
    echo "setup-peers: installing $spec"
    if "${PIP[@]}" "$@" "$spec"; then
        STATUS[$name]="ok (installed $(installed_version "$dist"))"
    else
        STATUS[$name]="FAILED"
        echo "setup-peers: error: installing $spec failed" >&2
    fi
}

want numpy numpy "$NUMPY_SPEC"
want gguf gguf "$GGUF_SPEC"
want torch torch "$TORCH_SPEC"
want transformers transformers "$TRANSFORMERS_SPEC"
want accelerate accelerate "$ACCELERATE_SPEC"
want trl trl "$TRL_SPEC"
# llama.cpp from source: scikit-build-core fetches cmake/ninja wheels from PyPI
# into the isolated build env. No prebuilt binaries are downloaded.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
want llama llama_cpp_python "$LLAMA_SPEC" --no-cache-dir --verbose

echo
echo "setup-peers: summary ($VENV)"
rc=0
for n in numpy gguf torch transformers accelerate trl llama; do
    printf '  %-13s %s\n' "$n" "${STATUS[$n]:-?}"
    [[ "${STATUS[$n]:-}" == FAILED ]] && rc=1
done
echo "setup-peers: import check"
"$PY" - <<'PY'
from importlib.metadata import version
mods = [("numpy", "numpy"), ("gguf", "gguf"), ("torch", "torch"),
        ("transformers", "transformers"), ("accelerate", "accelerate"), ("trl", "trl"), ("llama_cpp", "llama_cpp_python")]
for mod, dist in mods:
    try:
        __import__(mod)
        print(f"  {mod:13s} {version(dist)}")
    except Exception as e:  # noqa: BLE001
        print(f"  {mod:13s} NOT IMPORTABLE: {type(e).__name__}: {e}")
PY
exit $rc
