#!/usr/bin/env bash
# Install Debian's `chromium` (headless-capable; no browser download from the
# network beyond the apt mirror) for the browser test of `retort report`
# (tests/integration/report.rs, run from the quickstart test). That test
# skips, saying so, without it; .ci/run runs this first, so CI does not skip.
#
# Idempotent: nothing is installed when `chromium` already runs. About 90 s
# (packages plus their dependencies) on a fresh Debian 12 machine here.
set -euo pipefail

if command -v chromium >/dev/null && chromium --version >/dev/null 2>&1; then
    exit 0
fi
echo "setup-chromium: installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }
chromium --version && echo "setup-chromium: ok"
