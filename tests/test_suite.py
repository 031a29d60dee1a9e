"""The bundled suite keeps the original release's shape (115 sets, its category counts, 3 to 9 turns, 5 tests
a set), has no near-duplicates, and validates."""
import dataclasses

import pytest
from click.testing import CliRunner

from mtpb.cli import main
from mtpb.problems import Turn, load_problems
from mtpb.stats import near_duplicates, suite_stats

SUITE = load_problems()


def test_shape_matches_the_original_release():
    stats = suite_stats(SUITE)
    assert [p.id for p in SUITE] == list(range(1, 116))
    assert stats["category"] == {"array": 23, "data science": 23, "math": 22, "string": 21, "algorithm": 21,
                                 "dict": 3, "class": 2}
    turns = {k: v for k, v in stats["turns"].items() if isinstance(k, int)}
    assert min(turns) >= 3 and max(turns) <= 9
    assert 4.2 <= stats["turns"]["mean"] <= 4.9 and stats["turns"]["6 or more"] >= 15
    assert stats["tests per problem"] == {5: 115}
    assert set(stats["max_gen_length"]) <= {128, 256, 512} and stats["max_gen_length"][128] >= 80
    types = stats["output type (by test)"]
    assert set(types) == {"int", "list", "str", "float", "bool", "dict", "None"}
    assert types["int"] > types["list"] > types["float"] and types["str"] > types["bool"]
    assert set(stats["library (problems using it)"]) <= {"numpy", "pandas", "math", "collections", "re", "string",
                                                         "fractions", "heapq", "itertools", "functools",
                                                         "statistics", "datetime", "decimal", "bisect", "operator"}


def test_data_science_problems_use_numpy_or_pandas():
    for p in SUITE:
        if p.category == "data science":
            code = "\n".join(t.solution for t in p.turns)
            assert "np." in code or "pd." in code, p.path


def test_every_turn_has_a_solution_and_only_the_last_prints():
    for p in SUITE:
        assert all(t.solution for t in p.turns), p.path
        assert "print(" in p.turns[-1].solution, p.path
        assert not any(t.solution.lstrip().startswith("print(") for t in p.turns[:-1]), p.path


def test_no_near_duplicates_and_the_detector_catches_one():
    assert near_duplicates(SUITE) == []
    original = SUITE[10]
    reworded = dataclasses.replace(original, id=999, turns=tuple(
        Turn(t.prompt.replace("named", "called"), t.solution) for t in original.turns))
    assert [(a, b) for _, a, b in near_duplicates([original, reworded])] == [(original.id, 999)]


@pytest.mark.slow
def test_every_reference_program_passes_in_the_sandbox():
    result = CliRunner().invoke(main, ["problems", "validate", "--execute", "--sandbox", "process"])
    assert result.exit_code == 0, result.output
    assert "575 of 575 test programs pass" in result.output


@pytest.mark.slow
def test_reference_backend_over_the_suite_in_both_modes(tmp_path):
    import json
    for mode in ("multi", "single"):
        out = tmp_path / mode
        result = CliRunner().invoke(main, ["run", "--backend", "reference", "--mode", mode, "--sandbox", "process",
                                           "--out", str(out)])
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["n_problems"] == 115 and summary["n_programs"] == 575
        if mode == "multi":
            assert summary["pass_rate"] == 100.0
