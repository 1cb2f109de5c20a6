#!/usr/bin/env python3
"""Fallback for hyperfine when it cannot be installed: the subset of its
interface that scripts/bench-engine.sh uses.

    wallclock.py --runs N [--warmup W] [--prepare CMD] --export-json FILE CMD

Runs CMD (through `sh -c`, output discarded) W times untimed, then N times
timed, each preceded by PREPARE (untimed); writes {"results": [{"times":
[...], "median": s}]} like hyperfine. Exits non-zero if any run fails.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time


def sh(cmd):
    return subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--prepare")
    ap.add_argument("--export-json", required=True)
    ap.add_argument("command")
    a = ap.parse_args()
    times = []
    for i in range(a.warmup + a.runs):
        if a.prepare and sh(a.prepare) != 0:
            sys.exit(f"wallclock.py: prepare command failed: {a.prepare}")
        t0 = time.perf_counter()
        rc = sh(a.command)
        dt = time.perf_counter() - t0
        if rc != 0:
            sys.exit(f"wallclock.py: command exited with {rc}: {a.command}")
        if i >= a.warmup:
            times.append(dt)
    with open(a.export_json, "w") as f:
        json.dump({"results": [{"command": a.command, "times": times, "median": statistics.median(times)}]}, f)


if __name__ == "__main__":
    main()
