# shellcheck shell=bash
# Sourced by the bench scripts' --load mode (issue 17): `start_spinner`
# starts a busy loop pinned to the last core (taskset where it exists) and
# stops it when the script exits; SPIN_AT names the core and pid. Call it
# directly, not in $(...): a subshell would stop the loop as it exits.
start_spinner() {
    local last=$(( $(nproc) - 1 ))
    if command -v taskset >/dev/null; then
        taskset -c "$last" sh -c 'while :; do :; done' & SPIN=$!
    else
        sh -c 'while :; do :; done' & SPIN=$!
    fi
    trap 'kill $SPIN 2>/dev/null' EXIT
    SPIN_AT="core $last (pid $SPIN)"
}
