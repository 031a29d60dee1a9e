"""The metrics core on cells computed by hand: pass rate, pass@k, breakdowns, difficulty, CIs."""
from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest

from mtpb import metrics
from mtpb.metrics import (bootstrap_ci, breakdown, count_cells, difficulty_of, ks_for, pass_at_k, pass_at_ks,
                          pass_rate, per_problem, problem_rate)


def test_pass_at_k_matches_the_combinatorial_form():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (40, 0, 10), (40, 40, 1), (5, 2, 5), (200, 13, 100)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    with pytest.raises(ValueError, match="pass@5 needs at least 5 samples"):
        pass_at_k(3, 1, 5)


def test_pass_rate_is_the_mean_over_problems():
    assert pass_rate({1: (5, 5), 2: (5, 0), 3: (10, 5)}) == pytest.approx(50.0)
    # a problem counts once whatever its number of programs: not 15 / 40 = 37.5
    assert pass_rate({1: (10, 10), 2: (30, 5)}) == pytest.approx((100.0 + 100.0 / 6) / 2)
    assert math.isnan(pass_rate({}))
    assert problem_rate(8, 2) == 25.0


def test_cells_from_programs():
    outcomes = [(1, 0, True), (1, 0, True), (1, 1, False), (1, 1, True), (1, 1, False), (2, 0, 0)]
    cells = count_cells(outcomes)
    assert cells == {(1, 0): (2, 2), (1, 1): (3, 1), (2, 0): (1, 0)}
    assert per_problem(cells) == {1: (5, 3), 2: (1, 0)}


def test_pass_at_k_over_cells_differs_from_pass_rate_when_n_differs():
    # problem 1: test 0 passes 2 of 2, test 1 passes 0 of 8 -> pass rate 2/10 = 20%, pass@1 (1 + 0) / 2 = 50%
    # problem 2: one test, 1 of 4 -> 25% either way. Only k = 1: the smallest cell has n = 2.
    cells = {(1, 0): (2, 2), (1, 1): (8, 0), (2, 0): (4, 1)}
    assert pass_rate(per_problem(cells)) == pytest.approx((20.0 + 25.0) / 2)
    assert pass_at_ks(cells) == pytest.approx({1: (50.0 + 25.0) / 2})


def test_pass_at_ks_only_where_every_cell_allows_k():
    # n = 5 everywhere: k in (1, 5). pass@5 of a cell is 1 if any of its 5 passed.
    cells = {(1, 0): (5, 1), (1, 1): (5, 0), (2, 0): (5, 5)}
    at = pass_at_ks(cells)
    assert list(at) == [1, 5]
    assert at[1] == pytest.approx(((0.2 + 0.0) / 2 + 1.0) / 2 * 100)
    assert at[5] == pytest.approx(((1.0 + 0.0) / 2 + 1.0) / 2 * 100)
    assert pass_at_ks({}) == {}
    assert ks_for(4) == [1] and ks_for(10) == [1, 5, 10] and ks_for(200) == [1, 5, 10, 100]


def test_breakdown_is_the_pass_rate_within_each_group():
    problems = {1: (10, 10), 2: (10, 0), 3: (10, 5)}
    groups = {1: "math", 2: "math", 3: "string"}
    assert breakdown(problems, groups.get) == pytest.approx({"math": 50.0, "string": 50.0})
    assert list(breakdown(problems, lambda pid: str(4 - pid))) == ["1", "2", "3"]  # sorted groups


def test_difficulty_levels():
    assert [difficulty_of(x) for x in (100, 70, 69.9, 30, 29.9, 0.1, 0)] == [
        "easy", "easy", "medium", "medium", "hard", "hard", "unsolved"]
    assert [name for name, _ in metrics.DIFFICULTY_BINS] == ["easy", "medium", "hard", "unsolved"]


def test_bootstrap_ci_resamples_problems():
    assert bootstrap_ci([42.0] * 7) == pytest.approx((42.0, 42.0))
    values = np.array([0.0, 100.0, 50.0, 25.0])
    rng = np.random.default_rng(metrics.BOOTSTRAP_SEED)
    idx = rng.integers(0, 4, size=(metrics.BOOTSTRAP_SAMPLES, 4))
    means = values[idx].mean(axis=1)
    assert bootstrap_ci(values) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    low, high = bootstrap_ci(values)
    assert 0 <= low < values.mean() < high <= 100
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_importing_is_light():
    import subprocess
    import sys
    code = "import sys, mtpb.metrics; bad = [m for m in ('numpy', 'pandas') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
