"""Peak memory of the runner as a run grows: samples and results stream to disk, not into lists.

Runs the reference backend through the process sandbox over the same problems with a small and a
large --n, each in a fresh process, and prints the runner's peak RSS (VmHWM) for both and the ratio.
    python bench/runner_memory.py [--ids 1-20] [--small 2] [--large 40]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, sys
from pathlib import Path
from mtpb.backends import create_backend
from mtpb.problems import load_problems, parse_ids, select
from mtpb.runner import RunConfig, Runner
from mtpb.sandboxes import open_sandbox
ids, n, out = parse_ids(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
problems = select(load_problems(), ids)
box = open_sandbox("process", workers=2, warn=lambda m: None)
summary = Runner(RunConfig(backend="reference", n=n), Path(out), create_backend("reference"), box, problems).run()
box.close()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"programs": summary["n_programs"], "pass_rate": summary["pass_rate"], "peak_kib": int(hwm)}))
"""


def measure(ids: str, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, ids, str(n), f"{tmp}/run"], check=True,
                             capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        result["seconds"] = time.perf_counter() - start
        return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", default="1-20")
    ap.add_argument("--small", type=int, default=2)
    ap.add_argument("--large", type=int, default=40)
    args = ap.parse_args()
    small, large = measure(args.ids, args.small), measure(args.ids, args.large)
    for label, r in (("small", small), ("large", large)):
        print(f"n={args.small if label == 'small' else args.large:<4} programs {r['programs']:>6}  "
              f"peak RSS {r['peak_kib'] / 1024:7.1f} MiB  {r['programs'] / r['seconds']:7.1f} programs/s  "
              f"pass rate {r['pass_rate']:.1f}%")
    print(f"programs x{large['programs'] / small['programs']:.0f}, peak memory x{large['peak_kib'] / small['peak_kib']:.2f}")


if __name__ == "__main__":
    main()
