"""Aggregation numbers against the hand-computed fixture in tests/fixtures/reports/runs.py."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mtpb import aggregate
from mtpb.aggregate import (RunDataError, bootstrap_ci, breakdown, by_mode, difficulty_of,
                            load_comparison, mode_pairs, summary_table)
from tests.fixtures.reports import runs


@pytest.fixture
def fixture(tmp_path):
    dirs, problems = runs.write_fixture(tmp_path)
    return dirs, problems


@pytest.fixture
def cmp(fixture):
    dirs, problems = fixture
    return load_comparison(dirs, [str(problems)])


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


def test_bootstrap_ci_resamples_problems():
    assert bootstrap_ci([42.0] * 7) == pytest.approx((42.0, 42.0))
    values = np.array([0.0, 100.0, 50.0, 25.0])
    rng = np.random.default_rng(aggregate.BOOTSTRAP_SEED)
    idx = rng.integers(0, 4, size=(aggregate.BOOTSTRAP_SAMPLES, 4))
    means = values[idx].mean(axis=1)
    assert bootstrap_ci(values) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    low, high = bootstrap_ci(values)
    assert 0 <= low < values.mean() < high <= 100
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_overall_ci_is_over_per_problem_rates(cmp):
    table = summary_table(cmp).set_index("run")
    assert (table.at["A", "ci_low"], table.at["A", "ci_high"]) == pytest.approx(
        bootstrap_ci([90, 10, 50, 0, 100]))


def test_unknown_problem_falls_back_to_samples(cmp):
    info = cmp.problems[5]
    assert not info.known and info.category == "unknown" and info.n_turns == 2
    assert info.prompts == ("P5 turn 0 for test 0.", "P5 turn 1 for test 0.")
    known = cmp.problems[2]
    assert known.known and known.category == "string" and known.n_turns == 3
    assert known.prompts == ("Step 0 with {a}.", "Step 1 with {a}.", "Step 2 with {a}.")
    assert any("not in the loaded problem files" in w and "(5)" in w for w in cmp.warnings)


def test_comparability_warnings(cmp, tmp_path):
    text = "\n".join(cmp.warnings)
    assert "differ in temperature" in text and "C: 0.8" in text
    assert "C covers 4 of the 5 problems" in text
    assert "problems digest" not in text
    same = [str(runs.write_run(tmp_path / f"s{i}", runs.manifest(), {1: runs.cells(1, 2)}))
            for i in range(2)]
    assert load_comparison(same, [str(tmp_path / "problems")]).warnings == ()
    other = runs.write_run(tmp_path / "s2", runs.manifest(problems_digest="zzz", n=7), {1: runs.cells(1, 2)})
    text = "\n".join(load_comparison(same + [str(other)], [str(tmp_path / "problems")]).warnings)
    assert "differ in problems digest" in text and "differ in n " in text


def test_examples_show_a_pass_and_the_most_frequent_failure(cmp):
    examples = cmp.examples[("A", 2)]
    assert [(e.status, e.test_index, e.sample_index) for e in examples] == [
        ("passed", 0, 0), ("failed", 0, 1)]
    assert examples[1].printed == "'wrong <b>'" and examples[1].expected == "'ok'"
    assert examples[0].program.endswith("print('p2 t0 s0')\n")
    only_errors = cmp.examples[("A", 4)]
    assert [e.status for e in only_errors] == ["error"]
    assert only_errors[0].error.startswith("ZeroDivisionError")


def test_malformed_lines_are_skipped_counted_and_named(fixture):
    dirs, problems = fixture
    results = Path(dirs[0]) / "results.jsonl"
    with open(results, "a", encoding="utf-8") as f:
        f.write('{"problem_id": 1, "test_ind\n')      # line 51: a torn write
        f.write("[1, 2]\n")                             # line 52: not an object
    cmp = load_comparison(dirs, [str(problems)])
    warning = next(w for w in cmp.warnings if "malformed" in w)
    assert f"{results}:51" in warning and "2 malformed line(s)" in warning
    assert summary_table(cmp).set_index("run").at["A", "pass_rate"] == pytest.approx(50.0)
    with pytest.raises(RunDataError, match=r"results.jsonl:51: not valid JSON"):
        list(aggregate.iter_jsonl(results, [], strict=True))


def test_duplicate_results_keep_the_last(tmp_path):
    run = runs.write_run(tmp_path / "r", runs.manifest(), {1: runs.cells(0, 0)})
    with open(run / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"problem_id": 1, "test_index": 0, "sample_index": 0,
                            "status": "passed", "passed": True}) + "\n")
    cmp = load_comparison([str(run)], [str(tmp_path / "none")])
    assert summary_table(cmp)["pass_rate"].iloc[0] == pytest.approx(10.0)
    assert any("duplicate" in w for w in cmp.warnings)


def test_incomplete_run_is_reported(tmp_path):
    run = runs.write_run(tmp_path / "r", runs.manifest(), {1: runs.cells(2, 2)})
    lines = (run / "results.jsonl").read_text().splitlines(keepends=True)
    (run / "results.jsonl").write_text("".join(lines[:4]))
    cmp = load_comparison([str(run)], [str(tmp_path / "none")])
    assert any("6 of 10 samples have no result yet" in w for w in cmp.warnings)
    assert summary_table(cmp)["pass_rate"].iloc[0] == pytest.approx(50.0)


def test_bad_run_directories_raise_run_data_error(tmp_path):
    with pytest.raises(RunDataError, match="no such run directory"):
        load_comparison([str(tmp_path / "absent")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDataError, match=r"run\.json: missing"):
        load_comparison([str(tmp_path / "empty")])
    (tmp_path / "empty" / "run.json").write_text("{not json")
    with pytest.raises(RunDataError, match=r"run\.json:1: not readable JSON"):
        load_comparison([str(tmp_path / "empty")])
    (tmp_path / "empty" / "run.json").write_text("{}")
    with pytest.raises(RunDataError, match=r"results\.jsonl: missing"):
        load_comparison([str(tmp_path / "empty")])
    with pytest.raises(RunDataError, match="no run directories"):
        load_comparison([])


def test_broken_problem_file_is_skipped_with_a_warning(fixture):
    dirs, problems = fixture
    (problems / "002-problem-2.yaml").write_text("id: 2\nname: [unclosed\n")
    cmp = load_comparison(dirs, [str(problems)])
    assert cmp.problems[1].known and not cmp.problems[2].known
    assert any("could not be loaded" in w and "002-problem-2.yaml" in w for w in cmp.warnings)


def test_run_labels_are_unique(tmp_path):
    a = runs.write_run(tmp_path / "x" / "run", runs.manifest(), {1: runs.cells(1, 1)})
    b = runs.write_run(tmp_path / "y" / "run", runs.manifest(), {1: runs.cells(1, 1)})
    cmp = load_comparison([str(a), str(b), str(a)], [str(tmp_path / "none")])
    labels = [r.label for r in cmp.runs]
    assert labels == ["x/run", "y/run", "x/run#2"]


def test_importing_is_light():
    import subprocess
    import sys
    code = ("import sys, mtpb.aggregate, mtpb.report; "
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
