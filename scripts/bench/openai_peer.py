#!/usr/bin/env python3
"""Helpers of scripts/bench-openai.sh (issue 14), standard library only.

    openai_peer.py prompts N SALT OUT.jsonl        distinct prompts, one JSON row each
    openai_peer.py client URL MODEL PROMPTS.jsonl CONCURRENCY MAX_TOKENS
        a plain concurrent client (threads, keep-alive): prints
        {"requests", "tokens", "seconds", "tok_per_s", "req_per_s"}
    openai_peer.py instant PORT                    an endpoint that answers at once
"""
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

WORDS = "river stone apple cloud piano tiger lemon forest rocket candle mirror garden silver bridge winter".split()


def prompts(n: int, salt: str, out: str) -> None:
    with open(out, "w") as f:
        for i in range(n):
            words = " ".join(WORDS[(i * 7 + k * 3 + len(salt)) % len(WORDS)] for k in range(12))
            f.write(json.dumps({"prompt": f"[{salt}-{i}] Write a story about {words}."}) + "\n")


def client(url: str, model: str, path: str, concurrency: int, max_tokens: int) -> None:
    rows = [json.loads(line)["prompt"] for line in open(path)]
    u = urlparse(url)
    local = threading.local()

    def one(i_prompt):
        i, prompt = i_prompt
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 1.0,
                           "seed": i, "n": 1, "ignore_eos": True})
        local.conn.request("POST", u.path + "/completions", body, {"Content-Type": "application/json"})
        resp = json.loads(local.conn.getresponse().read())
        return resp["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, enumerate(rows)))
    secs = time.perf_counter() - start
    print(json.dumps({"requests": len(rows), "tokens": tokens, "seconds": round(secs, 3),
                      "tok_per_s": round(tokens / secs, 1), "req_per_s": round(len(rows) / secs, 1)}))


class Instant(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment: with Nagle on and the client's
    # delayed ACK, a split answer waits ~40 ms per request.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    ANSWER = json.dumps({"choices": [{"index": 0, "text": " ok", "finish_reason": "length"}],
                         "usage": {"completion_tokens": 1}}).encode()
    MODELS = json.dumps({"data": [{"id": "instant"}]}).encode()

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self._send(self.MODELS)

    def do_POST(self):  # noqa: N802
        n = json.loads(self.rfile.read(int(self.headers["Content-Length"]))).get("n", 1)
        if n == 1:
            self._send(self.ANSWER)
        else:
            choices = [{"index": k, "text": " ok", "finish_reason": "length"} for k in range(n)]
            self._send(json.dumps({"choices": choices, "usage": {"completion_tokens": n}}).encode())

    def log_message(self, *args):
        pass


def instant(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), Instant).serve_forever()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "prompts":
        prompts(int(args[0]), args[1], args[2])
    elif cmd == "client":
        client(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif cmd == "instant":
        instant(int(args[0]))
    else:
        sys.exit(f"unknown command {cmd}")
