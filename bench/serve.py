"""Throughput of `mtpb serve` at several client concurrencies.

    python bench/serve.py [--model checkpoints/tiny-codegen] [--concurrency 1,8,32] [--max-tokens 64]
                          [--requests 64] [--batch-size 32] [--device cpu]

Starts `python -m mtpb.serve` on a free loopback port (its own process, so the clients' threads
do not share its interpreter), then for each concurrency C runs C client threads, each with one
keep-alive connection, until --requests completions are done. Prompts are the first-turn contexts
of the bundled suite (greedy, no stop strings, so each request generates up to --max-tokens).
Prints requests/s, generated tokens/s (from the replies' usage) and latency per concurrency.
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mtpb.problems import load_problems
from mtpb.prompts import Conversation


def start_server(args) -> tuple[subprocess.Popen, str, int]:
    cmd = [sys.executable, "-m", "mtpb.serve", "--model", args.model, "--port", "0", "--served-model-name", "bench",
           "--batch-size", str(args.batch_size), "--device", args.device]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    found = re.search(r"http://([\d.]+):(\d+)/v1", line)
    if not found:
        proc.kill()
        sys.exit(f"the server did not start: {line}{proc.stdout.read()}")
    return proc, found.group(1), int(found.group(2))


def complete(conn: http.client.HTTPConnection, prompt: str, max_tokens: int) -> dict:
    body = json.dumps({"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    reply = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(reply)
    return reply


def run_level(host: str, port: int, prompts: list[str], concurrency: int, total: int, max_tokens: int) -> dict:
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    tokens = [0]

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=600)
        while True:
            with lock:
                i = next_index[0]
                if i >= total:
                    return
                next_index[0] += 1
            started = time.perf_counter()
            reply = complete(conn, prompts[i % len(prompts)], max_tokens)
            with lock:
                latencies.append(time.perf_counter() - started)
                tokens[0] += reply["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": total, "seconds": seconds, "req_s": total / seconds,
            "tok_s": tokens[0] / seconds, "tokens": tokens[0], "p50": statistics.median(latencies),
            "max": max(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "tiny-codegen"))
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=64, help="Completions per concurrency level.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="The server's --batch-size.")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    prompts = [Conversation("multi", p.prompts(p.tests[0])).context for p in load_problems()]   # first turns
    proc, host, port = start_server(args)
    try:
        warm = http.client.HTTPConnection(host, port, timeout=600)
        complete(warm, prompts[0], args.max_tokens)
        rows = [run_level(host, port, prompts, int(c), args.requests, args.max_tokens)
                for c in args.concurrency.split(",")]
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"mtpb serve, {Path(args.model).name}, {args.device}, server batch size {args.batch_size}, "
          f"max_tokens {args.max_tokens}, greedy, {args.requests} requests per level")
    print(f"{'concurrency':>11} {'requests/s':>10} {'tokens/s':>9} {'p50 latency':>11} {'max latency':>11} "
          f"{'tokens':>7} {'seconds':>7}")
    for r in rows:
        print(f"{r['concurrency']:>11} {r['req_s']:>10.2f} {r['tok_s']:>9.1f} {r['p50']:>10.3f}s {r['max']:>10.3f}s "
              f"{r['tokens']:>7} {r['seconds']:>7.1f}")


if __name__ == "__main__":
    main()
