"""How well a learned PRM reproduces the rule's step labels on held-out
solutions: `rule` and `prm` are `prm_filter` outputs over the same rows (in
the same order); a step counts as agreed when the PRM's score is on the same
side of 0.5 as the rule's 0/1. Writes one JSON row: the steps compared, the
agreement overall and on the rule's right and wrong steps (with 95% Wilson
intervals), and how often the two put the first error at the same step.
"""
import json
import math
import os


def wilson(k, n, z=1.96):
    if n == 0:
        return [0.0, 0.0]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(c - h, 4), round(c + h, 4)]


def rows(var):
    with open(os.environ[var]) as f:
        return [json.loads(line) for line in f if line.strip()]


rule, prm = rows("RETORT_IN_RULE"), rows("RETORT_IN_PRM")
if len(rule) != len(prm):
    raise SystemExit(f"rule has {len(rule)} rows and prm {len(prm)}: score the same rows with both")
counts = {"right": [0, 0], "wrong": [0, 0]}
same_first = 0
for i, (r, p) in enumerate(zip(rule, prm)):
    if len(r["step_scores"]) != len(p["step_scores"]):
        raise SystemExit(f"row {i}: {len(r['step_scores'])} rule scores but {len(p['step_scores'])} PRM scores")
    for a, b in zip(r["step_scores"], p["step_scores"]):
        c = counts["right" if a > 0.5 else "wrong"]
        c[0] += int((a > 0.5) == (b > 0.5))
        c[1] += 1
    same_first += int(r["first_error"] == p["first_error"])
agree = counts["right"][0] + counts["wrong"][0]
steps = counts["right"][1] + counts["wrong"][1]
out = {
    "rows": len(rule),
    "steps": steps,
    "agreement": round(agree / max(steps, 1), 4),
    "agreement_ci": wilson(agree, steps),
    "right_steps": counts["right"][1],
    "agreement_on_right": round(counts["right"][0] / max(counts["right"][1], 1), 4),
    "agreement_on_right_ci": wilson(*counts["right"]),
    "wrong_steps": counts["wrong"][1],
    "agreement_on_wrong": round(counts["wrong"][0] / max(counts["wrong"][1], 1), 4),
    "agreement_on_wrong_ci": wilson(*counts["wrong"]),
    "same_first_error": round(same_first / max(len(rule), 1), 4),
}
with open(os.environ["RETORT_OUT_OUT"], "w") as f:
    f.write(json.dumps(out) + "\n")
