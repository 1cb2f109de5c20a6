"""A program teacher for CasCoD's tiny default (METHODS §3, issue 11).

Problems are sums of two-digit numbers. Each question carries a spurious
cue, a tag that equals the answer with probability `cue_agree` in training
and never at test time, so shortcut learning is measurable: an arm that
copies the tag "follows the cue".

    Tag 80. 23+45+12?

The teacher writes step-by-step work ending in the marker, like an LLM
teacher asked to "end with 'Therefore, the answer is'":

    23+45=68. 68+12=80.
    Therefore, the answer is 80.

(Compact, so that six arms train in minutes on two cores.) It is a noisy teacher, so that the recipe's filters do something: a step's
sum is off with probability `slip`, and a chain stops before the marker with
probability `unfinished`. As CasCoD's repair script does, an unfinished chain
is re-queried (a fresh draw) up to `tries` times in all; then only chains
whose final answer is the true sum are kept (METHODS §3: teacher CoTs whose
answer is correct).

Outputs (JSON Lines; `prompt` is the bare question, as cascade_split and
evaluate's `cascade:` expect; `answer` the true sum; `cue` the tag):
- `chains`: verified teacher chains on `train` questions (2-3 operands);
- `ind`: held-out questions from the training distribution, cue flipped;
- `ood`: `ood_operands` operands (longer chains), cue flipped.

Everything is seeded from RETORT_SEED: the same bytes on every run.
"""
import json
import os
import random

P = {k[len("RETORT_PARAM_"):].lower(): v for k, v in os.environ.items() if k.startswith("RETORT_PARAM_")}
SEED = int(os.environ["RETORT_SEED"])
MARKER = "Therefore, the answer is"
LO, HI = int(P.get("lo", 10)), int(P.get("hi", 49))


def question(rng, n_operands, cue_agrees):
    nums = [rng.randint(LO, HI) for _ in range(n_operands)]
    answer = sum(nums)
    cue = answer
    if not cue_agrees:
        # A wrong tag near the answer, so it is a plausible sum.
        cue = answer + rng.choice([-1, 1]) * rng.randint(1, 20)
    text = f"Tag {cue}. {'+'.join(map(str, nums))}?"
    return {"prompt": text, "nums": nums, "answer": answer, "cue": cue, "operands": n_operands}


def teacher_chain(rng, nums, slip, unfinished):
    """One draw of the noisy teacher: running sums, maybe a slip, maybe no end."""
    steps, acc = [], nums[0]
    for x in nums[1:]:
        s = acc + x
        if rng.random() < slip:
            s += rng.choice([-1, 1]) * rng.randint(1, 9)
        steps.append(f"{acc}+{x}={s}.")
        acc = s
    if rng.random() < unfinished:
        return " ".join(steps[:-1] or steps)
    return f"{' '.join(steps)}\n{MARKER} {acc}."


def final_answer(chain):
    if MARKER not in chain:
        return None
    tail = chain.split(MARKER)[1].strip().rstrip(".")
    return int(tail) if tail.lstrip("-").isdigit() else None


def write(name, rows):
    with open(os.environ[f"RETORT_OUT_{name.upper()}"], "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main():
    rng = random.Random(SEED)
    slip, unfinished, tries = float(P["slip"]), float(P["unfinished"]), int(P["tries"])
    cue_agree = float(P["cue_agree"])
    chains, seen = [], set()
    stats = {"questions": 0, "requeried": 0, "unfinished": 0, "wrong": 0}

    def fresh(n_operands, agrees):
        """A question not asked before (training and test questions all differ)."""
        for _ in range(100000):
            q = question(rng, n_operands, agrees)
            if q["prompt"] not in seen:
                seen.add(q["prompt"])
                return q
        raise SystemExit(f"no new {n_operands}-operand questions left in [{LO}, {HI}]: widen the range or ask for fewer")

    for i in range(int(P["train"])):
        q = fresh(rng.choice([2, 3]), rng.random() < cue_agree)
        stats["questions"] += 1
        for attempt in range(tries):
            chain = teacher_chain(rng, q["nums"], slip, unfinished)
            if MARKER in chain:
                break
            stats["requeried"] += attempt + 1 < tries
        if MARKER not in chain:
            stats["unfinished"] += 1
            continue
        if final_answer(chain) != q["answer"]:
            stats["wrong"] += 1
            continue
        chains.append(dict(q, id=f"train-{i}", response=chain))
    ind = [dict(fresh(rng.choice([2, 3]), False), id=f"ind-{i}") for i in range(int(P["test"]))]
    ood = [dict(fresh(int(P["ood_operands"]), False), id=f"ood-{i}") for i in range(int(P["test"]))]
    write("chains", chains)
    write("ind", ind)
    write("ood", ood)
    cue_share = sum(c["cue"] == c["answer"] for c in chains) / max(len(chains), 1)
    print(f"teacher: {stats['questions']} questions, {stats['requeried']} re-queries, "
          f"dropped {stats['unfinished']} unfinished and {stats['wrong']} wrong; kept {len(chains)} verified chains "
          f"(cue agrees with the answer in {100 * cue_share:.1f}% of them); {len(ind)} IND and {len(ood)} OOD tasks")


main()
