"""Where a sandboxed program's time goes: the profile behind the executor's design, on one machine, one run.

    python bench/exec_profile.py [--n 1000] [--compare DIR]

1. The fork itself: fork + exit + wait of an interpreter with nothing, numpy, or numpy and pandas
   imported (what forking a program costs before it runs a line).
2. The executor (sandbox/executor.py of this checkout, and of DIR with --compare, e.g. an older
   version from `git show REV:sandbox/executor.py`), as one process on the host, no sandbox around
   it, fed the corpus of bench/exec_bare_fork.py one request at a time: wall ms per program, and
   the CPU (user, system) and minor page faults of the executor and everything it forked, per
   program, for the programs that name neither numpy nor pandas and for those that do. The rounds
   alternate between the executors so that load from elsewhere hits each alike.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from exec_bare_fork import _gold, _program  # noqa: E402  the same corpus

PYTHON = os.environ.get("MTPB_SANDBOX_PYTHON", "/usr/bin/python3")
FORK = """
import gc, os, sys, time
for name in sys.argv[1:]:
    __import__(name)
gc.freeze()
def once():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
for _ in range(50):
    once()
start = time.perf_counter()
for _ in range(500):
    once()
print((time.perf_counter() - start) / 500 * 1000)
"""


def fork_costs():
    print("fork + exit + wait of an interpreter (ms):")
    for modules in ([], ["numpy"], ["numpy", "pandas"]):
        ms = float(subprocess.run([PYTHON, "-c", FORK, *modules], capture_output=True, text=True,
                                  check=True).stdout)
        print(f"  {' + '.join(modules) or 'nothing imported':<28} {ms:6.2f}")


def corpus(n: int) -> dict[str, list[str]]:
    rng = random.Random(0)
    programs = [_program(rng, i) for i in range(n)]
    for p in programs[:40]:
        _gold(p)  # the corpus is checked to run, as the bench's is
    heavy = [p for p in programs if "numpy" in p or "pandas" in p]
    return {"light": [p for p in programs if p not in heavy], "numpy/pandas": heavy}


def profile(folder: Path, programs: list[str]) -> dict:
    """The executor of `folder` on `programs`, one at a time: wall, CPU and faults per program."""
    tmp = tempfile.mkdtemp(prefix="mtpb-bench-profile-")
    try:
        proc = subprocess.Popen([PYTHON, "-I", str(folder / "executor.py"), json.dumps({"tmp_root": tmp})],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(proc.stdout.readline())["ready"]
        # the first program of each kind pays for its imports: warm both up before the clock starts
        for warm in ("print(1)", "import numpy, pandas\nprint(1)"):
            proc.stdin.write(json.dumps({"id": 0, "program": warm, "timeout": 10}) + "\n")
            proc.stdin.flush()
            proc.stdout.readline()
        before = _usage(proc.pid)
        start = time.perf_counter()
        for i, program in enumerate(programs, 1):
            proc.stdin.write(json.dumps({"id": i, "program": program, "timeout": 10}) + "\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            assert reply.get("exit_code") == 0, reply
        wall = time.perf_counter() - start
        proc.stdin.close()
        _, _, usage = os.wait4(proc.pid, 0)   # the executor's own and that of all it waited for
        n = len(programs)
        return {"wall": wall / n * 1000, "user": (usage.ru_utime - before[0]) / n * 1000,
                "sys": (usage.ru_stime - before[1]) / n * 1000, "faults": (usage.ru_minflt - before[2]) / n}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _usage(pid: int) -> tuple[float, float, int]:
    """CPU seconds (user, system) and minor faults so far of `pid`, what it waited for, and its live
    children (the numpy helper), from /proc: at the end wait4 counts all of them in one."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = ((int(fields[11]) + int(fields[13])) / tick, (int(fields[12]) + int(fields[14])) / tick,
           int(fields[7]) + int(fields[8]))
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return tuple(map(sum, zip(own, *(_usage(int(child)) for child in children))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="programs in the corpus")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="a folder with another executor.py and its modules")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; interpreter {PYTHON}")
    fork_costs()
    executors = {"this checkout": ROOT / "sandbox"}
    if args.compare:
        executors[str(args.compare)] = args.compare
    kinds = corpus(args.n)
    totals: dict = {}
    for r in range(args.rounds):
        for name in (executors if r % 2 == 0 else list(executors)[::-1]):
            for kind, programs in kinds.items():
                got = profile(executors[name], programs)
                for key, value in got.items():
                    totals.setdefault((name, kind), {}).setdefault(key, []).append(value)
    print(f"per program, {args.rounds} rounds (mean), one executor, one program at a time:")
    print(f"  {'executor':<30} {'programs':<13} {'n':>5} {'wall ms':>8} {'user ms':>8} {'sys ms':>8} {'faults':>7}")
    for (name, kind), got in totals.items():
        mean = {k: sum(v) / len(v) for k, v in got.items()}
        print(f"  {name[-30:]:<30} {kind:<13} {len(kinds[kind]):5d} {mean['wall']:8.2f} {mean['user']:8.2f} "
              f"{mean['sys']:8.2f} {mean['faults']:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
