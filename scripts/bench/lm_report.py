#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench-lm.sh into a Markdown report: one row
per implementation, the ratios against the peers measured in the same run,
and issue 3's targets marked PASS/FAIL.

    lm_report.py RESULTS_JSONL META_JSON
"""
import json
import sys

ROWS = (
    ("retort", "retort (default: flex + packed Q4_1/Q8_0 host engine)"),
    ("retort-q8", "retort `--q8` (8-bit activations, integer dot products: llama.cpp's arithmetic)"),
    ("retort-1-thread", "retort, 1 thread (`--load` runs only)"),
    ("retort-unpacked", "retort `--unpacked` (burn flex, f32 weights)"),
    ("retort-unpacked-ndarray", "retort `--unpacked`, burn ndarray backend"),
    ("transformers-f32", "transformers, f32 (same GGUF)"),
    ("llama.cpp", "llama.cpp (llama-cpp-python, same GGUF)"),
)


def main():
    runs = {}
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                d = json.loads(line)
                runs.setdefault((d["impl"], d["batch"]), []).append(d)
    # Repeated runs (single streams): the median run by decode speed.
    results = {k: sorted(v, key=lambda d: d.get("decode_tok_s") or 0)[len(v) // 2] for k, v in runs.items()}
    spreads = {k: sorted(round(d.get("decode_tok_s") or 0) for d in v) for k, v in runs.items() if len(v) > 1}
    meta = json.load(open(sys.argv[2]))

    def get(impl, batch, key):
        d = results.get((impl, batch))
        return None if d is None or d.get(key) is None else float(d[key])

    def fmt(x, unit=""):
        return "–" if x is None else f"{x:,.0f}{unit}"

    peers = meta.get("peers") or []
    print(f"Machine: {meta['cores']} cores ({meta['cpu']}); load average at start {meta['load_start']}, "
          f"at end {' '.join(meta['load_end'])}.")
    print(f"Date: {meta['date']}. Commit: {meta['commit']}. Command: `scripts/bench-lm.sh` "
          f"({meta['measure_s']} s of measurements after {meta['build_s']} s of build and setup). "
          f"Threads: {meta['threads']} for every implementation.")
    if len(peers) == 3:
        print(f"Peers: transformers {peers[0]} on torch {peers[1]}, llama-cpp-python {peers[2]}.")
    print()
    print("SmolLM2-135M-Instruct (Q4_1 GGUF), 200-token prompt, 128 new tokens, greedy, EOS ignored. "
          "Prompt = prompt tokens ÷ time to the first token; decode = new tokens (summed over the batch) ÷ the "
          "rest of the time. Peak RSS of the process (retort only).")
    print()
    print("| implementation | prompt tok/s, b1 | prompt tok/s, b16 | decode tok/s, b1 | decode tok/s, b16 (aggregate) "
          "| peak RSS b1 | peak RSS b16 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for impl, label in ROWS:
        if not any((impl, b) in results for b in (1, 16)):
            continue
        print(f"| {label} | {fmt(get(impl, 1, 'prefill_tok_s'))} | {fmt(get(impl, 16, 'prefill_tok_s'))} "
              f"| {fmt(get(impl, 1, 'decode_tok_s'))} | {fmt(get(impl, 16, 'decode_tok_s'))} "
              f"| {fmt(get(impl, 1, 'peak_rss_mib'), ' MiB')} | {fmt(get(impl, 16, 'peak_rss_mib'), ' MiB')} |")
    print()

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    r, tf, lc = "retort", "transformers-f32", "llama.cpp"
    rss = max([x for x in (get(r, 1, "peak_rss_mib"), get(r, 16, "peak_rss_mib")) if x is not None], default=None)
    targets = (
        ("batch-16 aggregate decode vs transformers batch 16", "≥ 2×",
         ratio(get(r, 16, "decode_tok_s"), get(tf, 16, "decode_tok_s")), 2.0, "×"),
        ("batch-16 aggregate decode vs llama.cpp single stream", "≥ 2.5×",
         ratio(get(r, 16, "decode_tok_s"), get(lc, 1, "decode_tok_s")), 2.5, "×"),
        ("batch-1 decode vs transformers batch 1", "≥ 2×",
         ratio(get(r, 1, "decode_tok_s"), get(tf, 1, "decode_tok_s")), 2.0, "×"),
        ("prompt processing vs transformers, batch 1", "≥ 1×",
         ratio(get(r, 1, "prefill_tok_s"), get(tf, 1, "prefill_tok_s")), 1.0, "×"),
        ("prompt processing vs transformers, batch 16", "≥ 1×",
         ratio(get(r, 16, "prefill_tok_s"), get(tf, 16, "prefill_tok_s")), 1.0, "×"),
        ("peak RSS (retort, max of b1 and b16)", "< 1024 MiB", rss, None, " MiB"),
    )
    print("| Target (issue 3) | target | measured | result |")
    print("|---|---|---:|---|")
    for name, want, got, at_least, unit in targets:
        if got is None:
            print(f"| {name} | {want} | – | not measured |")
            continue
        ok = got >= at_least if at_least is not None else got < 1024
        shown = f"{got:.2f}{unit}" if unit == "×" else f"{got:.0f}{unit}"
        print(f"| {name} | {want} | {shown} | {'PASS' if ok else 'FAIL'} |")
    print()
    if spreads:
        print("Decode tok/s of the repeated runs (the table shows the median): "
              + "; ".join(f"{impl} b{b}: {' '.join(map(str, v))}" for (impl, b), v in sorted(spreads.items())) + ".")
        print()
    q8 = "retort-q8"
    if (q8, 1) in results:
        print("Issue 17, single-stream decode (target ≥ 1.2× llama.cpp): "
              + ", ".join(f"{label} {x:.2f}×" for label, x in (
                  ("default", ratio(get(r, 1, "decode_tok_s"), get(lc, 1, "decode_tok_s"))),
                  ("`--q8`", ratio(get(q8, 1, "decode_tok_s"), get(lc, 1, "decode_tok_s")))) if x is not None)
              + "; batch-16 aggregate `--q8` ÷ default "
              + (f"{ratio(get(q8, 16, 'decode_tok_s'), get(r, 16, 'decode_tok_s')):.2f}×" if ratio(get(q8, 16, 'decode_tok_s'), get(r, 16, 'decode_tok_s')) else "–")
              + ".")
        print()
    one = "retort-1-thread"
    if (one, 1) in results:
        print(("Under load (a spinning process on one core): " if meta.get("load") else "")
              + "retort at 2 threads ÷ 1 thread: "
              + ", ".join(f"{what} b{b} {ratio(get(r, b, key), get(one, b, key)):.2f}×"
                          for what, key in (("prompt", "prefill_tok_s"), ("decode", "decode_tok_s"))
                          for b in (1, 16) if ratio(get(r, b, key), get(one, b, key)) is not None)
              + " (issue 17: at least 1× everywhere).")
        print()
    nd, fl = "retort-unpacked-ndarray", "retort-unpacked"
    if (nd, 1) in results and (fl, 1) in results:
        print("flex ÷ ndarray on burn's own path (`--unpacked`): "
              + ", ".join(f"{what} b{b} {ratio(get(fl, b, key), get(nd, b, key)):.1f}×"
                          for what, key in (("prompt", "prefill_tok_s"), ("decode", "decode_tok_s"))
                          for b in (1, 16) if ratio(get(fl, b, key), get(nd, b, key)) is not None)
              + ".")


if __name__ == "__main__":
    main()
