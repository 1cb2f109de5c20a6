#!/usr/bin/env python3
"""Throughput of the reference implementations on SmolLM2-135M, with the
protocol of `cargo run --release -p retort-lm --example bench`: a 200-token
prompt, 128 new tokens (greedy, no EOS stop), 2 threads; prompt processing
and aggregate decoding tokens/s, one JSON object per line.

    .venv-peers/bin/python lm/benches/peers.py [--model PATH] [--which transformers,llamacpp]

transformers loads the same GGUF dequantized to f32 (as shared/golden/hf.py);
llama.cpp (llama-cpp-python) runs the GGUF as is, single stream only.
"""
import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")


def prompts(batch, length, vocab=49152):
    # The same pseudo-text ids as lm/examples/bench.rs.
    return [[(i * 7919 + b * 104729 + 13) % (vocab - 100) + 50 for i in range(length)] for b in range(batch)]


def bench_transformers(model_path, batch, prompt_len, new_tokens):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    t0 = time.time()
    m = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(model_path), gguf_file=os.path.basename(model_path), torch_dtype=torch.float32
    )
    m.eval()
    load_s = time.time() - t0
    ids = torch.tensor(prompts(batch, prompt_len))
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0)

    def run(n):
        t = time.time()
        with torch.no_grad():
            out = m.generate(ids, max_new_tokens=n, min_new_tokens=n, **gen)
        assert out.shape[1] == prompt_len + n
        return time.time() - t

    run(2)
    prefill_s = run(1)
    total_s = run(new_tokens + 1)
    decode_s = total_s - prefill_s
    return dict(
        impl="transformers-f32", batch=batch, prompt_len=prompt_len, new_tokens=new_tokens, load_s=load_s,
        prefill_tok_s=batch * prompt_len / prefill_s, decode_tok_s=batch * new_tokens / decode_s,
    )


def bench_llamacpp(model_path, prompt_len, new_tokens):
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, n_ctx=1024, n_batch=512, n_threads=2, verbose=False)
    toks = prompts(1, prompt_len)[0]

    def run(n):
        llm.reset()
        t = time.time()
        got = 0
        for _ in llm.generate(toks, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0):
            got += 1
            if got >= n:
                break
        return time.time() - t

    run(2)
    prefill_s = run(1)
    total_s = run(new_tokens + 1)
    decode_s = total_s - prefill_s
    return dict(
        impl="llama.cpp", batch=1, prompt_len=prompt_len, new_tokens=new_tokens,
        prefill_tok_s=prompt_len / prefill_s, decode_tok_s=new_tokens / decode_s,
    )


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--model", default=os.path.join(here, "../../models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--which", default="transformers,llamacpp")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=128)
    a = ap.parse_args()
    model = os.path.abspath(a.model)
    which = a.which.split(",")
    if "llamacpp" in which:
        print(json.dumps(bench_llamacpp(model, a.prompt_len, a.new_tokens)), flush=True)
    if "transformers" in which:
        for b in map(int, a.batches.split(",")):
            print(json.dumps(bench_transformers(model, b, a.prompt_len, a.new_tokens)), flush=True)


if __name__ == "__main__":
    main()
