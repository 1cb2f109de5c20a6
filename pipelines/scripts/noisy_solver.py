"""A noisy Countdown solver: the traces a from-scratch base model learns from.

For each Countdown task it writes `samples` responses: the gold solution with
probability `accuracy`, otherwise a plausible wrong attempt (a number dropped
or an operator flipped). Seeded from RETORT_SEED, so the output is the same
bytes on every run.
"""
import json
import os
import random

rng = random.Random(int(os.environ["RETORT_SEED"]))
samples = int(os.environ["RETORT_PARAM_SAMPLES"])
accuracy = float(os.environ["RETORT_PARAM_ACCURACY"])
variants = ["original", "plan_and_execute", "alternatively", "rephrase"]

with open(os.environ["RETORT_IN_TASKS"]) as f, open(os.environ["RETORT_OUT_OUT"], "w") as out:
    for line in f:
        task = json.loads(line)
        for i in range(samples):
            expr = task["solution"]
            if rng.random() >= accuracy:
                if rng.random() < 0.5 and "+" in expr:
                    expr = expr.replace("+", "-", 1)
                else:
                    expr = expr.replace(str(task["nums"][-1]), str(task["nums"][-1] + 1), 1)
            response = f"<answer>{expr}</answer>"
            row = dict(task, response=response, sample_index=i, variant=variants[i % len(variants)])
            out.write(json.dumps(row) + "\n")
