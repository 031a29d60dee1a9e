"""summary.json: the headline numbers of one run, computed by streaming its results.jsonl."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from mtpb import metrics
from mtpb.rundir import RunDir, read_jsonl


def summarize(results_path: Path, problems: dict) -> dict:
    statuses, malformed = Counter(), 0

    def outcomes():  # a generator: a run of any size is counted without holding its lines
        nonlocal malformed
        for _, r in read_jsonl(results_path):
            if r.get("malformed") or r.get("problem_id") is None:  # `mtpb execute`: a line it could not read
                malformed += 1
                continue
            statuses[r["status"]] += 1
            yield int(r["problem_id"]), int(r["test_index"]), r["passed"]

    cells = metrics.count_cells(outcomes())
    per_problem = metrics.per_problem(cells)

    def breakdown(key):
        label = lambda pid: str(key(problems[pid])) if problems.get(pid) else "unknown"  # noqa: E731
        return {g: round(rate, 4) for g, rate in metrics.breakdown(per_problem, label).items()}

    return {"pass_rate": round(metrics.pass_rate(per_problem), 4) if per_problem else None,
            "n_problems": len(per_problem), "n_programs": sum(n for n, _ in cells.values()),
            "n_passed": sum(c for _, c in cells.values()),
            "pass_at_k": {f"pass@{k}": v for k, v in metrics.pass_at_ks(cells).items()},
            "statuses": dict(statuses), "n_malformed": malformed,
            "per_problem": {str(pid): {"passed": c, "programs": n} for pid, (n, c) in sorted(per_problem.items())},
            "breakdowns": {"category": breakdown(lambda p: p.category),
                           "turns": breakdown(lambda p: len(p.turns)),
                           "problem": {str(pid): round(metrics.problem_rate(n, c), 4)
                                       for pid, (n, c) in sorted(per_problem.items())}}}


def write_summary(run: RunDir, problems: dict) -> dict:
    summary = summarize(run.results, problems)
    run.write_summary(summary)
    return summary
