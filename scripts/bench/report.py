#!/usr/bin/env python3
"""Turns the measurements of scripts/bench-engine.sh into a Markdown report:
per-tool timings with ratios, the engine's overhead per stage, hashing
throughput, the stat cache, and the targets of issue 2 marked PASS/FAIL.

    report.py RESULTS_TSV META_TSV

RESULTS_TSV: `key <TAB> median_seconds <TAB> runs` (median "nan" = failed).
META_TSV: `key <TAB> value`.
"""
import math
import sys

TOOLS = ("retort", "dvc", "snakemake")
CASES = (
    ("first", "first run (empty cache)"),
    ("noop", "no-op re-run"),
    ("plan", "`retort plan` / `dvc status` / `snakemake -n`"),
    ("param", "re-run after changing k of the middle stage"),
)


def load(path):
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                out[parts[0]] = parts[1:]
    return out


def main():
    res, meta = load(sys.argv[1]), load(sys.argv[2])

    def t(key):
        v = res.get(key)
        if not v:
            return None
        x = float(v[0])
        return None if math.isnan(x) else x

    def n(key):
        v = res.get(key)
        return v[1] if v and len(v) > 1 else "?"

    def m(key, default="?"):
        v = meta.get(key)
        return v[0] if v else default

    def fmt(x):
        if x is None:
            return "n/a"
        if x < 1:
            return f"{x * 1000:.1f} ms"
        return f"{x:.2f} s"

    def cell(key):
        x = t(key)
        return "failed" if x is None and key in res else (f"{fmt(x)} (n={n(key)})" if x is not None else "n/a")

    def ratio(a, b):
        return f"{a / b:.1f}×" if a is not None and b else "n/a"

    sizes = [int(s) for s in m("sizes", "50 200").split()]
    out = []
    w = out.append
    w(f"Machine: {m('machine')}; load average at start {m('load_start')}, at end {m('load_end')}.")
    w(f"Date: {m('date')}. Commit: {m('commit')}. Command: `{m('command')}` "
      f"({m('bench_s')} s of measurements after {m('build_s')} s of build and setup).")
    w(f"Versions: retort {m('retort_version')}, DVC {m('dvc_version')}, Snakemake {m('snakemake_version')}, "
      f"b3sum {m('b3sum_version')}, timer: {m('timer')}.")
    w("")
    mids = ", ".join(f"s{s // 2:03d} of {s}" for s in sizes)
    reruns = ", ".join(f"{s - s // 2} of {s}" for s in sizes)
    w("Each stage of the linear chain runs `cp <previous output> <output>; echo <k_i> >> <output>` in all three tools "
      "(stage 0 copies an external `input.txt`; retort: `kind: command` with `inputs`/`params`; DVC: `dvc.yaml` with "
      "`deps`/`outs`/`params` from `params.yaml`; Snakemake: one rule per stage, `params` from a config file). Every "
      f"output holds all upstream parameters, so changing k of the middle stage ({mids}) to a value it never had "
      f"re-runs that stage and every stage after it ({reruns}) in all three tools: no early cutoff and no run-cache "
      "hit is possible. After the last such re-run the script checks that each tool's final output carries the new "
      f"value ({m('checks')}). retort runs with its default `-j`, Snakemake with `-c1` (a chain has no parallelism). "
      f"Times are medians of n runs, output discarded; DVC gets fewer runs for its slow cases.")
    w("")
    w("| Linear chain | stages | retort | DVC | Snakemake | DVC ÷ retort | Snakemake ÷ retort |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for case, label in CASES:
        for s in sizes:
            r, d, sm = (t(f"{tool}.{s}.{case}") for tool in TOOLS)
            w(f"| {label} | {s} | {cell(f'retort.{s}.{case}')} | {cell(f'dvc.{s}.{case}')} | "
              f"{cell(f'snakemake.{s}.{case}')} | {ratio(d, r)} | {ratio(sm, r)} |")
    w("")

    w("Engine overhead per executed stage = (retort first run − N × bare command time) / N, where the bare time "
      "runs the same `sh -c` commands with the same variables directly from a bash loop (`scripts/bench/bare.sh`).")
    w("")
    nofsync = any(t(f"retort.{s}.first_nofsync") is not None for s in sizes)
    if nofsync:
        w("The last two columns repeat retort's first run under `eatmydata` (fsync made a no-op), to show how much "
          "of the overhead is the durable write of each stage's results on this machine's disk.")
        w("")
        w("| stages | retort first run | bare commands | bare per stage | overhead per stage "
          "| first run, fsync off | overhead per stage, fsync off |")
        w("|---:|---:|---:|---:|---:|---:|---:|")
    else:
        w("| stages | retort first run | bare commands | bare per stage | overhead per stage |")
        w("|---:|---:|---:|---:|---:|")
    overhead = {}
    for s in sizes:
        first, bare = t(f"retort.{s}.first"), t(f"bare.{s}")
        ov = (first - bare) / s if first is not None and bare is not None else None
        overhead[s] = ov
        row = f"| {s} | {fmt(first)} | {fmt(bare)} | {fmt(bare / s if bare else None)} | {fmt(ov)} |"
        if nofsync:
            nf = t(f"retort.{s}.first_nofsync")
            ovn = (nf - bare) / s if nf is not None and bare is not None else None
            row += f" {fmt(nf)} | {fmt(ovn)} |"
        w(row)
    w("")

    size = float(m("hash_bytes", "nan"))
    hb, hr = t("hash.b3sum"), t("hash.retort")
    gb = lambda x: size / x / 1e9 if x else None  # noqa: E731
    gbs = lambda x: f"{gb(x):.2f} GB/s" if x else "n/a"  # noqa: E731
    human = f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 2**20:g} MiB"
    w(f"Hashing a {human} file of random bytes (in the page cache; digests {m('hash_match')}):")
    w("")
    w("| hasher | time | throughput |")
    w("|---|---:|---:|")
    w(f"| `b3sum --num-threads 1` | {cell('hash.b3sum')} | {gbs(hb)} |")
    w(f"| retort (`retort_cache::hash_file`, `scripts/bench/hash`) | {cell('hash.retort')} | {gbs(hr)} |")
    w("")
    w(f"Stat cache: a one-stage pipeline with that file in `deps:`. First `retort run` (hashes it): "
      f"{cell('stat.first')}; `retort plan` with the stat cache deleted (re-hashes it): {cell('stat.plan_cold')}; "
      f"`retort plan` afterwards (stat cache hit, file not read): {cell('stat.plan')}.")
    w("")

    def verdict(ok):
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    big = max(sizes)
    r_noop, d_noop, s_noop = (t(f"{tool}.{big}.noop") for tool in TOOLS)
    rows = [
        (f"no-op re-run, {big} stages", "< 100 ms", fmt(r_noop), None if r_noop is None else r_noop < 0.1),
        (f"no-op re-run, {big} stages, vs DVC", "≥ 50× faster", ratio(d_noop, r_noop),
         None if None in (r_noop, d_noop) else d_noop / r_noop >= 50),
        (f"no-op re-run, {big} stages, vs Snakemake", "≥ 10× faster", ratio(s_noop, r_noop),
         None if None in (r_noop, s_noop) else s_noop / r_noop >= 10),
    ]
    for s in sizes:
        ov = overhead[s]
        rows.append((f"engine overhead per executed stage ({s} stages)", "< 10 ms", fmt(ov),
                     None if ov is None else ov < 0.010))
    rows.append(("hashing throughput vs `b3sum --num-threads 1`", "≥ 80%",
                 f"{hb / hr * 100:.0f}%" if hb and hr else "n/a", None if not (hb and hr) else hb / hr >= 0.8))
    sp, sc = t("stat.plan"), t("stat.plan_cold")
    rows.append((f"unchanged {human} `deps:` file not re-hashed (`retort plan`)",
                 "milliseconds (< 50 ms)", fmt(sp), None if sp is None else sp < 0.05))
    w("| Target (issue 2) | target | measured | result |")
    w("|---|---|---:|---|")
    for name, target, measured, ok in rows:
        w(f"| {name} | {target} | {measured} | {verdict(ok)} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
