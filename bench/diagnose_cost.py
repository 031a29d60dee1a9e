"""`mtpb diagnose` cost as a share of a run's execution, both measured here in one process sandbox.

    python bench/diagnose_cost.py RUN [--workers 2] [--timeout 10]

Executes every program of RUN's samples.jsonl again, in batches of 64 as `mtpb run` does (the run's
execution time), then diagnoses a copy of RUN from scratch (cut programs of the failed ones only),
and prints both wall times and their ratio. RUN itself is not changed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from a checkout without installing


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    from mtpb.diagnose import DIAGNOSIS_FILE, diagnose
    from mtpb.rundir import chunks
    from mtpb.sandboxes.base import Limits
    from mtpb.sandboxes.process import ProcessSandbox

    programs = [json.loads(line)["program"] for line in (args.run / "samples.jsonl").open() if line.strip()]
    box = ProcessSandbox(workers=args.workers, limits=Limits(timeout=args.timeout))
    try:
        box.run(programs[:2])   # warm the executors
        start = time.perf_counter()
        for batch in chunks(programs, 64):
            box.run(batch)
        execute = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "run"
            shutil.copytree(args.run, copy)
            (copy / DIAGNOSIS_FILE).unlink(missing_ok=True)
            start = time.perf_counter()
            facts = diagnose(copy, box)
            cost = time.perf_counter() - start
    finally:
        box.close()
    print(f"{args.run}: {len(programs)} programs executed in {execute:.2f} s; diagnose: {facts['diagnosed']} failed "
          f"programs, {facts['programs_run']} cut programs in {cost:.2f} s = {cost / execute:.2f}x the execution")


if __name__ == "__main__":
    main()
