"""How long `mtpb report` takes at full scale, and how big the HTML gets.

Generates synthetic run directories in the runner's format (default: 10 runs x 115 problems x 5 tests
x 40 samples = 230,000 programs, with programs and completions of realistic length) and 115 problem
files, then times `write_report` over them and prints seconds and MB. Generation is not timed.

    python bench/report_scale.py                  # the issue's scale; target: < 30 s, < 10 MB
    python bench/report_scale.py --samples 5      # quicker
    python bench/report_scale.py --keep /tmp/runs # keep the generated runs to open the report
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from mtpb.rundir import MANIFEST_FILE, RESULTS_FILE, SAMPLES_FILE

CATEGORIES = ("string", "math", "array", "algorithm", "data science", "dict", "class")
# (model, parameters, mode): the CodeGen sizes, multi-turn and single-turn.
MODELS = [(f"codegen-{size}-mono", params, mode)
          for size, params in (("350M", 350_000_000), ("2B", 2_700_000_000), ("6B", 6_100_000_000),
                               ("16B", 16_100_000_000), ("1B", 1_000_000_000))
          for mode in ("multi", "single")]
FAILURES = ("failed", "failed", "failed", "error", "error", "timeout")
WORDS = ("list", "value", "string", "number", "index", "sum", "count", "sorted", "element", "key",
         "dictionary", "average", "maximum", "variable", "result", "print", "array", "length")


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def code(rng: random.Random, lines: int) -> str:
    return "\n".join(f"{rng.choice(WORDS)}_{i} = [{', '.join(str(rng.randint(0, 99)) for _ in range(6))}]"
                     for i in range(lines))


def write_problems(folder: Path, n_problems: int, rng: random.Random) -> dict[int, int]:
    """Valid problem files; returns problem id -> number of turns."""
    folder.mkdir(parents=True)
    turns_of = {}
    for pid in range(1, n_problems + 1):
        n_turns = rng.randint(3, 8)
        turns_of[pid] = n_turns
        turns = "".join(f"  - prompt: '{sentence(rng, 12)} Use {{x}}.'\n    solution: y{t} = {{x}}\n"
                        for t in range(n_turns))
        tests = "".join(f"  - inputs: {{x: {i}}}\n    output: {i}\n" for i in range(5))
        (folder / f"{pid:03d}-problem-{pid}.yaml").write_text(
            f"id: {pid}\nname: Synthetic problem {pid}\ncategory: {CATEGORIES[pid % len(CATEGORIES)]}\n"
            f"description: {sentence(rng, 10)}\nturns:\n{turns}tests:\n{tests}", encoding="utf-8")
    return turns_of


def write_run(folder: Path, index: int, turns_of: dict, tests: int, samples: int, rng: random.Random):
    model, params, mode = MODELS[index % len(MODELS)]
    folder.mkdir(parents=True)
    (folder / MANIFEST_FILE).write_text(json.dumps({
        "harness_version": "0.1.0", "problems_digest": "0123456789abcdef", "backend": "codegen",
        "model": model, "parameters": params, "mode": mode, "n": samples, "temperature": 0.2,
        "top_p": 0.95, "seed": index, "sandbox": "docker", "scoring": "mtpb",
        "started": "2024-01-01T00:00:00Z", "finished": "2024-01-01T05:00:00Z"}))
    skill = 0.15 + 0.1 * (index % 5) + (0.1 if mode == "multi" else 0.0)
    with open(folder / SAMPLES_FILE, "w", encoding="utf-8") as s, \
            open(folder / RESULTS_FILE, "w", encoding="utf-8") as r:
        for pid, n_turns in turns_of.items():
            p_pass = min(max(skill + rng.uniform(-0.4, 0.4), 0.0), 1.0)
            for t in range(tests):
                prompts = [sentence(rng, 12) for _ in range(n_turns)]
                if mode == "single":
                    prompts = [" ".join(prompts)]
                for k in range(samples):
                    completions = [code(rng, rng.randint(2, 5)) for _ in prompts]
                    turns = [{"prompt": p, "raw": c + "\n\n\n# extra", "completion": c}
                             for p, c in zip(prompts, completions)]
                    program = "# Import libraries.\n\nimport numpy as np\n\n" + "".join(
                        f"# {p}\n{c}\n\n" for p, c in zip(prompts, completions))
                    s.write(json.dumps({"problem_id": pid, "test_index": t, "sample_index": k,
                                        "turns": turns, "program": program}) + "\n")
                    passed = rng.random() < p_pass
                    status = "passed" if passed else rng.choice(FAILURES)
                    r.write(json.dumps({
                        "problem_id": pid, "test_index": t, "sample_index": k, "status": status,
                        "passed": passed, "printed": repr(list(range(rng.randint(0, 12)))),
                        "expected": repr(list(range(8))),
                        "error": "Traceback (most recent call last):\nNameError: name 'x' is not defined"
                        if status == "error" else None,
                        "seconds": round(rng.uniform(0.01, 0.5), 3)}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--problems", type=int, default=115)
    parser.add_argument("--tests", type=int, default=5)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--keep", help="write the runs and the report here and keep them")
    args = parser.parse_args()

    from mtpb.report import write_report

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mtpb-report-scale-"))
    try:
        rng = random.Random(0)
        start = time.perf_counter()
        turns_of = write_problems(root / "problems", args.problems, rng)
        dirs = []
        for i in range(args.runs):
            write_run(root / f"run{i:02d}", i, turns_of, args.tests, args.samples, rng)
            dirs.append(str(root / f"run{i:02d}"))
        on_disk = sum(f.stat().st_size for d in dirs for f in Path(d).iterdir())
        programs = args.runs * args.problems * args.tests * args.samples
        print(f"generated {args.runs} runs, {programs:,} programs, {on_disk / 1e6:.0f} MB of JSONL "
              f"in {time.perf_counter() - start:.1f} s")

        facts = write_report(dirs, str(root / "report.html"), [str(root / "problems")])
        where = facts["path"] if args.keep else "removed after; --keep DIR keeps it"
        print(f"report: {facts['seconds']:.1f} s, {facts['bytes'] / 1e6:.2f} MB, "
              f"{len(facts['warnings'])} warning(s) ({where})")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
