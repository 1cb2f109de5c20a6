"""The solver of the Montessori-Instruct tiny default: it writes the
response to each instruction a teacher synthesised, so that only the
instructions differ between arms (the paper's best ablation, instruction
optimisation), and it measures what the teacher wrote.

    sum 23 45   ->  23+45=68
    sum 3 4     ->  3+4=7
    prod 3 4    ->  3*4=12
    sum 23      ->  no answer
    anything else -> no answer

Input `instructions`: rows of `synthesize` ({instruction, seed_prompt, ...}).
Input `test`: the held-out set; an instruction that is one of its sums is
dropped (the teacher would otherwise teach the test), and counted.

With `responses: given` (pipelines/montessori-smollm2.yaml, where the
teacher answers its own instructions) the rows' `response` is kept and
the solver only classifies: an instruction that is a two-number sum
question is `on_target`, any other is `free`.

Outputs:
- `rows`: {prompt, response, instruction, seed_prompt, raw, kind, solvable};
- `warmup`, `probe`: the first `warmup` rows and the next `probe` rows
  (Montessori-Instruct's `divide_dataset.py`: first N warm up, next M probe);
- `stats`: one JSON object: counts and shares by kind, solvable, distinct
  instructions, mean operand size of the sums (difficulty), test overlap.
"""
import json
import os
import re

P = {k[len("RETORT_PARAM_"):].lower(): v for k, v in os.environ.items() if k.startswith("RETORT_PARAM_")}


def solve(text):
    m = re.fullmatch(r"sum (\d{1,3}) (\d{1,3})", text.strip())
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        kind = "on_target" if a >= 10 and b >= 10 else "trivial"
        return kind, f"{a}+{b}={a + b}", (a, b)
    m = re.fullmatch(r"prod (\d{1,3}) (\d{1,3})", text.strip())
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        return "off_target", f"{a}*{b}={a * b}", None
    return "malformed", "no answer", None


def classify_given(text):
    m = re.search(r"(\d+) *\+ *(\d+)", text)
    if m and len(re.findall(r"\d+", text)) == 2:
        a, b = int(m.group(1)), int(m.group(2))
        return "on_target" if a >= 10 and b >= 10 else "trivial", (a, b)
    return "free", None


def read(name):
    with open(os.environ[f"RETORT_IN_{name.upper()}"]) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    given = P.get("responses", "solver") == "given"
    test = {tuple(int(x) for x in re.findall(r"\d+", r["prompt"])[:2]) for r in read("test")}
    rows, overlap, sizes = [], 0, []
    for r in read("instructions"):
        if given:
            (kind, pair), response = classify_given(r["instruction"]), r["response"]
        else:
            kind, response, pair = solve(r["instruction"])
        if pair is not None and pair in test:
            overlap += 1
            continue
        if pair is not None:
            sizes.append((pair[0] + pair[1]) / 2)
        rows.append({
            "prompt": r["instruction"] if given else r["instruction"] + "\n",
            "response": response,
            "instruction": r["instruction"],
            "seed_prompt": r["seed_prompt"],
            "raw": r["raw"],
            "kind": kind,
            "solvable": kind != "malformed",
        })
    n = max(len(rows), 1)
    kinds = ["on_target", "trivial", "off_target", "malformed"] + (["free"] if given else [])
    stats = {
        "rows": len(rows),
        **{f"share_{k}": round(sum(r["kind"] == k for r in rows) / n, 4) for k in kinds},
        "share_solvable": round(sum(r["solvable"] for r in rows) / n, 4),
        "share_distinct": round(len({r["instruction"] for r in rows}) / n, 4),
        "mean_operand": round(sum(sizes) / len(sizes), 2) if sizes else None,
        "test_overlap_dropped": overlap,
    }
    warm, probe = int(P.get("warmup", 0)), int(P.get("probe", 0))
    for name, part in [("rows", rows), ("warmup", rows[:warm]), ("probe", rows[warm:warm + probe])]:
        path = os.environ.get(f"RETORT_OUT_{name.upper()}")
        if path:
            with open(path, "w") as f:
                for r in part:
                    f.write(json.dumps(r) + "\n")
    with open(os.environ["RETORT_OUT_STATS"], "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
