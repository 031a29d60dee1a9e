"""mtpb diagnose: programs made to break at a known turn, in the real process sandbox."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mtpb.diagnose import DIAGNOSIS_FILE, diagnose, diagnosed_results
from mtpb.problems import Problem, TestCase as Case, Turn
from mtpb.runner import RunConfig, Runner

# problem id -> the code of turns 1..5; every test expects 5
SCRIPTS = {
    1: ["a = 1", "a = a + 1", "a = b + 1", "a = a + 1", "print(a + 1)"],            # NameError in turn 3
    2: ["a = 1", "a = a + 1", "a = a + 1", "a = a + 1", "print(a + 2)"],            # wrong value at the end
    3: ["a = 1", "while True:\n    pass", "a = a + 1", "a = a + 1", "print(a + 1)"],  # timeout in turn 2
    4: ["passing = 1", "passing += 1", "passing += 1", "passing += 1", "print(passing + 1)"],  # passes
}


class Scripted:
    def generate(self, requests, params):
        return [SCRIPTS[r.problem_id][r.turn_index] + "\n" for r in requests]


class Counting:
    """The real sandbox, keeping what it was asked to run."""

    def __init__(self, box):
        self.box, self.programs = box, []

    def run(self, programs):
        self.programs += programs
        return self.box.run(programs)


def problem(pid):
    turns = tuple(Turn(f"Step {i}.") for i in range(1, 6))
    return Problem(pid, f"p{pid}", "math", "d", 32, turns, tuple(Case({}, 5) for _ in range(5)))


@pytest.fixture(scope="module")
def quick_sandbox():
    from mtpb.sandboxes.base import Limits
    from mtpb.sandboxes.process import ProcessSandbox
    box = ProcessSandbox(workers=2, limits=Limits(timeout=1))
    yield box
    box.close()


def test_the_turn_and_kind_of_each_break_and_passed_programs_never_rerun(tmp_path, quick_sandbox):
    run = tmp_path / "run"
    Runner(RunConfig(backend="scripted"), run, Scripted(), quick_sandbox, [problem(i) for i in SCRIPTS]).run()
    box = Counting(quick_sandbox)
    facts = diagnose(run, box)
    assert facts["diagnosed"] == facts["failed"] == 15
    assert facts["programs_run"] == len(box.programs) == 15 * 4      # the last cut is the program itself
    assert not any("passing" in p for p in box.programs)
    broke = {(r["problem_id"], r["test_index"]): (r.get("broke_at_turn"), r.get("broke_how"))
             for r in diagnosed_results(run)}
    for test in range(5):
        assert broke[(1, test)] == (3, "NameError")
        assert broke[(2, test)] == (5, "wrong value")
        assert broke[(3, test)] == (2, "timeout")
        assert broke[(4, test)] == (None, None)
    again = Counting(quick_sandbox)
    assert diagnose(run, again)["diagnosed"] == 0 and again.programs == []   # resumed: nothing twice
    assert len((run / DIAGNOSIS_FILE).read_text().splitlines()) == 15


def test_cli_on_an_old_run_directory(tmp_path):
    run = tmp_path / "run"
    made = subprocess.run([sys.executable, "-m", "mtpb", "run", "--backend", "codegen", "--ids", "1",
                           "--max-gen-length", "8", "--sandbox", "process", "--out", str(run)], capture_output=True)
    assert made.returncode == 0
    done = subprocess.run([sys.executable, "-m", "mtpb", "diagnose", str(run), "--sandbox", "process"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in (run / DIAGNOSIS_FILE).read_text().splitlines()]
    results = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    assert len(lines) == sum(r["status"] != "passed" for r in results) > 0
    assert all(1 <= d["broke_at_turn"] <= 4 and d["broke_how"] for d in lines)
    missing = subprocess.run([sys.executable, "-m", "mtpb", "diagnose", str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 2 and "no run.json" in missing.stderr
