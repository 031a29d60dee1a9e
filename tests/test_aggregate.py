"""Aggregation numbers against the hand-computed fixture in tests/fixtures/reports/runs.py."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from mtpb.aggregate import breakdown, by_mode, mode_pairs, summary_table
from mtpb.comparison import load_comparison
from mtpb.metrics import bootstrap_ci, difficulty_of
from tests.fixtures.reports import runs


def by_run(table, column="pass_rate"):
    return dict(zip(table["run"], table[column]))


def test_summary_pass_rates_and_pass_at_k(cmp):
    table = summary_table(cmp)
    assert list(table["run"]) == ["A", "B", "C"]
    assert by_run(table) == pytest.approx({"A": 50.0, "B": 30.0, "C": 57.5})
    # n = 5 allows k in {1, 5} only; pass@1 equals the pass rate when every cell has the same n.
    assert [c for c in table.columns if c.startswith("pass@")] == ["pass@1", "pass@5"]
    assert by_run(table, "pass@1") == pytest.approx({"A": 50.0, "B": 30.0, "C": 57.5})
    assert by_run(table, "pass@5") == pytest.approx({"A": 70.0, "B": 50.0, "C": 75.0})
    assert by_run(table, "problems") == {"A": 5, "B": 5, "C": 4}
    assert by_run(table, "programs") == {"A": 50, "B": 50, "C": 40}
    assert list(table["parameters"]) == [350_000_000, 350_000_000, 2_000_000_000]
    assert list(table["mode"]) == ["multi", "single", "multi"]
    for low, rate, high in zip(table["ci_low"], table["pass_rate"], table["ci_high"]):
        assert 0 <= low <= rate <= high <= 100


def test_pass_at_k_only_for_k_that_n_allows(tmp_path):
    three = [[runs.P, runs.F, runs.F], [runs.P, runs.P, runs.F]]  # n = 3: c = 1, 2
    five = runs.cells(1, 0)
    a = runs.write_run(tmp_path / "n3", runs.manifest(n=3), {1: three})
    b = runs.write_run(tmp_path / "n5", runs.manifest(n=5), {1: five})
    table = summary_table(load_comparison([str(a), str(b)], [str(tmp_path / "none")]))
    row = table.set_index("run")
    # pass@1 of n3: (1/3 + 2/3) / 2 = 50%; pass@5 of n5: (1 + 0) / 2 = 50%; n3 has no pass@5.
    assert row.at["n3", "pass@1"] == pytest.approx(50.0)
    assert math.isnan(row.at["n3", "pass@5"])
    assert row.at["n5", "pass@5"] == pytest.approx(50.0)
    assert row.at["n5", "pass@1"] == pytest.approx(10.0)


@pytest.mark.parametrize("n,c,k", [(10, 3, 5), (5, 1, 1), (5, 0, 1), (5, 5, 1), (40, 7, 10),
                                   (200, 13, 100), (7, 6, 5)])
def test_pass_at_k_matches_the_exact_formula(tmp_path, n, c, k):
    """One problem, one test case: the report's pass@k is 1 - C(n-c, k)/C(n, k)."""
    outcomes = {1: [[runs.P] * c + [runs.F] * (n - c)]}
    run = runs.write_run(tmp_path / "r", runs.manifest(n=n), outcomes)
    table = summary_table(load_comparison([str(run)], [str(tmp_path / "none")]))
    exact = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert table[f"pass@{k}"].iloc[0] == pytest.approx(100.0 * exact, abs=1e-9)


def test_breakdowns(cmp):
    cat = breakdown(cmp, "category")
    a = cat[cat["run"] == "A"]
    assert dict(zip(a["category"], a["pass_rate"])) == pytest.approx(
        {"array": 0.0, "math": 70.0, "string": 10.0, "unknown": 100.0})
    turns = breakdown(cmp, "n_turns")
    # Problem 5 has 2 turns (from run A's samples) even in single-turn run B, whose samples hold one.
    b = turns[turns["run"] == "B"]
    assert dict(zip(b["n_turns"], b["pass_rate"])) == pytest.approx({1: 0.0, 2: 70.0, 3: 5.0})
    assert dict(zip(b["n_turns"], b["problems"])) == {1: 1, 2: 2, 3: 2}
    diff = breakdown(cmp, "difficulty")
    a = diff[diff["run"] == "A"]
    assert list(a["difficulty"]) == ["easy", "medium", "hard", "unsolved"]
    assert list(a["pass_rate"]) == pytest.approx([95.0, 50.0, 10.0, 0.0])
    c = diff[diff["run"] == "C"]
    assert dict(zip(c["difficulty"], c["pass_rate"])) == pytest.approx(
        {"easy": 100.0, "medium": 80.0, "hard": 50.0, "unsolved": 0.0})


def test_difficulty_bins_from_mean_over_runs(cmp):
    levels = cmp.rates.drop_duplicates("problem_id").set_index("problem_id")["difficulty"].to_dict()
    assert levels == {1: "easy", 2: "hard", 3: "medium", 4: "unsolved", 5: "easy"}
    assert [difficulty_of(x) for x in (100, 70, 69.9, 30, 29.9, 0.1, 0)] == [
        "easy", "easy", "medium", "medium", "hard", "hard", "unsolved"]


def test_mode_breakdown_and_pairs(cmp):
    modes = by_mode(cmp)
    got = {(m, d): v for m, d, v in zip(modes["model"], modes["mode"], modes["pass_rate"])}
    assert got == pytest.approx({("m-350M", "multi"): 50.0, ("m-350M", "single"): 30.0,
                                 ("m-2B", "multi"): 57.5})
    pairs = mode_pairs(cmp)
    assert list(pairs["model"]) == ["m-350M"]  # m-2B has no single-turn run
    pair = pairs.iloc[0]
    assert (pair["multi"], pair["single"], pair["difference"]) == pytest.approx((50.0, 30.0, 20.0))
    assert pair["problems"] == 5
    # Per-problem differences 40, 10, 40, 0, 10: the CI is the bootstrap of exactly these.
    assert (pair["ci_low"], pair["ci_high"]) == pytest.approx(bootstrap_ci([40, 10, 40, 0, 10]))


def test_overall_ci_is_over_per_problem_rates(cmp):
    table = summary_table(cmp).set_index("run")
    assert (table.at["A", "ci_low"], table.at["A", "ci_high"]) == pytest.approx(
        bootstrap_ci([90, 10, 50, 0, 100]))


def test_importing_is_light():
    import subprocess
    import sys
    code = ("import sys, mtpb.aggregate, mtpb.comparison, mtpb.metrics, mtpb.report; "
            "bad = [m for m in ('pandas', 'jinja2', 'torch', 'docker') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_agrees_with_the_runs_own_summary(cmp):
    """The report recomputes what summary.json holds; the two must not disagree."""
    from mtpb.summary import summarize

    table = summary_table(cmp).set_index("run")
    for run in cmp.runs:
        own = summarize(Path(run.path) / "results.jsonl", {})
        assert table.at[run.label, "pass_rate"] == pytest.approx(own["pass_rate"], abs=1e-3)
        for name, value in own["pass_at_k"].items():
            assert table.at[run.label, name] == pytest.approx(value, abs=1e-3)
