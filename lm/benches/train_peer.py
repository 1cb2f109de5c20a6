#!/usr/bin/env python3
"""PyTorch's training step on the architecture retort just measured, with the
protocol of `lm/examples/train_bench.rs step`: one step = forward, token-mean
cross-entropy over every position, backward, global-norm clipping to 1.0,
AdamW (lr 1e-4, betas (0.9, 0.999), eps 1e-8, no weight decay), f32, and the
loss read back; warm-up steps, then the median of the timed ones. One JSON
object per line.

    .venv-peers/bin/python lm/benches/train_peer.py --config CONFIG_JSON \
        [--label NAME] [--batch 8] [--seq 256] [--warmup 2] [--steps 5] [--threads 2]

CONFIG_JSON is the `config` object of train_bench's JSON line (HF LlamaConfig
keys: the same hidden size, layers, heads, kv heads, intermediate size,
vocabulary, RoPE theta, RMSNorm eps and tied embeddings). Weights are random
(transformers' init): values do not change the speed.
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = json.load(open(a.config))
    cfg = LlamaConfig(
        vocab_size=c["vocab_size"],
        hidden_size=c["hidden_size"],
        intermediate_size=c["intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"],
        num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c.get("num_key_value_heads") or c["num_attention_heads"],
        head_dim=c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"],
        rms_norm_eps=c["rms_norm_eps"],
        rope_theta=c["rope_theta"],
        max_position_embeddings=c["max_position_embeddings"],
        tie_word_embeddings=c["tie_word_embeddings"],
        attention_bias=c.get("attention_bias", False),
        hidden_act="silu",
        torch_dtype=torch.float32,
    )
    model = LlamaForCausalLM(cfg).float()
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, c["vocab_size"], (a.batch, a.seq + 1), generator=g)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        t = time.perf_counter()
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        return time.perf_counter() - t

    for _ in range(a.warmup):
        step()
    times = [step() for _ in range(a.steps)]
    med = statistics.median(times)
    print(json.dumps(dict(
        impl="pytorch", case=a.label, mode="step", params=n_params, threads=torch.get_num_threads(),
        batch=a.batch, seq=a.seq, warmup=a.warmup, step_s=times, median_step_s=med,
        tok_s=a.batch * a.seq / med, attn=model.config._attn_implementation,
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "default"),
        versions=dict(torch=torch.__version__, transformers=transformers.__version__),
    )))


if __name__ == "__main__":
    main()
