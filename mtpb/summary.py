"""summary.json: the headline numbers of one run, computed by streaming its results.jsonl."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from mtpb.rundir import read_jsonl, write_json_atomic
from mtpb.scoring import ks_for, pass_at_k, pass_rate


def summarize(results_path: Path, problems: dict) -> dict:
    per_test = defaultdict(lambda: [0, 0])  # (problem, test) -> [programs, passed]
    statuses = Counter()
    malformed = 0
    for _, r in read_jsonl(results_path):
        if r.get("malformed") or r.get("problem_id") is None:  # `mtpb execute`: a line it could not read
            malformed += 1
            continue
        counts = per_test[(int(r["problem_id"]), int(r["test_index"]))]
        counts[0] += 1
        counts[1] += bool(r["passed"])
        statuses[r["status"]] += 1
    per_problem = defaultdict(lambda: [0, 0])
    for (pid, _), (n, c) in per_test.items():
        per_problem[pid][0] += n
        per_problem[pid][1] += c
    n_min = min((n for n, _ in per_test.values()), default=0)
    pass_k = {}
    for k in ks_for(n_min):
        by_problem = defaultdict(list)
        for (pid, _), (n, c) in per_test.items():
            by_problem[pid].append(pass_at_k(n, c, k))
        pass_k[f"pass@{k}"] = 100.0 * sum(sum(v) / len(v) for v in by_problem.values()) / len(by_problem)

    def breakdown(key):
        groups = defaultdict(dict)
        for pid, (n, c) in per_problem.items():
            problem = problems.get(pid)
            groups[str(key(problem)) if problem else "unknown"][pid] = (n, c)
        return {g: round(pass_rate(v), 4) for g, v in sorted(groups.items())}

    return {"pass_rate": round(pass_rate(per_problem), 4) if per_problem else None,
            "n_problems": len(per_problem), "n_programs": sum(n for n, _ in per_test.values()),
            "n_passed": sum(c for _, c in per_test.values()), "pass_at_k": pass_k,
            "statuses": dict(statuses), "n_malformed": malformed,
            "per_problem": {str(pid): {"passed": c, "programs": n}
                            for pid, (n, c) in sorted(per_problem.items())},
            "breakdowns": {"category": breakdown(lambda p: p.category),
                           "turns": breakdown(lambda p: len(p.turns)),
                           "problem": {str(pid): round(100.0 * c / n, 4) for pid, (n, c) in sorted(per_problem.items())}}}


def write_summary(run_dir: Path, problems: dict) -> dict:
    summary = summarize(Path(run_dir) / "results.jsonl", problems)
    write_json_atomic(Path(run_dir) / "summary.json", summary)
    return summary
