#!/usr/bin/env python3
"""Generates equivalent linear chains of trivial stages for retort, DVC and
Snakemake, and bumps one stage's parameter (for the "one parameter changed"
measurement). Used by scripts/bench-engine.sh.

Every stage i does the same thing in all three tools:

    cp <previous output> <this output>; echo <k_i> >> <this output>

(stage 0 copies the external file input.txt). So each output holds all the
parameters upstream of it, and changing k of stage M changes the bytes of
every output from M on: all N - M downstream stages (M included) re-run in
every tool, no early cutoff is possible.

    chain.py gen  TOOL N DIR     write the pipeline for TOOL into DIR
    chain.py bump TOOL M DIR     give stage M's k a value it never had
"""
import pathlib
import re
import sys


def name(i):
    return f"s{i:03d}"


def gen_retort(n, d):
    lines = ["name: chain", "seed: 1", "stages:"]
    for i in range(n):
        src = "input.txt" if i == 0 else '"$RETORT_IN_SRC"'
        lines += [
            f"  {name(i)}:",
            "    kind: command",
            f'    run: cp {src} "$RETORT_OUT_OUT"; echo "$RETORT_PARAM_K" >> "$RETORT_OUT_OUT"',
        ]
        if i == 0:
            lines.append("    deps: [input.txt]")
        else:
            lines.append(f"    inputs: {{src: {name(i - 1)}.out}}")
        lines += ["    outputs: [out]", f"    params: {{k: {i}}}"]
    (d / "pipeline.yaml").write_text("\n".join(lines) + "\n")


def params_yaml(n):
    return "".join(f"{name(i)}:\n  k: {i}\n" for i in range(n))


def gen_dvc(n, d):
    lines = ["stages:"]
    for i in range(n):
        src = "input.txt" if i == 0 else f"{name(i - 1)}.out"
        out = f"{name(i)}.out"
        lines += [
            f"  {name(i)}:",
            f"    cmd: cp {src} {out}; echo ${{{name(i)}.k}} >> {out}",
            f"    deps: [{src}]",
            f"    params: [{name(i)}.k]",
            f"    outs: [{out}]",
        ]
    (d / "dvc.yaml").write_text("\n".join(lines) + "\n")
    (d / "params.yaml").write_text(params_yaml(n))


def gen_snakemake(n, d):
    lines = ['configfile: "config.yaml"', "", "rule all:", f'    input: "{name(n - 1)}.out"', ""]
    for i in range(n):
        src = "input.txt" if i == 0 else f"{name(i - 1)}.out"
        lines += [
            f"rule {name(i)}:",
            f'    input: "{src}"',
            f'    output: "{name(i)}.out"',
            f'    params: k=config["{name(i)}"]["k"]',
            '    shell: "cp {input} {output}; echo {params.k} >> {output}"',
            "",
        ]
    (d / "Snakefile").write_text("\n".join(lines))
    (d / "config.yaml").write_text(params_yaml(n))


def bump(tool, m, d):
    counter = d / ".bump-counter"
    c = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(c))
    value = 1_000_000 + c
    file = {"retort": "pipeline.yaml", "dvc": "params.yaml", "snakemake": "config.yaml"}[tool]
    path = d / file
    text = path.read_text()
    if tool == "retort":
        pat = re.compile(rf"(^  {name(m)}:\n(?:    .*\n)*?    params: {{k: )[^}}]*(}})", re.M)
    else:
        pat = re.compile(rf"(^{name(m)}:\n  k: ).*()$", re.M)
    new, k = pat.subn(lambda mo: f"{mo.group(1)}{value}{mo.group(2)}", text)
    if k != 1:
        sys.exit(f"chain.py: could not find the parameter of {name(m)} in {path}")
    path.write_text(new)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    cmd, tool, num, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), pathlib.Path(sys.argv[4])
    if cmd == "gen":
        d.mkdir(parents=True, exist_ok=True)
        (d / "input.txt").write_text("retort bench chain input\n")
        {"retort": gen_retort, "dvc": gen_dvc, "snakemake": gen_snakemake}[tool](num, d)
    elif cmd == "bump":
        bump(tool, num, d)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
