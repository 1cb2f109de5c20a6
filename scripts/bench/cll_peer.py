#!/usr/bin/env python3
"""The centred log-likelihood of `cll_score` computed with transformers: the
peer of `scripts/bench-hinted.sh`'s scoring half (issue 12).

    .venv-peers/bin/python scripts/bench/cll_peer.py MODEL.gguf ROWS.jsonl [--field response] [--batch 32] [--threads 2] [--repeats 3] [--dtype f32|bf16]

Each row's tokens are `encode(prompt) + encode(response) + [eos]`, no special
tokens added, as `cll_score` builds them (chat: false). φ_t = log p_t(y_t) +
H(p_t) for every response token (EOS included), from one padded forward pass
per batch in f32 (the GGUF dequantized, as shared/golden/hf.py loads it), or
with `--dtype bf16` the model cast to bfloat16 (torch's CPU bf16 matmuls; the
log-softmax in f32), the peer of `cll_score`'s `precision: bf16`.
Prints one JSON object: rows/s of each repeat (model load excluded, the
tokenization included) and each row's avg φ, for the agreement check.
"""
import argparse
import json
import time

from hf_model import load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("rows")
    ap.add_argument("--field", default="response")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    args = ap.parse_args()
    torch, tok, model = load(args.model, args.threads)
    if args.dtype == "bf16":
        model = model.to(torch.bfloat16)
    model.eval()
    rows = [json.loads(line) for line in open(args.rows) if line.strip()]

    def score():
        seqs = []
        for r in rows:
            p = tok.encode(r["prompt"], add_special_tokens=False)
            y = tok.encode(r[args.field], add_special_tokens=False) + [tok.eos_token_id]
            seqs.append((p + y, len(p)))
        avg = []
        for b in range(0, len(seqs), args.batch):
            chunk = seqs[b : b + args.batch]
            width = max(len(s) for s, _ in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, (s, _) in enumerate(chunk):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            ent = -(logp.exp() * logp).sum(-1)
            for i, (s, start) in enumerate(chunk):
                t = torch.arange(start, len(s))
                lp = logp[i, t - 1, ids[i, t]]
                avg.append(float((lp + ent[i, t - 1]).mean()))
        return avg

    score()  # warm-up
    rates, avg = [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        avg = score()
        rates.append(len(rows) / (time.perf_counter() - t0))
    print(json.dumps({"rows_per_s": rates, "avg_phi": avg, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
