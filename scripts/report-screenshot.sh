#!/usr/bin/env bash
# Screenshot of a pipeline's `retort report` in headless Chromium, as kept in
# docs/report.png (the README links it):
#
#   scripts/report-screenshot.sh pipelines/quickstart.yaml docs/report.png [HEIGHT]
#
# Needs a `retort` on the PATH (or $RETORT) and chromium
# (scripts/setup-chromium.sh). Extra `retort report` flags (--cache-dir,
# --set) can follow in $REPORT_ARGS.
set -euo pipefail
pipeline="$1"
out="$2"
height="${3:-2200}"
retort="${RETORT:-retort}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086
"$retort" report "$pipeline" -o "$tmp/report.html" ${REPORT_ARGS:-}
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$tmp/profile" --window-size="1280,$height" \
    --screenshot="$out" "file://$tmp/report.html" 2>/dev/null
echo "wrote $out"
