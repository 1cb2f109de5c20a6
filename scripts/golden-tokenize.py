#!/usr/bin/env python3
"""Write lm/tests/data/extra_tokenization.json: llama.cpp's token ids for
strings that exercise the SmolLM2 tokenizer's corners (digits, whitespace
runs, newlines, unicode, emoji, special tokens next to text).

Run with the peers venv (scripts/setup-peers.sh) after scripts/fetch-smollm2.sh:

    .venv-peers/bin/python scripts/golden-tokenize.py

llama.cpp is asked exactly as shared/golden/golden.py asks it:
`tokenize(text, add_bos=False, special=True)` (and special=False for the
cases marked so). Only the vocabulary is loaded (vocab_only=True).
"""
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "lm", "tests", "data", "extra_tokenization.json")

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

CASES = [
    # digits: split one by one before BPE
    "0", "7", "42", "2024", "3.14159", "1,000,000", "-17 + 5 = -12", "x2y3z", "(19 + 36) * 55 / 5 = 385",
    "１２３ full-width digits", "Roman Ⅻ and ½ and ² superscript", "٣٤ Arabic-Indic digits",
    # whitespace
    "a b", "a  b", "a   b", "a    b", "  leading", "trailing  ", " ", "  ", "\t", "tab\tsep\t\tdouble",
    "line1\nline2", "line1\n\nline2", "\n\n\n", "crlf\r\nline", " \n x", "x \n", "indent\n    code()\n        more",
    # contractions and punctuation
    "don't can't I'm we'll they've she'd it's", "DON'T IT'S", "'s 't", "Hello, world!!! ...?", "$$$ ### @@@",
    "a--b__c..d", "<answer>38</answer>", "<answer></answer> tags.", "f(x) = x^2 + 2*x - 1;",
    "def f(a, b):\n    return a + b\n", "https://example.com/path?q=1&r=2",
    # unicode and emoji
    "café naïve résumé", "Ünïcödé", "日本語のテキスト", "中文分词测试", "한국어 텍스트", "Привет, мир",
    "مرحبا بالعالم", "שלום", "e\u0301 combining accent", "emoji 🙂👍🏽 mix", "🙂", "👨‍👩‍👧‍👦 family", "zero\u200bwidth",
    "nbsp\u00a0here", "ellipsis… and “quotes” ‘single’ — dash", "\u0000nul", "mixed 12abc34 déf56",
    # special tokens next to text
    "<|im_start|>", "<|im_end|>", "<|im_start|>user\nhi<|im_end|>", "x<|im_end|>y", "<|im_start|><|im_end|>",
    "  <|im_start|>  ", "<|endoftext|>The end", "<|im_start|assistant", "<|im_end|", "<repo_name>x<file_sep>",
    SYSTEM + "<|im_start|>user\nUsing the numbers [1, 2, 3], make 6.<|im_end|>\n<|im_start|>assistant\n",
]

# A few with special=False: special-token text is tokenized as plain text.
PLAIN_CASES = ["<|im_start|>user\nhi<|im_end|>", "x<|endoftext|>y"]


def main():
    from llama_cpp import Llama, __version__ as llama_version

    if not os.path.exists(MODEL):
        sys.exit(f"{MODEL} missing: run scripts/fetch-smollm2.sh")
    sha = hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
    llm = Llama(model_path=MODEL, vocab_only=True, verbose=False)
    cases = []
    for text, special in [(t, True) for t in CASES] + [(t, False) for t in PLAIN_CASES]:
        toks = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        cases.append({"text": text, "special": special, "tokens": toks})
    out = {
        "model": os.path.basename(MODEL),
        "sha256": sha,
        "generator": f"llama-cpp-python {llama_version}: tokenize(text, add_bos=False, special=...)",
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    # One case per line, so diffs stay readable.
    head = {k: v for k, v in out.items() if k != "cases"}
    lines = [json.dumps(c, ensure_ascii=False) for c in cases]
    text = json.dumps(head, ensure_ascii=False, indent=1)[:-2]
    text += ',\n "cases": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    json.loads(text)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
