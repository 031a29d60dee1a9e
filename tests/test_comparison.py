"""Loading run directories into a Comparison: examples, warnings, bad and incomplete runs, labels."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtpb.aggregate import summary_table
from mtpb.comparison import load_comparison
from mtpb.rundir import RunDirError, read_jsonl
from tests.fixtures.reports import runs


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
    # (the fixture's runs predate problems.jsonl: that warning aside, nothing to say)
    assert [w for w in load_comparison(same, [str(tmp_path / "problems")]).warnings
            if "no problems.jsonl" not in w] == []
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


def test_malformed_lines_are_skipped_counted_and_named(report_runs):
    dirs, problems = report_runs
    results = Path(dirs[0]) / "results.jsonl"
    with open(results, "a", encoding="utf-8") as f:
        f.write('{"problem_id": 1, "test_ind\n')      # line 51: a torn write
        f.write("[1, 2]\n")                             # line 52: not an object
    cmp = load_comparison(dirs, [str(problems)])
    warning = next(w for w in cmp.warnings if "malformed" in w)
    assert f"{results}:51" in warning and "2 malformed line(s)" in warning
    assert summary_table(cmp).set_index("run").at["A", "pass_rate"] == pytest.approx(50.0)
    with pytest.raises(RunDirError, match=r"results.jsonl:51: not a JSON line"):
        list(read_jsonl(results))


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


def test_bad_run_directories_raise_run_dir_error(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        load_comparison([str(tmp_path / "absent")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match=r"run\.json: missing"):
        load_comparison([str(tmp_path / "empty")])
    (tmp_path / "empty" / "run.json").write_text("{not json")
    with pytest.raises(RunDirError, match=r"run\.json:1: not readable JSON"):
        load_comparison([str(tmp_path / "empty")])
    (tmp_path / "empty" / "run.json").write_text("{}")
    with pytest.raises(RunDirError, match=r"results\.jsonl: missing"):
        load_comparison([str(tmp_path / "empty")])
    with pytest.raises(RunDirError, match="no run directories"):
        load_comparison([])


def test_broken_problem_file_is_skipped_with_a_warning(report_runs):
    dirs, problems = report_runs
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
