#!/usr/bin/env python3
"""Local data influence with PyTorch: the peer of `scripts/bench-influence.sh`
(issue 13). The same procedure as retort's `influence` stage (METHODS §5
M5), written the way the reference code does it with transformers:

    save the warm model's and AdamW's state_dicts once;
    for each probing example z:
        model.load_state_dict(warm); optimizer.load_state_dict(warm_opt)   # restore
        one AdamW step on z alone (batch 1, response-only loss, clip 1.0)
        L_after = token-mean loss on the reference set (no grad, batch B)

    .venv-peers/bin/python scripts/bench/influence_peer.py MODEL PROBES.jsonl REFS.jsonl [--gguf] [--lr 1e-3] [--batch 16] [--threads 2]

MODEL is a checkpoint directory (retort's safetensors, which transformers
reads) or a GGUF file (dequantized to f32; see hf_model.py). Rows are
{prompt, response}; tokens are encode(prompt) + encode(response) + [eos]
without special tokens, as retort builds them. AdamW's state comes from one
warm-up step on the first probe (its values do not change the timing).
Prints one JSON object: examples/s, seconds spent restoring, and the scores.
"""
import argparse
import copy
import json
import time

from hf_model import load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("probes")
    ap.add_argument("refs")
    ap.add_argument("--gguf", action="store_true", help="accepted for old command lines: a file is read as GGUF anyway")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch, tok, model = load(args.model, args.threads)
    torch.manual_seed(0)
    eos = tok.eos_token_id

    def seqs(path):
        out = []
        for line in open(path):
            if line.strip():
                r = json.loads(line)
                p = tok.encode(r["prompt"], add_special_tokens=False)
                y = tok.encode(r["response"], add_special_tokens=False) + ([eos] if eos is not None else [])
                out.append((p + y, len(p)))
        return out

    def batch(chunk):
        width = max(len(s) for s, _ in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, (s, start) in enumerate(chunk):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
            labels[i, start : len(s)] = torch.tensor(s[start:])
        return ids, mask, labels

    def token_loss(ids, mask, labels):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum")
        return nll, int((target != -100).sum())

    probes, refs = seqs(args.probes), seqs(args.refs)
    ref_batches = [batch(refs[i : i + args.batch]) for i in range(0, len(refs), args.batch)]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    def step_on(z):
        model.train()
        nll, n = token_loss(*batch([z]))
        (nll / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def reference_loss():
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for b in ref_batches:
                nll, n = token_loss(*b)
                total, count = total + float(nll), count + n
        return total / count

    step_on(probes[0])  # AdamW's moments exist from here on
    warm, warm_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    restore_s, scores = 0.0, []
    t0 = time.perf_counter()
    for z in probes:
        t = time.perf_counter()
        model.load_state_dict(warm)
        opt.load_state_dict(warm_opt)
        restore_s += time.perf_counter() - t
        step_on(z)
        scores.append(reference_loss())
    secs = time.perf_counter() - t0
    print(json.dumps({"examples_per_s": len(probes) / secs, "restore_s": restore_s, "secs": secs, "scores": scores, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
