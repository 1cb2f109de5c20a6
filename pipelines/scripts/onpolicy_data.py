"""Tasks for the on-policy SFT tiny default (METHODS §4, issue 12).

Task A, the one fine-tuning should improve: a sum of three two-digit
numbers. The base model's own style is running sums:

    A 23+45+12
    23+45=68 68+12=80 #80

The references for A's training questions are correct but written in a
style foreign to the model (words, the other order), i.e. off-policy:

    add 12 and 45 make 57, then 23 more make 80 #80

Task B, the retention probe: the times table, which the base knows well.

    B 7*8
    #56

So that a tiny model can follow a hint at all, its pre-training also holds
hinted rows: a foreign-style reference before the question, the own-style
solution after it. (An instruction-tuned LLM can do this out of the box.)

    H add 12 and 45 make 57, then 23 more make 80 #80
    A 23+45+12
    23+45=68 68+12=80 #80

Outputs (JSON Lines; `gold` is the expected answer, as a string, so that
`verify` can write its extracted `answer` beside it):
- `pretrain`: {prompt, response}: A (own style, `pretrain_a` rows), B (the
  whole table, `b_repeats` times), hinted A (`pretrain_hint` rows);
- `train_a`: A's fine-tuning questions {prompt, reference, gold};
- `refs`: the same as SFT rows {prompt, response = reference};
- `test_a`, `test_b`: held-out A questions, and the whole table (or a
  `test_b`-row sample of it).

With `style: chat` (pipelines/onpolicy_sft-smollm2.yaml) the questions are
written for an instruction-tuned model and answers go in `\boxed{}`:

    What is 23 + 45 + 12? Give the final answer in \boxed{}.
    Adding 12 and 45 makes 57, and 23 more makes 80. \boxed{80}

(`pretrain` is then empty: the model is the base.)

Everything is seeded from RETORT_SEED: the same bytes on every run.
"""
import json
import os
import random

P = {k[len("RETORT_PARAM_"):].lower(): v for k, v in os.environ.items() if k.startswith("RETORT_PARAM_")}
SEED = int(os.environ["RETORT_SEED"])
LO, HI = 10, 49
CHAT = P.get("style", "tiny") == "chat"


def a_question(rng):
    return [rng.randint(LO, HI) for _ in range(3)]


def a_prompt(nums):
    if CHAT:
        return f"What is {' + '.join(map(str, nums))}? Give the final answer in \\boxed{{}}."
    return f"A {'+'.join(map(str, nums))}\n"


def own_style(nums):
    steps, acc = [], nums[0]
    for x in nums[1:]:
        steps.append(f"{acc}+{x}={acc + x}")
        acc += x
    return f"{' '.join(steps)} #{acc}"


def foreign_style(nums):
    a, b, c = nums
    if CHAT:
        return f"Adding {c} and {b} makes {b + c}, and {a} more makes {a + b + c}. \\boxed{{{a + b + c}}}"
    return f"add {c} and {b} make {b + c}, then {a} more make {a + b + c} #{a + b + c}"


def hint_prompt(nums):
    return f"H {foreign_style(nums)}\n{a_prompt(nums)}"


def b_rows():
    if CHAT:
        return [{"prompt": f"What is {x} times {y}? Give the final answer in \\boxed{{}}.", "response": f"\\boxed{{{x * y}}}", "gold": str(x * y)}
                for x in range(1, 13) for y in range(1, 13)]
    return [{"prompt": f"B {x}*{y}\n", "response": f"#{x * y}", "gold": str(x * y)} for x in range(1, 13) for y in range(1, 13)]


def write(name, rows):
    with open(os.environ[f"RETORT_OUT_{name.upper()}"], "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main():
    rng = random.Random(SEED)
    n_pre, n_hint = int(P.get("pretrain_a", 800)), int(P.get("pretrain_hint", 1500))
    n_train, n_test = int(P.get("train_a", 600)), int(P.get("test_a", 300))
    b_repeats = int(P.get("b_repeats", 8))
    # Distinct questions across the splits, so test items are never seen.
    seen, qs = set(), []
    while len(qs) < n_pre + n_hint + n_train + n_test:
        q = tuple(a_question(rng))
        if q not in seen:
            seen.add(q)
            qs.append(list(q))
    pre, hint = qs[:n_pre], qs[n_pre:n_pre + n_hint]
    train = qs[n_pre + n_hint:n_pre + n_hint + n_train]
    test = qs[n_pre + n_hint + n_train:]

    if CHAT:
        n_pre = n_hint = b_repeats = 0
        pre = hint = []
    pretrain = [{"prompt": a_prompt(q), "response": own_style(q)} for q in pre]
    pretrain += [{"prompt": hint_prompt(q), "response": own_style(q)} for q in hint]
    pretrain += [{"prompt": r["prompt"], "response": r["response"]} for r in b_rows() * b_repeats]
    rng.shuffle(pretrain)
    write("pretrain", pretrain)
    train_rows = [{"prompt": a_prompt(q), "reference": foreign_style(q), "gold": str(sum(q))} for q in train]
    write("train_a", train_rows)
    write("refs", [{"prompt": r["prompt"], "response": r["reference"]} for r in train_rows])
    write("test_a", [{"prompt": a_prompt(q), "gold": str(sum(q)), "task": "A"} for q in test])
    b_test = b_rows()
    n_b = int(P.get("test_b", len(b_test)))
    if n_b < len(b_test):
        b_test = random.Random(SEED + 1).sample(b_test, n_b)
    write("test_b", [{"prompt": r["prompt"], "gold": r["gold"], "task": "B"} for r in b_test])


if __name__ == "__main__":
    main()
