"""`mtpb execute` against the bare fork-per-program limit, whole commands, on one generated samples file.

    python bench/exec_bare_fork.py [--n 4200] [--rounds 2] [--workers 2] [--no-docker] [--numpy-pandas-only]

Writes --n small MTPB-style programs in the original sampler's format (`completions` ending in an
expression, numpy or pandas in about a tenth of them), then times, each as a whole command on that
same file, in --rounds alternating rounds so that load from elsewhere hits each alike:
  - the bare baseline (this script with --baseline): numpy and pandas imported once, a worker
    process per core, each forking one child per program that rewrites the last expression to a
    print as the original harness does, runs the program and sends the last printed value back over
    a pipe; no isolation, no limits, no cleanup;
  - `mtpb execute --sandbox process` and `mtpb execute --sandbox docker` (warm image), same workers.
Then the time to the first result: `mtpb execute` on the file's first 10 lines, from the command's
start until its results.jsonl holds a line (median of --first-tries), for each sandbox.
Every runner's pass count must equal the baseline's. Floors: each sandbox >= 0.8x the baseline's
programs/s; first result <= 0.5 s (process) and <= 1 s (docker). Exit status 1 when one is missed.
--numpy-pandas-only: a corpus of only the programs that import numpy or pandas, which the executor
forks from its helper with both imported, as the baseline forks every program (see docs/sandbox.md).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR_RATE = 0.8
FLOOR_FIRST = {"process": 0.5, "docker": 1.0}
FIRST_LINES = 10


# ---------------------------------------------------------------------------- the corpus

def _program(rng: random.Random, i: int) -> str:
    """One multi-turn program as the original sampler concatenates it: a few turns, a last expression."""
    a, b, k = rng.randint(2, 60), rng.randint(2, 9), rng.randint(3, 12)
    kind = i % 20
    if kind == 0:   # numpy, as in about one problem in twenty of the original release
        return (f"import numpy as np\n# create an array\narr = np.arange({a}).reshape(-1, 1)\n"
                f"# square it\nsq = arr ** 2\n# sum the multiples of {b}\nint(sq[sq % {b} == 0].sum())")
    if kind == 1:   # pandas
        return (f"import pandas as pd\n# make a frame\ndf = pd.DataFrame({{'x': range({a}), 'y': range({a}, 0, -1)}})\n"
                f"# filter it\nsub = df[df['x'] % {b} == 0]\n# total\nint(sub['y'].sum())")
    if kind < 8:
        return (f"# a list of numbers\nnums = [n * {b} % {a + 1} for n in range({a})]\n"
                f"# keep the even ones\nevens = [n for n in nums if n % 2 == 0]\n# their sum\nsum(evens[:{k}])")
    if kind < 13:
        return (f"# a word\nword = 'mtpb' * {k} + '{'xy' * b}'\n# count the letters\n"
                f"counts = {{c: word.count(c) for c in sorted(set(word))}}\n# the most common\n"
                f"max(counts, key=counts.get)")
    if kind < 17:
        return (f"def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
                f"# the {k + a % 20}th number\nresult = fib({k + a % 20})\nresult % {b * 1000 + 7}")
    return (f"# a dictionary\nd = {{str(i): i * i for i in range({k})}}\n# reverse it\n"
            f"r = {{v: k for k, v in d.items()}}\n# a key\nr[{(k - 1) ** 2}]")


def _gold(program: str):
    """The program's answer, computed here the original way (last expression printed)."""
    value = _run_original(program)
    return value.item() if hasattr(value, "item") else value


def write_corpus(path: Path, n: int, seed: int = 0, numpy_pandas_only: bool = False):
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            program = _program(rng, i % 2 if numpy_pandas_only else i)
            f.write(json.dumps({"id": str(1 + i % 115), "input": {"case": i % 5}, "gold_output": _gold(program),
                                "completions": program}) + "\n")


# ---------------------------------------------------------------------------- the bare baseline

def _rewrite(code: str) -> str:
    import ast
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.Expr) and not (isinstance(last.value, ast.Call) and
                                               getattr(last.value.func, "id", "").startswith("print")):
            last.value = ast.Call(func=ast.Name(id="print", ctx=ast.Load()), args=[last.value], keywords=[])
            ast.fix_missing_locations(last)
            return ast.unparse(tree)
    except Exception:
        pass
    return code


def _run_original(program: str):
    printed = [None]

    def recording_print(*args, **kwargs):
        printed[0] = args[0] if args else None
    exec(compile(_rewrite(program), "<program>", "exec"), {"__name__": "__main__", "print": recording_print})
    return printed[0]


