#!/usr/bin/env python3
"""Math-Shepherd rollouts with transformers: the peer of `scripts/bench-sphere.sh`
(issue 10's speed target: `prm_filter`'s `mc` scorer ≥ 2× this on SmolLM2).

    .venv-peers/bin/python scripts/bench/mc_peer.py MODEL CONTEXTS.jsonl [--rollouts 8] [--batch 16]
        [--max-tokens 48] [--temperature 0.7] [--threads 2] [--repeats 3]

MODEL is a GGUF file (dequantized to f32, as shared/golden/hf.py loads it) or
a checkpoint directory. CONTEXTS.jsonl holds one `{"text": ...}` per step
prefix (the prompt and the steps so far), the texts `prm_filter` rolls out.
Each context is continued `--rollouts` times with batched `generate`
(`num_return_sequences`), `--batch` sequences per call (so `batch / rollouts`
contexts at a time, left-padded), sampling at `--temperature`, up to
`--max-tokens` new tokens, stopping at `</answer>` or EOS. Prints one JSON
object: rollouts/s and generated tokens of each repeat (model load excluded,
tokenization included).
"""
import argparse
import json
import time

from hf_model import load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("contexts")
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch, tok, model = load(args.model, args.threads)
    model.eval()
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    texts = [json.loads(line)["text"] for line in open(args.contexts) if line.strip()]
    per_call = max(1, args.batch // args.rollouts)

    def run(seed):
        torch.manual_seed(seed)
        tokens = 0
        for b in range(0, len(texts), per_call):
            enc = tok(texts[b : b + per_call], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=args.temperature,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=args.max_tokens,
                    num_return_sequences=args.rollouts,
                    stop_strings=["</answer>"],
                    tokenizer=tok,
                    pad_token_id=tok.pad_token_id,
                )
            new = out[:, enc["input_ids"].shape[1] :]
            tokens += int((new != tok.pad_token_id).sum())
        return tokens

    rates, generated = [], []
    for r in range(args.repeats):
        t = time.perf_counter()
        tokens = run(r)
        secs = time.perf_counter() - t
        rates.append(len(texts) * args.rollouts / secs)
        generated.append(tokens)
    print(json.dumps({"rollouts_per_s": rates, "generated_tokens": generated, "contexts": len(texts), "rollouts": args.rollouts}))


if __name__ == "__main__":
    main()
