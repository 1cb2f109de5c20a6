#!/usr/bin/env python3
"""Serve a GGUF with llama.cpp's llama-server (embedded in the `xllamacpp`
wheel) on 127.0.0.1, for retort's tests and benchmarks.

    python scripts/llama-server.py MODEL.gguf PORT [SLOTS] [THREADS]

The model is served as `smollm2` (its alias); with LLAMA_API_KEY set, the
server requires that key. Prints "ready" once it answers; stops on SIGTERM
or SIGINT. Installed by
scripts/setup-llama-server.sh; see shared notes in SCALEOUT.md for why the
thread counts are pinned.
"""
import os
import signal
import sys
import time
import urllib.request

import xllamacpp as x


def main() -> None:
    model, port = sys.argv[1], int(sys.argv[2])
    slots = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    p = x.CommonParams()
    p.model.path = model
    p.model_alias = {os.environ.get("LLAMA_ALIAS", "smollm2")}
    if os.environ.get("LLAMA_API_KEY"):
        p.api_keys = [os.environ["LLAMA_API_KEY"]]
    p.n_ctx = 2048 * slots
    p.n_parallel = slots
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.port = port
    p.hostnames = ["127.0.0.1"]
    server = x.Server(p)  # noqa: F841 (keeps the server alive)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except Exception:
            time.sleep(0.05)
    print("ready", flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])


if __name__ == "__main__":
    main()
