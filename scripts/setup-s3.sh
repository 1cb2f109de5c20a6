#!/usr/bin/env bash
# Install `s3s-fs` (crates.io), the real S3-compatible server (SigV4,
# conditional puts) that the remote-cache tests (tests/integration/
# remote_cache.rs) start on 127.0.0.1. 0.14.1 is pinned: later versions
# need a newer rustc than 1.95. About 4 minutes on 2 cores; its own target
# directory, so it neither waits for nor disturbs the workspace build.
#
# S3S_DEBUG=1 builds it without optimisation (.ci/run: about half the time;
# fast enough for the tests, not for scripts/bench-remote.sh).
#
# Idempotent: nothing is built when the pinned version is installed.
# Exits non-zero when it cannot be installed (the tests then skip, saying
# so; .ci/run runs this, so CI does not skip).
set -euo pipefail

VERSION="0.14.1"
ROOT="${RETORT_S3S_ROOT:-${CARGO_HOME:-$HOME/.cargo}}"
if "$ROOT/bin/s3s-fs" --version 2>/dev/null | grep -q "$VERSION"; then
    exit 0
fi
echo "setup-s3: installing s3s-fs $VERSION into $ROOT/bin"
CARGO_TARGET_DIR="${S3S_TARGET_DIR:-/tmp/s3s-target}" \
    cargo install --quiet --locked ${S3S_DEBUG:+--debug} s3s-fs --version "$VERSION" --features binary --root "$ROOT"
"$ROOT/bin/s3s-fs" --version && echo "setup-s3: ok"
