#!/usr/bin/env bash
# Slurm executor overhead per stage (issue 15, "Speed"): `retort run` of a
# one-stage pipeline whose stage runs on Slurm, from start to the result
# recorded, against a bare `sbatch --wait` of the same command on the same
# one-node cluster, in the same run, interleaved, median of BENCH_RUNS each.
# `sbatch --wait` polls with a back-off (it took 10 s for a job of
# milliseconds here), so it also times the floor of any submitter: `sbatch`,
# then `scontrol show job` every 50 ms until the job is done. Also times the
# same stage with `executor: local` (retort's own cost) and splits the Slurm
# run into phases from its JSON events (arrival times on
# stderr): submitted (first job event), RUNNING seen, COMPLETED seen, exit.
# Prints a Markdown table and the ratio; a report, not a test (exit 0).
#
#   scripts/bench-slurm.sh
#
# Knobs: BENCH_RUNS (7), RETORT (default: target/release/retort if built,
# else target/debug/retort, built with `cargo build` when missing).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=${BENCH_RUNS:-7}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -z "${RETORT:-}" ]]; then
    if [[ -x $TARGET_DIR/release/retort ]]; then RETORT=$TARGET_DIR/release/retort; else
        [[ -x $TARGET_DIR/debug/retort ]] || cargo build -q
        RETORT=$TARGET_DIR/debug/retort
    fi
fi
scripts/setup-slurm.sh
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "bench-slurm: $RETORT, $RUNS runs, on $(nproc) CPUs, $(sbatch --version)" >&2

RETORT=$RETORT RUNS=$RUNS DIR=$TMP python3 - <<'EOF'
import json, os, statistics, subprocess, time

retort, runs, d = os.environ["RETORT"], int(os.environ["RUNS"]), os.environ["DIR"]
cmd = 'echo x > "$OUT"'
with open(f"{d}/p.yaml", "w") as f:
    f.write("executor: slurm\nstages:\n  s:\n    kind: command\n    outputs: [out]\n"
            "    run: 'echo x > $RETORT_OUT_OUT'\n")

def slurm_run():
    """One `retort run --force s` on Slurm; phase times from its events."""
    t0 = time.monotonic()
    p = subprocess.Popen([retort, "run", "p.yaml", "--force", "s", "--log-format", "json"], cwd=d,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marks = {}
    for line in p.stderr:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        now = time.monotonic() - t0
        if e.get("event") == "job":
            marks.setdefault("submitted", now)
            marks.setdefault(e["state"], now)
    assert p.wait() == 0, "retort run failed"
    marks["recorded"] = time.monotonic() - t0
    return marks

def timed(args, **kw):
    t0 = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.monotonic() - t0

def tight():
    """The floor of any submitter: `sbatch --parsable`, then `scontrol show
    job` every 50 ms until the job has left the queue for good."""
    t0 = time.monotonic()
    out = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", f"--chdir={d}", "--export=ALL,OUT=tight.out",
                          f"--wrap={cmd}"], check=True, capture_output=True, text=True).stdout
    job = out.strip().split(";")[0]
    while True:
        rec = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
        state = next((t.split("=", 1)[1] for t in rec.split() if t.startswith("JobState=")), "")
        if state not in ("", "PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            assert state == "COMPLETED", state
            return time.monotonic() - t0
        time.sleep(0.05)

slurm, bare, local, floor = [], [], [], []
slurm_run()  # warm: the binary in the page cache, the cache directory made
for _ in range(runs):
    slurm.append(slurm_run())
    bare.append(timed(["sbatch", "--wait", "-o", "/dev/null", f"--chdir={d}", "--export=ALL,OUT=bare.out",
                       f"--wrap={cmd}"]))
    local.append(timed([retort, "run", "p.yaml", "--force", "s", "-q", "--set", "executor=local"], cwd=d))
    floor.append(tight())

med = statistics.median
phase = lambda k: med([m[k] for m in slurm if k in m])
total, b = phase("recorded"), med(bare)
print(f"| what (median of {runs}) | seconds |\n| --- | ---: |")
print(f"| `sbatch --wait` of the same command (bare) | {b:.2f} |")
print(f"| `retort run`, stage on Slurm: start to result recorded | {total:.2f} |")
for k, label in [("submitted", "planned and submitted (first job event)"), ("RUNNING", "RUNNING seen"),
                 ("COMPLETED", "COMPLETED seen")]:
    if any(k in m for m in slurm):
        print(f"|   of which: {label} at | {phase(k):.2f} |")
print(f"| `retort run`, same stage with `executor: local` | {med(local):.2f} |")
print(f"| `sbatch` + `scontrol` polled every 50 ms (floor) | {med(floor):.2f} |")
per_slurm = ", ".join("%.2f" % m["recorded"] for m in slurm)
per_bare = ", ".join("%.2f" % x for x in bare)
print(f"\nratio retort-on-Slurm / bare sbatch --wait: **{total / b:.2f}x** (per run: {per_slurm} vs {per_bare})")
print(f"ratio retort-on-Slurm / the 50 ms polling floor: **{total / med(floor):.2f}x**")
EOF
