"""The transformers and TRL side of retort's slow interop tests
(tests/integration/transformers_interop.rs), run with .venv-peers
(scripts/setup-peers.sh: torch, transformers, trl).

    python transformers_peer.py greedy MODEL_DIR N ID...
        Loads a checkpoint directory with AutoModelForCausalLM (f32) and
        prints {"tokens": [...]}: N greedy new tokens after the prompt ids.
    python transformers_peer.py tokenize MODEL_DIR TEXT
        Prints {"ids": [...]}: the directory's tokenizer.json on TEXT (no
        special tokens added).
    python transformers_peer.py save-random ARCH OUT TOKENIZER_DIR
        Saves a small random LlamaForCausalLM (ARCH=llama) or
        Qwen2ForCausalLM (ARCH=qwen2) with save_pretrained (safetensors),
        with TOKENIZER_DIR's tokenizer files, as a user's checkpoint would be.
    python transformers_peer.py trl PARQUET_MESSAGES PARQUET_PC PARQUET_PREF
        Loads retort's Parquet exports with `datasets` and runs TRL's
        is_conversational / maybe_apply_chat_template on them; prints what
        they returned.
"""
import json
import os
import shutil
import sys

os.environ.setdefault("OMP_NUM_THREADS", "2")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def main():
    cmd = sys.argv[1]
    if cmd == "greedy":
        import torch
        from transformers import AutoModelForCausalLM

        d, n, ids = sys.argv[2], int(sys.argv[3]), [int(x) for x in sys.argv[4:]]
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]), max_new_tokens=n, do_sample=False, num_beams=1,
                eos_token_id=None, pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            )
        print(json.dumps({"tokens": out[0, len(ids):].tolist()}))
    elif cmd == "tokenize":
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(sys.argv[2], "tokenizer.json"))
        print(json.dumps({"ids": tok(sys.argv[3], add_special_tokens=False)["input_ids"]}))
    elif cmd == "save-random":
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

        arch, out, tokdir = sys.argv[2], sys.argv[3], sys.argv[4]
        vocab = len(json.load(open(os.path.join(tokdir, "tokenizer.json")))["model"]["vocab"])
        added = json.load(open(os.path.join(tokdir, "tokenizer.json"))).get("added_tokens", [])
        vocab = max([vocab] + [t["id"] + 1 for t in added])
        common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=(arch == "qwen2"), initializer_range=0.2)
        torch.manual_seed(0)
        if arch == "llama":
            model = LlamaForCausalLM(LlamaConfig(**common))
        else:
            model = Qwen2ForCausalLM(Qwen2Config(**common))
        model.save_pretrained(out, safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(tokdir, f)):
                shutil.copy(os.path.join(tokdir, f), out)
        print(json.dumps({"config": json.load(open(os.path.join(out, "config.json")))}))
    elif cmd == "trl":
        import datasets
        from trl.data_utils import is_conversational, maybe_apply_chat_template
        from transformers import AutoTokenizer

        messages, pc, pref = (datasets.load_dataset("parquet", data_files=p, split="train") for p in sys.argv[2:5])
        tok = AutoTokenizer.from_pretrained(sys.argv[5]) if len(sys.argv) > 5 else None
        if tok is not None and tok.chat_template is None:
            # A from-scratch checkpoint (character vocabulary) has no chat
            # template of its own: use ChatML, as retort's `chat: true` does.
            tok.chat_template = CHATML
        out = {
            "messages_conversational": is_conversational(messages[0]),
            "prompt_completion_conversational": is_conversational(pc[0]),
            "preference_conversational": is_conversational(pref[0]),
            "prompt_completion_applied": maybe_apply_chat_template(pc[0], tok) if tok else None,
            "preference_applied": maybe_apply_chat_template(pref[0], tok) if tok else None,
        }
        if tok is not None:
            out["messages_applied"] = maybe_apply_chat_template(messages[0], tok)
        print(json.dumps(out))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
