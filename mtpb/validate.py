"""`mtpb problems validate --execute`: every reference program must print its test's output.

Also what makes a problem set impossible to check or to pass: turns without a reference solution
(files imported from the original release have none) and data files that a program reads but that no
sandbox provides (programs run in an empty folder).
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from mtpb.importer import is_imported
from mtpb.problems import Problem
from mtpb.prompts import MULTI, Conversation
from mtpb.scoring import check_verdict, verdict

# A quoted file name with a data file's extension, as in read_csv('./datasets/melb_data.csv').
DATA_FILE = re.compile(r"""(["'])([\w./~-]*\.(?:csv|tsv|txt|json|jsonl|xlsx?|parquet|feather|pkl|pickle"""
                       r"""|npy|npz|h5|hdf5|db|sqlite|zip|gz))\1""", re.IGNORECASE)
READS = re.compile(r"\b(?:read|load|open)", re.IGNORECASE)
WRITES = re.compile(r"\b(?:write|save|dump)|\.to_\w+\(", re.IGNORECASE)


def data_files(problem: Problem) -> list[str]:
    """Files a turn reads (its prompt or solution names the file and says read, load or open) that no
    turn writes: the program needs them from outside, and no sandbox has them."""
    read, written = [], set()
    for test in problem.tests:
        solutions = problem.solutions(test) or [""] * len(problem.turns)
        for text in map("\n".join, zip(problem.prompts(test), solutions)):
            names = [m.group(2) for m in DATA_FILE.finditer(text)]
            if WRITES.search(text):
                written.update(names)
            elif READS.search(text):
                read += [name for name in names if name not in read]
    return [name for name in read if name not in written]


def data_file_warnings(problems: list[Problem]) -> list[str]:
    warnings = []
    for problem in problems:
        for name in data_files(problem):
            if is_imported(problem.path):
                why = ("which the original MTPB release does not ship and no sandbox provides: "
                       "its programs cannot pass as released")
            else:
                why = ("which no sandbox provides (programs run in an empty folder): "
                       "build the data in a turn instead")
            warnings.append(f"{problem.path}: problem {problem.id} reads the file {name!r}, {why}")
    return warnings


def missing_solutions(problems: list[Problem]) -> list[str]:
    """Why some reference programs cannot be built: one line per folder imported from the original
    release, one per other file naming its turns without a solution."""
    imported, errors = defaultdict(list), []
    for problem in problems:
        missing = [i for i, t in enumerate(problem.turns, start=1) if t.solution is None]
        if not missing:
            continue
        if is_imported(problem.path):
            imported[Path(problem.path).parent].append(problem.id)
            continue
        turns = f"turn {missing[0]} has" if len(missing) == 1 else f"turns {', '.join(map(str, missing))} have"
        errors.append(f"{problem.path}: {turns} no solution: give every turn a `solution` "
                      "(the solutions joined are the reference program that must print each test's output)")
    return [f"{folder}: imported from the original MTPB release ({len(ids)} problem set(s)): it has no reference "
            f"solutions, nothing to execute; validate without --execute checks the files: "
            f"mtpb problems validate {folder}" for folder, ids in imported.items()] + errors


def reference_program(problem: Problem, test_index: int) -> tuple[str, list[str]]:
    """The multi-turn program the reference backend produces, and any turn truncation would cut."""
    test = problem.tests[test_index]
    talk, cut = Conversation(MULTI, problem.prompts(test), problem.solutions(test)), []
    for i, solution in enumerate(talk.solutions, start=1):
        kept = talk.add(solution)   # the reference backend's reply is the solution itself
        if kept != solution:
            cut.append(f"{problem.path}: turn {i}'s solution is cut by the MTPB truncation rules "
                       f"(a column-0 '#', quotes, a second top-level print/def or two blank lines) "
                       f"after {kept[-40:]!r}: restructure it")
    return talk.program, cut


def execute_references(problems: list[Problem], sandbox) -> dict:
    """Run the reference program of every test of the problems that have one (see missing_solutions)."""
    failures, unexecutable, jobs = [], [], []
    checked = [p for p in problems if p.check is not None and p.turns[0].solution is not None]
    for problem in problems:
        if any(t.solution is None for t in problem.turns):
            unexecutable.append(problem.id)
            continue
        if problem.check is not None:
            continue
        for index in range(len(problem.tests)):
            program, cut = reference_program(problem, index)
            failures += cut if index == 0 else []
            jobs.append((problem, index, program))
    replies = sandbox.run([program for _, _, program in jobs])
    passed = 0
    for (problem, index, _), reply in zip(jobs, replies):
        expected = problem.tests[index].output
        v = verdict(reply, expected, "mtpb")
        if v.passed:
            passed += 1
            continue
        detail = v.error or ""
        failures.append(f"{problem.path}: test {index + 1}: {v.status}: printed {v.printed}, expected "
                        f"{expected!r}{'; ' + detail if detail else ''}")
    if checked:  # the check kind: the canonical solution completes the prompt, judged by the test code
        from mtpb.humaneval import program
        replies = sandbox.run([program(p, p.turns[0].solution) for p in checked], check=True)
        for problem, reply in zip(checked, replies):
            v, result = check_verdict(reply)
            passed += v.passed
            if not v.passed:
                failures.append(f"{problem.path}: {problem.check.task_id}: {v.status}: {result}")
    return {"programs": len(jobs) + len(checked), "passed": passed, "failures": failures,
            "unexecutable": unexecutable}
