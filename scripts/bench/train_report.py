#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench-train.sh into a Markdown report: one
row per model with retort's and PyTorch's training-step throughput and their
ratio, issue 4's target marked PASS/FAIL, and the GRPO round's time split.

    train_report.py RESULTS_JSONL META_JSON
"""
import json
import sys

CASES = (
    ("tiny-quickstart", "quickstart's tiny (hidden 128, 3 layers, 4/2 heads, inter 384)"),
    ("tiny-quickstart-b32", "quickstart's tiny, its SFT shape"),
    ("tiny", "`tiny` preset (hidden 256, 4 layers, 4/2 heads, inter 768)"),
    ("smollm2", "SmolLM2-135M architecture (30 layers, hidden 576, 9/3 heads)"),
)
# Issue 4: "at least 1.0×" PyTorch on the tiny model's training step.
TARGET_CASES = ("tiny-quickstart", "tiny")


def main():
    rows = {}
    grpo = None
    versions = None
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            d = json.loads(line)
            if d.get("mode") == "grpo":
                grpo = d
            else:
                # Several PyTorch runs of a case (OMP wait policies): keep the fastest.
                key = (d["impl"], d["case"])
                if key not in rows or d["tok_s"] > rows[key]["tok_s"]:
                    rows[key] = d
                versions = versions or d.get("versions")
    meta = json.load(open(sys.argv[2]))

    def fmt(x, spec=",.0f"):
        return "–" if x is None else format(x, spec)

    print(f"Machine: {meta['cores']} cores ({meta['cpu']}); load average at start {meta['load_start']}, "
          f"at end {' '.join(meta['load_end'])}.")
    print(f"Date: {meta['date']}. Commit: {meta['commit']}. Command: `scripts/bench-train.sh` "
          f"({meta['measure_s']} s of measurements after {meta['build_s']} s of build and setup). "
          f"Threads: {meta['threads']} for both (RAYON_NUM_THREADS, torch.set_num_threads).")
    if versions:
        print(f"Peer: transformers {versions['transformers']} on torch {versions['torch']}, "
              f"LlamaForCausalLM (attention: {rows.get(('pytorch', 'tiny'), {}).get('attn', 'sdpa')}).")
    print()
    print("One training step, f32: forward, token-mean cross-entropy over every position, backward, global-norm "
          "clipping to 1.0, AdamW, loss read back. tok/s = batch × seq ÷ the median step time "
          "(after warm-up steps). Same architecture and config on both sides.")
    print()
    print("PyTorch ran with OMP_WAIT_POLICY=PASSIVE and ACTIVE (unless BENCH_TRAIN_OMP_WAIT chose one); the "
          "table keeps its faster run (its policy in the last column): with other work on the cores, spinning "
          "OpenMP threads can slow it ten-fold.")
    print()
    print("| model | params | batch × seq | retort step | retort tok/s | PyTorch step | PyTorch tok/s "
          "| retort ÷ PyTorch | PyTorch OMP wait |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    ratios = {}
    for case, label in CASES:
        r, p = rows.get(("retort", case)), rows.get(("pytorch", case))
        if r is None and p is None:
            continue
        any_ = r or p
        ratio = r["tok_s"] / p["tok_s"] if r and p else None
        ratios[case] = ratio
        steps = lambda d: None if d is None else d["median_step_s"]
        print(f"| {label} | {any_['params'] / 1e6:.2f}M | {any_['batch']} × {any_['seq']} "
              f"| {fmt(steps(r), '.3f')} s | {fmt(r and r['tok_s'])} | {fmt(steps(p), '.3f')} s "
              f"| {fmt(p and p['tok_s'])} | {fmt(ratio, '.2f')}× | {(p or {}).get('omp_wait_policy', '–')} |")
    print()
    print("| Target (issue 4) | target | measured | result |")
    print("|---|---|---:|---|")
    for case in TARGET_CASES:
        got = ratios.get(case)
        name = dict(CASES)[case]
        if got is None:
            print(f"| training step vs PyTorch, {name} | ≥ 1.0× | – | not measured |")
        else:
            print(f"| training step vs PyTorch, {name} | ≥ 1.0× | {got:.2f}× | {'PASS' if got >= 1.0 else 'FAIL'} |")
    got = ratios.get("smollm2")
    print(f"| training step vs PyTorch, SmolLM2-135M | reported | {fmt(got, '.2f')}× | – |")
    print()
    if grpo:
        s, u = grpo["median_sample_s"], grpo["median_update_s"]
        print(f"GRPO round of the quickstart's rl_only stage on its tiny model (retort): {grpo['prompts_per_step']} "
              f"prompts × group {grpo['group_size']} = {grpo['prompts_per_step'] * grpo['group_size']} responses of "
              f"{grpo['max_new_tokens']} new tokens (no EOS: the longest a round can be), batch {grpo['batch']}; "
              f"median of {len(grpo['round_s'])} rounds after warm-up (per-round `sample_secs`/`update_secs` of the "
              f"stage's metrics).")
        print()
        print("| sampling (generation + rewards) | update (π_old/reference log-probs, forward, backward, AdamW) "
              "| round | sampling share |")
        print("|---:|---:|---:|---:|")
        print(f"| {s:.3f} s | {u:.3f} s | {grpo['median_round_s']:.3f} s | {100 * s / (s + u):.0f}% |")


if __name__ == "__main__":
    main()
