"""The paper's metrics over cells: pass rate, pass@k, breakdowns, difficulty levels, bootstrap CIs.

A cell is one (problem_id, test_index) with its counts (n programs, c passed). The pass rate is, per
problem, the share of its programs that pass, and overall the mean over problems, in percent, so a
problem counts once whatever its number of programs; every breakdown is the same mean within a group.
summary.json (mtpb.summary) and the report's frames (mtpb.aggregate) both compute from here.

numpy is imported inside the functions that need it, so importing this module is cheap.
"""
from __future__ import annotations

import functools
import math
from collections import defaultdict
from typing import Callable, Iterable, Mapping

Counts = tuple[int, int]  # (programs, passed)

# Difficulty levels from the mean pass rate of a problem over the compared runs, in the spirit of the
# CodeGen paper's difficulty analysis: (name, lowest mean pass rate in percent), checked in order.
# "unsolved" is apart from "hard" because a problem no run ever solves says nothing about the others.
# Reports render their legend from this table, so the levels are stated in one place.
DIFFICULTY_BINS = (("easy", 70.0), ("medium", 30.0), ("hard", 1e-9), ("unsolved", -math.inf))
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same runs give the same report


def count_cells(outcomes: Iterable[tuple[int, int, bool]]) -> dict[tuple[int, int], Counts]:
    """(problem_id, test_index, passed) of each program -> {(problem_id, test_index): (n, c)}."""
    cells: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for pid, test, passed in outcomes:
        counts = cells[(pid, test)]
        counts[0] += 1
        counts[1] += bool(passed)
    return {key: (n, c) for key, (n, c) in cells.items()}


def per_problem(cells: Mapping[tuple[int, int], Counts]) -> dict[int, Counts]:
    """The cells of each problem summed: {problem_id: (n, c)}."""
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for (pid, _), (n, c) in cells.items():
        totals[pid][0] += n
        totals[pid][1] += c
    return {pid: (n, c) for pid, (n, c) in totals.items()}


def problem_rate(n, c):
    """One problem's pass rate in percent (also elementwise, on arrays of counts)."""
    return 100.0 * c / n


def pass_rate(problems: Mapping[int, Counts]) -> float:
    """The paper's metric: mean over problems of (passed programs / programs), in percent."""
    if not problems:
        return math.nan
    return 100.0 * sum(c / n for n, c in problems.values()) / len(problems)


@functools.lru_cache(maxsize=None)  # runs repeat few distinct (n, c, k): n = 200 makes this the slow part
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), stable product form."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):   # plain floats: no numpy import at the end of every command
        product *= 1.0 - k / i
    return 1.0 - product


def ks_for(n: int) -> list[int]:
    """The k values reported for n samples: 1, 5, 10, 100 where n allows."""
    return [k for k in (1, 5, 10, 100) if k <= n]


def pass_at_ks(cells: Mapping[tuple[int, int], Counts]) -> dict[int, float]:
    """{k: pass@k in percent}: per cell, then the mean over a problem's tests, then over problems.
    Only the k that every cell's n allows, so no cell is left out of a mean."""
    n_min = min((n for n, _ in cells.values()), default=0)
    out = {}
    for k in ks_for(n_min):
        by_problem = defaultdict(list)
        for (pid, _), (n, c) in cells.items():
            by_problem[pid].append(pass_at_k(n, c, k))
        out[k] = 100.0 * sum(sum(v) / len(v) for v in by_problem.values()) / len(by_problem)
    return out


def breakdown(problems: Mapping[int, Counts], group_of: Callable[[int], object]) -> dict[object, float]:
    """Pass rate within each group of problems: {group_of(problem_id): pass rate}, groups sorted."""
    groups: dict[object, dict[int, Counts]] = defaultdict(dict)
    for pid, counts in problems.items():
        groups[group_of(pid)][pid] = counts
    return {group: pass_rate(members) for group, members in sorted(groups.items())}


def difficulty_of(mean_rate: float) -> str:
    for name, lowest in DIFFICULTY_BINS:
        if mean_rate >= lowest:
            return name
    return DIFFICULTY_BINS[-1][0]


def bootstrap_ci(values, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean, resampling problems with replacement."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return (float(low), float(high))
