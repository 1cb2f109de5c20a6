"""Data for the Montessori-Instruct tiny default (METHODS §5, issue 13).

The student's task: two-digit sums. An instruction is a problem statement,
a response is the solver's answer:

    sum 23 45        ->  23+45=68

The teacher writes instructions from few-shot prompts, the examples inside
tags, one per line (the `template` of the pipeline's `synthesize` stages):

    <instruction>sum 23 45</instruction>
    <instruction>sum 71 18</instruction>
    ...

and continues with `<instruction>NEW</instruction>`. The untuned teacher
is pre-trained on such prompts with a mixed distribution of what it
writes, so that some of it is off-target (what Montessori-Instruct's
influence should learn to avoid):

    on_target   sum A B, A and B two-digit   (the student's task)
    trivial     sum a b, one-digit           (solvable, too easy)
    off_target  prod a b                     (another task)
    malformed   sum A                        (unsolvable: one number)

Outputs (JSON Lines):
- `seeds`: {instruction}, on-target seed instructions (`seeds` rows);
- `teacher_pretrain`: {prompt, response}: few-shot prompts of `shots`
  seeds, each with one instruction from the mixture (`teacher_rows` rows);
- `student_pretrain`: {prompt, response}: on-target sums the student base
  learns partially (`student_rows` rows, none of them a reference or test sum);
- `reference`: {prompt, response}: the reference set of influence
  (`reference` rows), disjoint from `test`;
- `test`: {prompt, gold}: held-out sums (`test` rows).

With `style: chat` (pipelines/montessori-smollm2.yaml) instructions are
questions for an instruction-tuned model ("What is 23 + 45?"), the reference
responses say "23 + 45 = 68. The answer is 68.", and the teacher's and
student's pre-training sets are empty (the model is SmolLM2).

Everything is seeded from RETORT_SEED: the same bytes on every run.
"""
import json
import os
import random

P = {k[len("RETORT_PARAM_"):].lower(): v for k, v in os.environ.items() if k.startswith("RETORT_PARAM_")}
SEED = int(os.environ["RETORT_SEED"])
MIX = {"on_target": 0.35, "trivial": 0.2, "off_target": 0.25, "malformed": 0.2}
CHAT = P.get("style", "tiny") == "chat"


def question(a, b):
    return f"What is {a} + {b}?" if CHAT else f"sum {a} {b}\n"


def answer(a, b):
    return f"{a} + {b} = {a + b}. The answer is {a + b}." if CHAT else f"{a}+{b}={a + b}"


def instruction(rng, kind):
    if kind == "on_target":
        return f"sum {rng.randint(10, 99)} {rng.randint(10, 99)}"
    if kind == "trivial":
        return f"sum {rng.randint(0, 9)} {rng.randint(0, 9)}"
    if kind == "off_target":
        return f"prod {rng.randint(2, 9)} {rng.randint(2, 9)}"
    return f"sum {rng.randint(10, 99)}"


def few_shot(examples):
    # Must render exactly as the pipeline's `synthesize` template does.
    return "".join(f"<instruction>{e}</instruction>\n" for e in examples)


def write(name, rows):
    with open(os.environ[f"RETORT_OUT_{name.upper()}"], "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main():
    rng = random.Random(SEED)
    shots = int(P.get("shots", 4))
    test_pairs, ref_pairs = set(), set()
    while len(test_pairs) < int(P.get("test", 400)):
        test_pairs.add((rng.randint(10, 99), rng.randint(10, 99)))
    while len(ref_pairs) < int(P.get("reference", 64)):
        p = (rng.randint(10, 99), rng.randint(10, 99))
        if p not in test_pairs:
            ref_pairs.add(p)
    held_out = test_pairs | ref_pairs
    seeds = set()
    while len(seeds) < int(P.get("seeds", 40)):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if (a, b) not in held_out:
            seeds.add(question(a, b).strip())
    seeds = sorted(seeds)
    write("seeds", [{"instruction": s} for s in seeds])

    kinds, weights = zip(*MIX.items())
    teacher = []
    for _ in range(0 if CHAT else int(P.get("teacher_rows", 2000))):
        kind = rng.choices(kinds, weights)[0]
        teacher.append({"prompt": few_shot(rng.sample(seeds, shots)), "response": f"<instruction>{instruction(rng, kind)}</instruction>"})
    write("teacher_pretrain", teacher)

    student = []
    while len(student) < (0 if CHAT else int(P.get("student_rows", 1500))):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if (a, b) in held_out:
            continue
        student.append({"prompt": question(a, b), "response": answer(a, b)})
    write("student_pretrain", student)
    write("reference", [{"prompt": question(a, b), "response": answer(a, b)} for a, b in sorted(ref_pairs)])
    write("test", [{"prompt": question(a, b), "gold": str(a + b)} for a, b in sorted(test_pairs)])


if __name__ == "__main__":
    main()
