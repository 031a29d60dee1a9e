"""`mtpb problems validate --execute`: every reference program must print its test's output."""
from __future__ import annotations

from mtpb import prompts
from mtpb.problems import Problem
from mtpb.scoring import verdict


def reference_program(problem: Problem, test_index: int) -> tuple[str, list[str]]:
    """The multi-turn program the reference backend produces, and any turn truncation would cut."""
    test = problem.tests[test_index]
    program, cut = prompts.PREFIX, []
    for i, (prompt, solution) in enumerate(zip(problem.prompts(test), problem.solutions(test)), start=1):
        kept = prompts.truncate(solution)
        if kept != solution:
            cut.append(f"{problem.path}: turn {i}'s solution is cut by the MTPB truncation rules "
                       f"(a column-0 '#', quotes, a second top-level print/def or two blank lines) "
                       f"after {kept[-40:]!r}: restructure it")
        program += prompts.wrap_prompt(prompt) + kept + "\n\n"
    return program, cut


def execute_references(problems: list[Problem], sandbox) -> dict:
    failures, unexecutable, jobs = [], [], []
    for problem in problems:
        if any(t.solution is None for t in problem.turns):
            unexecutable.append(problem.id)
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
    return {"programs": len(jobs), "passed": passed, "failures": failures, "unexecutable": unexecutable}
