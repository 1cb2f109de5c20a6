"""A model in transformers for the peers of scripts/bench-*.sh: a GGUF file
dequantized to f32 (as shared/golden/hf.py loads it) or a checkpoint
directory (retort's safetensors, which transformers reads), in f32, with
torch on `threads` threads.

    from hf_model import load
    torch, tok, model = load(path, threads)
"""
import os


def load(path, threads):
    # Before torch is imported: its OpenMP pool reads this once.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    if os.path.isdir(path):
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    else:
        d, f = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    return torch, tok, model
