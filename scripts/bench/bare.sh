#!/usr/bin/env bash
# bare.sh N DIR: runs the shell commands of an N-stage bench chain directly,
# one `sh -c` per stage with the same RETORT_* variables retort would set, so
# that (retort's first run - this) / N is the engine's overhead per stage.
set -eu
n=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
printf 'retort bench chain input\n' > input.txt
cmd='cp "$RETORT_IN_SRC" "$RETORT_OUT_OUT"; echo "$RETORT_PARAM_K" >> "$RETORT_OUT_OUT"'
prev=input.txt
for ((i = 0; i < n; i++)); do
    out=$(printf 's%03d.out' "$i")
    RETORT_IN_SRC=$prev RETORT_OUT_OUT=$out RETORT_PARAM_K=$i sh -c "$cmd"
    prev=$out
done
