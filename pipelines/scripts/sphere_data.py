"""Countdown with steps for SPHERE's tiny default (METHODS §2, §9.1, issue 10).

A problem is 3 or 4 small numbers and a target reachable with + - * (the
solution is how it was built); the prompt is short, for a from-scratch model:

    Use 3 5 2 to make 16.

A solution is `a op b = c` steps, one per line, then the answer:

    3 + 5 = 8
    8 * 2 = 16
    <answer>(3 + 5) * 2</answer>

A noisy step solver writes the base's pre-training traces, so that the base
has a partial step skill: the gold steps (probability `gold`), or the gold
steps with an arithmetic slip (`slip`: one result off by 1 or 2, the answer
still the gold expression), an illegal number (`illegal`: one operand that is
not available, the answer built on it) or a dead end (the rest: random legal
steps that miss the target, answered anyway).

Outputs (JSON Lines; problems carry `prompt`, `nums`, `target`, `arity`):
- `pretrain`: `pretrain` traces (the problem's fields and `response`) on their own problems;
- `train`: `train` problems for the search and the baselines;
- `test3`, `test4`: `test` held-out problems with 3 and with 4 numbers.

No test or train problem appears in another set (pre-training problems may repeat). Seeded from RETORT_SEED: the same bytes on
every run.
"""
import json
import os
import random

P = {k[len("RETORT_PARAM_"):].lower(): v for k, v in os.environ.items() if k.startswith("RETORT_PARAM_")}
rng = random.Random(int(os.environ["RETORT_SEED"]))
MAX_NUM, MAX_VALUE = int(P.get("max_num", 9)), int(P.get("max_value", 99))
GOLD, SLIP, ILLEGAL = float(P["gold"]), float(P["slip"]), float(P["illegal"])


def apply(a, op, b):
    return a + b if op == "+" else a - b if op == "-" else a * b


def legal_ops(a, b):
    """Ops on (a, b) with a result in 0..MAX_VALUE."""
    return [op for op in "+-*" if 0 <= apply(a, op, b) <= MAX_VALUE]


def build(pool, r):
    """Random legal steps until one number is left: (steps, value, expression).
    `pool` holds numbers, or (value, expression) pairs."""
    pool = [p if isinstance(p, tuple) else (p, str(p)) for p in pool]
    steps = []
    while len(pool) > 1:
        i, j = r.sample(range(len(pool)), 2)
        (a, ea), (b, eb) = pool[i], pool[j]
        ops = legal_ops(a, b)
        if not ops:
            i, j = j, i
            (a, ea), (b, eb) = pool[i], pool[j]
            ops = legal_ops(a, b)
        op = r.choice(ops)
        c = apply(a, op, b)
        steps.append((a, op, b, c))
        expr = f"({ea} {op} {eb})"
        pool = [p for k, p in enumerate(pool) if k not in (i, j)] + [(c, expr)]
    value, expr = pool[0]
    return steps, value, expr[1:-1] if expr.startswith("(") else expr


def problem(arity):
    while True:
        nums = [rng.randint(1, MAX_NUM) for _ in range(arity)]
        steps, target, expr = build(nums, rng)
        if target >= 2:
            return {"prompt": f"Use {' '.join(map(str, nums))} to make {target}.\n", "nums": nums, "target": target, "arity": arity}, steps, expr


def render(steps, expr):
    return "".join(f"{a} {op} {b} = {c}\n" for a, op, b, c in steps) + f"<answer>{expr}</answer>"


def noisy_trace(task, steps, expr):
    u = rng.random()
    if u < GOLD:
        return render(steps, expr)
    if u < GOLD + SLIP:
        k = rng.randrange(len(steps))
        a, op, b, c = steps[k]
        steps = steps[:k] + [(a, op, b, c + rng.choice([-2, -1, 1, 2]))] + steps[k + 1:]
        return render(steps, expr)
    if u < GOLD + SLIP + ILLEGAL:
        a, op, b, c = steps[0]
        x = rng.choice([n for n in range(1, MAX_NUM + 1) if n not in task["nums"]] or [MAX_NUM + 1])
        ops = legal_ops(x, b) or ["+"]
        op = ops[0] if op not in ops else op
        first = (x, op, b, apply(x, op, b))
        left = list(task["nums"])
        left.remove(a)
        left.remove(b)
        rest, _, e = build([(first[3], f"({x} {op} {b})")] + left, rng)
        return render([first] + rest, e)
    # A dead end: random legal steps, answered whatever they reach.
    rsteps, _, e = build(task["nums"], rng)
    return render(rsteps, e)


def main():
    seen = set()

    def fresh(arity):
        while True:
            task, steps, expr = problem(arity)
            key = (tuple(task["nums"]), task["target"])
            if key not in seen:
                seen.add(key)
                return task, steps, expr

    n_pre, n_train, n_test = int(P["pretrain"]), int(P["train"]), int(P["test"])
    test3 = [fresh(3)[0] for _ in range(n_test)]
    test4 = [fresh(4)[0] for _ in range(n_test)]
    train = [fresh(3 if i % 2 == 0 else 4)[0] for i in range(n_train)]
    pre = []
    for i in range(n_pre):
        # Pre-training problems may repeat; none is a test or train problem.
        while True:
            task, steps, expr = problem(3 if i % 2 == 0 else 4)
            if (tuple(task["nums"]), task["target"]) not in seen:
                break
        pre.append(dict(task, response=noisy_trace(task, steps, expr)))
    for name, rows in [("pretrain", pre), ("train", train), ("test3", test3), ("test4", test4)]:
        with open(os.environ[f"RETORT_OUT_{name.upper()}"], "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


main()