def _fork_one(program: str) -> str:
    """One program in a forked child: its last printed value, as JSON, back over a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        try:
            value = _run_original(program)
            value = value.item() if hasattr(value, "item") else value
            data = json.dumps(value, default=repr)
        except BaseException as e:
            data = json.dumps({"error": type(e).__name__})
        os.write(write, data.encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def baseline(samples: Path, workers: int) -> int:
    """The whole bare command: read the file, one worker per core forking per program; prints passes."""
    import numpy  # noqa: F401  imported once, so every child has them for free
    import pandas  # noqa: F401
    records = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    pipes = []
    for w in range(workers):
        read, write = os.pipe()
        if os.fork() == 0:
            os.close(read)
            answers = [_fork_one(r["completions"]) for r in records[w::workers]]
            os.write(write, json.dumps(answers).encode())  # via a pipe: large, so read below until EOF
            os._exit(0)
        os.close(write)
        pipes.append(read)
    passed = 0
    for w, read in enumerate(pipes):
        with os.fdopen(read, "rb") as f:
            answers = json.loads(f.read())
        passed += sum(json.loads(a) == r["gold_output"] for a, r in zip(answers, records[w::workers]))
    for _ in pipes:
        os.wait()
    print(json.dumps({"passed": passed, "programs": len(records)}))
    return 0


# ---------------------------------------------------------------------------- the timed commands

def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _execute_cmd(samples: Path, out: Path, sandbox: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "mtpb", "execute", str(samples), "--out", str(out), "--sandbox", sandbox,
            "--workers", str(workers)]


def timed(name: str, cmd: list[str], out: Path | None) -> tuple[float, int]:
    """(seconds, passes) of one whole command."""
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}")
    if out is None:
        passed = json.loads(done.stdout.splitlines()[-1])["passed"]
    else:
        passed = sum(json.loads(line)["passed"] for line in (out / "results.jsonl").read_text().splitlines())
    return seconds, passed


def first_result(samples: Path, out: Path, sandbox: str, workers: int) -> float:
    """Seconds from the command's start until its results.jsonl holds a line."""
    shutil.rmtree(out, ignore_errors=True)
    results = out / "results.jsonl"
    start = time.perf_counter()
    proc = subprocess.Popen(_execute_cmd(samples, out, sandbox, workers), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
    while True:
        try:
            if results.stat().st_size:
                seconds = time.perf_counter() - start
                break
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"{sandbox}: wrote no result ({proc.returncode}): {proc.stderr.read()[-2000:]!r}")
        time.sleep(0.002)
    proc.communicate()
    return seconds


def docker_reason() -> str | None:
    sys.path.insert(0, str(ROOT))
    from mtpb.sandboxes.docker import unavailable_reason
    return unavailable_reason()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4200, help="programs in the generated samples file")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of whole commands")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="one per core by default")
    parser.add_argument("--first-tries", type=int, default=5, help="runs of the 10-line file per sandbox")
    parser.add_argument("--no-docker", action="store_true", help="skip the docker pool (its floors then fail)")
    parser.add_argument("--numpy-pandas-only", action="store_true", help="only programs importing numpy or pandas")
    parser.add_argument("--baseline", metavar="FILE", help=argparse.SUPPRESS)  # the baseline's own process
    args = parser.parse_args(argv)
    if args.baseline:
        return baseline(Path(args.baseline), args.workers)
    sandboxes = ["process"]
    reason = "--no-docker" if args.no_docker else docker_reason()
    if reason is None:
        sandboxes.append("docker")
    else:
        print(f"docker pool: not measured ({reason})")
    work = Path(tempfile.mkdtemp(prefix="mtpb-bench-fork-"))
    try:
        samples, first = work / "samples.jsonl", work / "first.jsonl"
        write_corpus(samples, args.n, numpy_pandas_only=args.numpy_pandas_only)
        first.write_text("".join(samples.read_text().splitlines(keepends=True)[:FIRST_LINES]))
        load = os.getloadavg()
        print(f"{os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at start; {args.workers} workers; "
              f"{args.n} programs; {args.rounds} rounds of whole commands")
        runners = {"bare fork baseline": ([sys.executable, __file__, "--baseline", str(samples),
                                           "--workers", str(args.workers)], None)}
        for box in sandboxes:
            runners[f"mtpb execute --sandbox {box}"] = (_execute_cmd(samples, work / box, box, args.workers), work / box)
        seconds, passes = {name: 0.0 for name in runners}, {}
        for r in range(args.rounds):
            order = list(runners) if r % 2 == 0 else list(runners)[::-1]
            for name in order:
                s, passed = timed(name, *runners[name])
                seconds[name] += s
                passes.setdefault(name, passed)
                print(f"  round {r + 1}: {name:<32} {s:7.2f} s  {args.n / s:7.1f} programs/s  ({passed} passed)",
                      flush=True)
        ok = True
        for name, passed in passes.items():
            if passed != passes["bare fork baseline"]:
                print(f"  {name}: {passed} passed, the baseline {passes['bare fork baseline']}: NOT THE SAME WORK")
                ok = False
        rates = {name: args.n * args.rounds / s for name, s in seconds.items()}
        print("programs/s over all rounds:")
        for name, rate in rates.items():
            print(f"  {name:<34} {rate:8.1f}")
        print("ratios to the bare fork baseline:")
        for box in sandboxes:
            ratio = rates[f"mtpb execute --sandbox {box}"] / rates["bare fork baseline"]
            ok &= ratio >= FLOOR_RATE
            print(f"  {box:<34} {ratio:8.2f}x   (floor {FLOOR_RATE}x: {'ok' if ratio >= FLOOR_RATE else 'BELOW'})")
        print(f"time to the first result (`mtpb execute` on {FIRST_LINES} lines, median of {args.first_tries}):")
        for box in sandboxes:
            tries = [first_result(first, work / f"first-{box}", box, args.workers) for _ in range(args.first_tries)]
            median = statistics.median(tries)
            ok &= median <= FLOOR_FIRST[box]
            print(f"  {box:<34} {median:8.2f} s  (min {min(tries):.2f}, max {max(tries):.2f}; floor "
                  f"{FLOOR_FIRST[box]} s: {'ok' if median <= FLOOR_FIRST[box] else 'ABOVE'})")
        if "docker" not in sandboxes:
            ok = False
        print(f"load at end: {os.getloadavg()[0]:.1f}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
