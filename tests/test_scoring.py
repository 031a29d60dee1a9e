"""The two rule sets, end to end through the real executor (process sandbox)."""
import pytest

from mtpb.scoring import result_record, verdict

# (program, expected output, status under `original`, status under `mtpb`)
CASES = {
    "int": ("print(3)", 3, "passed", "passed"),
    "last statement printed": ("x = 2\nx * 21", 42, "passed", "passed"),
    "assignment rewritten": ("def f():\n    return 5\ny = f()", 5, "passed", "passed"),
    "last print counts": ("print(1)\nprint(2)", 1, "failed", "failed"),
    "first argument only": ("print(7, 8)", 7, "passed", "passed"),
    "numpy scalar": ("import numpy as np\nprint(np.int64(4))", 4, "passed", "passed"),
    "numpy array to list": ("import numpy as np\nprint(np.array([1, 2]))", [1, 2], "passed", "passed"),
    "float tolerance": ("print(0.1 + 0.2)", 0.3, "passed", "passed"),
    "bool as string": ("print('True')", True, "passed", "passed"),
    "list of tuples": ("print([(1, 2), (3, 4)])", [[1, 2], [3, 4]], "passed", "passed"),
    "str coerced": ("print([1, 2])", "[1, 2]", "passed", "passed"),
    "series": ("import pandas as pd\nprint(pd.Series([1.0, 2.0]))", [1, 2], "passed", "passed"),
    "no print": ("x = 1\nif x:\n    pass", 1, "failed", "failed"),
    "exception before print": ("1 / 0\nprint(1)", 1, "error", "error"),
    # the original's quirks, fixed by the `mtpb` rules (docs/scoring.md)
    "exception after print": ("print(5)\nraise ValueError('late')", 5, "passed", "error"),
    "equal dicts": ("print({'a': 1})", {"a": 1}, "failed", "passed"),
    "None expected": ("print(None)", None, "failed", "passed"),
    "nested tuples": ("print([[(1, 2)]])", [[[1, 2]]], "failed", "passed"),
    "int truncation": ("print(3.9)", 3, "passed", "failed"),
    "bool as int": ("print(True)", 1, "passed", "failed"),
    "string split into list": ("print('ab')", ["a", "b"], "passed", "failed"),
    "nested float tolerance": ("print([0.1 + 0.2])", [0.3], "failed", "passed"),
    "series broadcast": ("import pandas as pd\nprint(pd.Series([5, 5]))", [5], "passed", "failed"),
    "dict keys as list": ("print({'a': 1})", ["a"], "passed", "failed"),
}


@pytest.fixture(scope="module")
def replies(process_sandbox):
    names = list(CASES)
    return dict(zip(names, process_sandbox.run([CASES[n][0] for n in names])))


@pytest.mark.parametrize("name", list(CASES))
def test_rule_sets(name, replies):
    _, expected, original, fixed = CASES[name]
    assert verdict(replies[name], expected, "original").status == original
    assert verdict(replies[name], expected, "mtpb").status == fixed


def test_statuses_from_limits(process_sandbox):
    timeout, killed, exit_early, forged = process_sandbox.run([
        "while True:\n    pass",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "import os\nprint(42)\nos._exit(0)",
        "import os\nos.write(3, b'{\"prints\": 1, \"exception\": null}')\nprint(1)",
    ])
    assert verdict(timeout, 1, "mtpb").status == "timeout"
    assert verdict(killed, 1, "mtpb").status == "killed"
    assert verdict(exit_early, 42, "mtpb").status == "failed"  # no result: nothing to compare
    assert not verdict(forged, 1, "mtpb").passed  # a forged message on the result channel is not JSON-valid



def test_result_record_is_the_results_line(replies):
    """The line `mtpb run` and `mtpb execute` both write: the contract's fields, from the verdict."""
    sample = {"problem_id": 4, "test_index": 1, "sample_index": 2, "program": "print(3)"}
    line = result_record(sample, replies["int"], 3, "mtpb")
    assert {k: line[k] for k in ("problem_id", "test_index", "sample_index", "status", "passed", "printed",
                                 "expected", "error")} == {
        "problem_id": 4, "test_index": 1, "sample_index": 2, "status": "passed", "passed": True,
        "printed": "3", "expected": "3", "error": None}
    assert line["seconds"] >= 0 and "stdout" in line
    failed = result_record(sample, replies["int"], 4, "mtpb")
    assert (failed["status"], failed["passed"], failed["expected"]) == ("failed", False, "4")
