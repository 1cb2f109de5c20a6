"""Outcome-DPO's pairs for SPHERE's tiny default (METHODS §2's baseline):
a random right and a random wrong sample of the same problem, no process
reward, as many pairs as `like` has rows (SPHERE's own pair count).

Problems with both a right and a wrong sample are visited in a seeded random
order, one pair each per pass, each pass drawing a (right, wrong) combination
not drawn before, until the count is reached or every combination is used.
Seeded from RETORT_SEED: the same bytes on every run.
"""
import json
import os
import random

rng = random.Random(int(os.environ["RETORT_SEED"]))
with open(os.environ["RETORT_IN_SAMPLES"]) as f:
    samples = [json.loads(line) for line in f]
with open(os.environ["RETORT_IN_LIKE"]) as f:
    want = sum(1 for line in f if line.strip())

groups = {}
for s in samples:
    g = groups.setdefault(s["prompt"], {"row": s, "right": [], "wrong": []})
    g["right" if s["correct"] else "wrong"].append(s["response"])
usable = [g for g in groups.values() if g["right"] and g["wrong"]]
for g in usable:
    combos = [(c, r) for c in range(len(g["right"])) for r in range(len(g["wrong"]))]
    rng.shuffle(combos)
    g["combos"] = combos
rng.shuffle(usable)

pairs = []
while len(pairs) < want and any(g["combos"] for g in usable):
    for g in usable:
        if len(pairs) == want:
            break
        if g["combos"]:
            c, r = g["combos"].pop()
            row = g["row"]
            pairs.append({"prompt": row["prompt"], "nums": row["nums"], "target": row["target"],
                          "chosen": g["right"][c], "rejected": g["wrong"][r], "source": "outcome"})

with open(os.environ["RETORT_OUT_OUT"], "w") as f:
    for p in pairs:
        f.write(json.dumps(p) + "\n")
with open(os.environ["RETORT_OUT_STATS"], "w") as f:
    f.write(json.dumps({"wanted": want, "pairs": len(pairs), "problems_usable": len(usable), "problems": len(groups)}) + "\n")
