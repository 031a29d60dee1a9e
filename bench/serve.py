"""Throughput of `mtpb serve` at several client concurrencies.

    python bench/serve.py [--model checkpoints/tiny-codegen] [--concurrency 1,8,32] [--max-tokens 64]
                          [--requests 64] [--batch-size 32] [--device cpu]

Starts `python -m mtpb.serve` on a free loopback port (its own process, so the clients' threads
do not share its interpreter), then for each concurrency C runs C client threads, each with one
keep-alive connection, until --requests completions are done. Prompts are the first-turn contexts
of the bundled suite (greedy, no stop strings, so each request generates up to --max-tokens).
Prints requests/s, generated tokens/s (from the replies' usage) and latency per concurrency.

Then the fairness figure (--fairness-requests 0 skips it): p50/p99 latency of single small requests
(one prompt, --small-tokens) sent one after another, first alone (the baseline), then while another
client keeps a 64-sequence request (--large-n prompts, --large-tokens each) in flight all the time,
and the ratio of the two. Both are measured in the same run, against the same server.
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def small_latencies(host: str, port: int, prompts: list[str], count: int, max_tokens: int) -> list[float]:
    conn = http.client.HTTPConnection(host, port, timeout=600)
    out = []
    for i in range(count):
        started = time.perf_counter()
        complete(conn, prompts[i % len(prompts)], max_tokens)
        out.append(time.perf_counter() - started)
    return out


def fairness(host: str, port: int, prompts: list[str], args) -> dict:
    """Small-request latency alone, then under a 64-sequence request kept in flight."""
    alone = small_latencies(host, port, prompts, args.fairness_requests, args.small_tokens)
    stop, large_done, started = threading.Event(), [0], threading.Event()

    def large_client():
        conn = http.client.HTTPConnection(host, port, timeout=600)
        body = json.dumps({"model": "bench", "prompt": prompts[:args.large_n], "max_tokens": args.large_tokens,
                           "temperature": 0})
        for _ in range(1000):                          # bounded: stops once the small requests are done
            if stop.is_set():
                return
            conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
            started.set()
            response = conn.getresponse()
            reply = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(reply)
            large_done[0] += 1

    thread = threading.Thread(target=large_client, daemon=True)
    thread.start()
    started.wait(60)
    time.sleep(0.2)                                    # the large request is in the engine
    loaded = small_latencies(host, port, prompts, args.fairness_requests, args.small_tokens)
    stop.set()
    thread.join(600)
    return {"alone": alone, "loaded": loaded, "large_done": large_done[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "tiny-codegen"))
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=64, help="Completions per concurrency level.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="The server's --batch-size.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fairness-requests", type=int, default=20, help="Small requests per fairness phase.")
    parser.add_argument("--small-tokens", type=int, default=16)
    parser.add_argument("--large-n", type=int, default=64, help="Sequences in the large request.")
    parser.add_argument("--large-tokens", type=int, default=128)
    args = parser.parse_args()
    prompts = [Conversation("multi", p.prompts(p.tests[0])).context for p in load_problems()]   # first turns
    proc, host, port = start_server(args)
    try:
        warm = http.client.HTTPConnection(host, port, timeout=600)
        complete(warm, prompts[0], args.max_tokens)
        rows = [run_level(host, port, prompts, int(c), args.requests, args.max_tokens)
                for c in args.concurrency.split(",") if c]
        fair = fairness(host, port, prompts, args) if args.fairness_requests > 0 else None
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
    if fair:
        print(f"\nfairness: {args.fairness_requests} single requests of {args.small_tokens} tokens, one after another; "
              f"'under load': while a {args.large_n}-sequence request of {args.large_tokens} tokens each is kept in "
              f"flight ({fair['large_done']} completed meanwhile)")
        print(f"{'':>11} {'p50':>8} {'p99':>8}")
        for name in ("alone", "under load"):
            lat = fair["alone" if name == "alone" else "loaded"]
            print(f"{name:>11} {percentile(lat, 0.5):>7.3f}s {percentile(lat, 0.99):>7.3f}s")
        print(f"{'ratio':>11} {percentile(fair['loaded'], 0.5) / percentile(fair['alone'], 0.5):>7.1f}x "
              f"{percentile(fair['loaded'], 0.99) / percentile(fair['alone'], 0.99):>7.1f}x")


if __name__ == "__main__":
    main()
