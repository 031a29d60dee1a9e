"""`mtpb execute` on the original sampler's files and ours: input order, malformed lines named."""
import json

import pytest
from click.testing import CliRunner

from mtpb.cli import main
from mtpb.execute import execute_file
from mtpb.problems import load_problems
from mtpb.rundir import RunDirError
from tests.conftest import DEMO, write_problem


class Counting:
    """The process sandbox, remembering which programs it was given (a resume must not redo good lines)."""
    name = "process"

    def __init__(self, box):
        self.box, self.programs = box, []

    def ready(self):
        self.box.ready()

    def run(self, programs):
        self.programs += programs
        return self.box.run(programs)


def original(i, **changes) -> str:
    return json.dumps({"id": str(i), "input": {}, "gold_output": i, "completions": f"print({i})", **changes})


def write_lines(path, lines, end="\n"):
    path.write_bytes("\n".join(lines).encode() + end.encode())


def results_of(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_original_format_in_input_order_with_a_bad_line(tmp_path):
    samples = tmp_path / "samples.jsonl"
    lines = [
        {"id": "3", "input": {"a": 1}, "gold_output": 7980, "completions": "x = 7980\nprint(x)"},
        {"id": "4", "input": {"a": 2}, "gold_output": {"k": 1}, "completions": "print({'k': 1})"},
        "{broken",
        {"id": "5", "input": {}, "gold_output": 2, "completions": "1 / 0"},
    ]
    samples.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    result = CliRunner().invoke(main, ["execute", str(samples), "--out", str(tmp_path / "run"), "--sandbox", "process"])
    assert result.exit_code == 1 and "samples.jsonl:3:" in result.output
    results = [json.loads(l) for l in open(tmp_path / "run" / "results.jsonl")]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["id"] for r in results] == ["3", "4", None, "5"]
    assert [r["status"] for r in results] == ["passed", "failed", "failed", "error"]  # original rules: dicts never pass
    assert json.load(open(tmp_path / "run" / "run.json"))["scoring"] == "original"


def test_our_samples_with_fixed_rules(tmp_path):
    run = tmp_path / "ref"
    assert CliRunner().invoke(main, ["run", "--backend", "reference", "--ids", "1-2", "--sandbox", "process",
                                     "--out", str(run)]).exit_code == 0
    result = CliRunner().invoke(main, ["execute", str(run / "samples.jsonl"), "--out", str(tmp_path / "again"),
                                       "--sandbox", "process"])
    assert result.exit_code == 0, result.output
    results = [json.loads(l) for l in open(tmp_path / "again" / "results.jsonl")]
    assert len(results) == 10 and all(r["passed"] for r in results)


# ---------------------------------------------------------------------------- resume by input line

def test_resume_rescores_fixed_lines_and_keeps_input_order(process_sandbox, tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    ours = json.dumps({"problem_id": 1, "test_index": 0, "sample_index": 0, "program": "print('cba')"})
    # line 2 needs problem sets not loaded yet; line 4 is torn, as a sampler killed mid-write leaves it
    write_lines(samples, [original(0), ours, original(2), original(3)[:20]], end="")
    box = Counting(process_sandbox)
    report = execute_file(samples, out, box, {}, None)
    assert [line.split(": ", 1)[0] for line in report["bad_lines"]] == [f"{samples}:2", f"{samples}:4"]
    assert [r["index"] for r in results_of(out)] == [0, 1, 2, 3]
    first = results_of(out)

    write_lines(samples, [original(0), ours, original(2), original(3)])
    write_problem(tmp_path, DEMO)
    problems = {p.id: p for p in load_problems([str(tmp_path / "001-demo.yaml")])}
    box.programs.clear()
    report = execute_file(samples, out, box, problems, None, batch=1)
    assert report["bad_lines"] == []
    assert box.programs == ["print('cba')", "print(3)"], "only the malformed lines are scored again"
    final = results_of(out)
    assert [r["index"] for r in final] == [0, 1, 2, 3], "input order, each line once"
    assert all(r["passed"] for r in final), final
    assert final[0] == first[0] and final[2] == first[2], "good results are kept as they were"
    assert not (out / "results.jsonl.tmp").exists()


def test_a_finished_run_executes_nothing_again(process_sandbox, tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    write_lines(samples, [original(0), original(1)])
    execute_file(samples, out, process_sandbox, {}, None)
    box = Counting(process_sandbox)
    execute_file(samples, out, box, {}, None)
    assert box.programs == [] and [r["index"] for r in results_of(out)] == [0, 1]


def test_another_samples_file_on_the_same_out_is_refused(process_sandbox, tmp_path):
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "run"
    write_lines(a, [original(0)])
    write_lines(b, [original(5)])
    execute_file(a, out, process_sandbox, {}, None)
    before = (out / "results.jsonl").read_bytes()
    with pytest.raises(RunDirError, match=r"run\.json holds the results of .*a\.jsonl.*new --out"):
        execute_file(b, out, process_sandbox, {}, None)
    with pytest.raises(RunDirError, match="--scoring.*new --out"):
        execute_file(a, out, process_sandbox, {}, "mtpb")
    # the same path with other samples in it: a good result's line changed
    write_lines(a, [original(7)])
    with pytest.raises(RunDirError, match=r"a\.jsonl:1: changed since it was scored.*new --out"):
        execute_file(a, out, process_sandbox, {}, None)
    assert (out / "results.jsonl").read_bytes() == before, "a refused rerun changes nothing"


def test_other_problem_sets_on_a_resume_are_refused(process_sandbox, tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    write_lines(samples, [json.dumps({"problem_id": 1, "test_index": 0, "program": "print('cba')"})])
    write_problem(tmp_path, DEMO)
    execute_file(samples, out, process_sandbox, {p.id: p for p in load_problems([str(tmp_path)])}, None)
    write_problem(tmp_path, DEMO.replace("output: cba", "output: abc"))
    with pytest.raises(RunDirError, match=r"samples\.jsonl:1: the problem sets now expect 'abc'.*--problems"):
        execute_file(samples, out, process_sandbox, {p.id: p for p in load_problems([str(tmp_path)])}, None)


def test_an_mtpb_run_folder_is_refused_as_out(tmp_path):
    run = tmp_path / "ref"
    assert CliRunner().invoke(main, ["run", "--backend", "reference", "--ids", "1", "--sandbox", "process",
                                     "--out", str(run)]).exit_code == 0
    before = (run / "results.jsonl").read_bytes()
    result = CliRunner().invoke(main, ["execute", str(run / "samples.jsonl"), "--out", str(run),
                                       "--sandbox", "process"])
    assert result.exit_code == 2 and "not an `mtpb execute` output" in result.output, result.output
    assert "new --out" in result.output and "Traceback" not in result.output
    assert (run / "results.jsonl").read_bytes() == before


# ---------------------------------------------------------------------------- bad input

def test_a_line_that_is_not_utf8_is_reported_and_the_rest_scored(process_sandbox, tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    samples.write_bytes(original(0).encode() + b"\n\xff\xfe{}\n" + original(2).encode() + b"\n")
    report = execute_file(samples, out, process_sandbox, {}, None)
    assert report["bad_lines"] == [f"{samples}:2: not UTF-8 (byte 0xff at column 1): save the file as UTF-8"]
    assert [(r["index"], r["passed"]) for r in results_of(out)] == [(0, True), (1, False), (2, True)]


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_or_blank_samples_file_is_an_error(tmp_path, content):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(content)
    result = CliRunner().invoke(main, ["execute", str(samples), "--out", str(tmp_path / "run"), "--sandbox", "process"])
    assert result.exit_code == 2, result.output
    assert "samples.jsonl: no samples" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize("fields, message", [
    ({"problem_id": 1, "test_index": -1, "program": "print(1)"},
     "test_index -1 is out of range: problem 1 has 5 tests (0-4)"),
    ({"problem_id": 1, "test_index": 99, "program": "print(1)"},
     "test_index 99 is out of range: problem 1 has 5 tests (0-4)"),
    ({"problem_id": 1, "program": "print(1)"}, 'missing field "test_index"'),
    ({"problem_id": 1, "test_index": 0, "program": 5}, '"program" must be a string, not 5'),
    ({"problem_id": None, "test_index": 0, "program": "print(1)"}, '"problem_id" must be a whole number, not null'),
    ({"problem_id": 1, "test_index": "0", "program": "print(1)"}, '"test_index" must be a whole number, not "0"'),
    ({"problem_id": 1, "test_index": -1, "expected": 1, "program": "print(1)"}, "test_index -1 is out of range"),
    ({"id": "3", "input": {}, "gold_output": 1, "completions": None}, '"completions" must be a string, not null'),
    ({"id": "3", "input": {}, "gold_output": 1, "completions": ["print(1)"]}, '"completions" must be a string'),
    ({"id": "3", "input": {}, "completions": "print(1)"}, 'missing field "gold_output"'),
    ({"id": "3", "gold_output": 1, "completions": "print(1)"}, 'missing field "input"'),
    ({"id": "x3", "input": {}, "gold_output": 1, "completions": "print(1)"},
     '"id" must be a problem number such as "46", not "x3"'),
])
def test_bad_fields_are_named_and_not_executed(process_sandbox, tmp_path, fields, message):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    write_lines(samples, [original(0), json.dumps(fields)])
    write_problem(tmp_path, DEMO)
    box = Counting(process_sandbox)
    report = execute_file(samples, out, box, {p.id: p for p in load_problems([str(tmp_path)])}, None)
    assert len(report["bad_lines"]) == 1 and report["bad_lines"][0].startswith(f"{samples}:2: {message}"), report
    assert box.programs == ["print(0)"], "a malformed line is reported, not executed"
    bad = results_of(out)[1]
    assert bad["malformed"] and bad["status"] == "failed" and not bad["passed"]


# ---------------------------------------------------------------------------- the end: summary and counts

def sampled(pid: str, inputs: dict, expected, program: str) -> str:
    """A line as the original mtpb_sample.py writes it: one (problem, test input, sample)."""
    return json.dumps({"id": pid, "input": inputs, "gold_output": expected, "completions": program,
                       "prompts_completions": [program]})


def test_an_original_file_ends_like_run_and_summary_reads_its_folder(tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    # problem 3: 2 test inputs x 2 samples, 1 of 4 passes; problem 5: 1 input x 2 samples, both pass.
    # The paper's pass rate is the mean over problems (25% and 100%: 62.5%), not 3 of 6 pooled (50%).
    write_lines(samples, [sampled("3", {"a": 1}, 1, "print(1)"), sampled("3", {"a": 1}, 1, "print(0)"),
                          sampled("3", {"a": 2}, 2, "print(0)"), sampled("3", {"a": 2}, 2, "1 / 0"),
                          sampled("5", {"b": [1]}, [1], "x = [1]\nx"), sampled("5", {"b": [1]}, [1], "print([1])")])
    result = CliRunner().invoke(main, ["execute", str(samples), "--out", str(out), "--sandbox", "process"])
    assert result.exit_code == 0, result.output
    assert "Overall stats\nn_total=6 n_success=3\n" + "-" * 40 + "\n3              :   1 : 4\n5              :   2 : 2\n" \
        in result.output, "the per-problem counts as the original executor printed them"
    assert "pass rate 62.50% over 2 problems, 6 programs" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["pass_rate"], summary["n_problems"], summary["n_programs"]) == (62.5, 2, 6)
    assert summary["pass_at_k"] == {"pass@1": 62.5}
    assert summary["breakdowns"]["category"] == {"unknown": 62.5}, "not labelled with our suite's problems 3 and 5"
    keys = [(r["problem_id"], r["test_index"], r["sample_index"]) for r in results_of(out)]
    assert keys == [(3, 0, 0), (3, 0, 1), (3, 1, 0), (3, 1, 1), (5, 0, 0), (5, 0, 1)]
    shown = CliRunner().invoke(main, ["summary", str(out)])
    assert shown.exit_code == 0 and "62.5" in shown.output, shown.output
    assert "warning" not in shown.output, shown.output
    report = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "report.html")])
    assert report.exit_code == 0 and (tmp_path / "report.html").exists(), report.output
    html = (tmp_path / "report.html").read_text()
    suite_name = next(p for p in load_problems() if p.id == 3).name
    assert "problem 3" in html and suite_name not in html, "the release's problem 3 is not our suite's"


def test_a_line_fixed_on_a_rerun_renumbers_the_samples_after_it(process_sandbox, tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    good = sampled("7", {"a": 1}, 1, "print(1)")
    write_lines(samples, [good, good[:30], good])
    report = execute_file(samples, out, process_sandbox, {}, None)
    assert len(report["bad_lines"]) == 1
    assert report["summary"]["n_programs"] == 2 and report["summary"]["n_malformed"] == 1
    write_lines(samples, [good, good, good])
    report = execute_file(samples, out, process_sandbox, {}, None)
    assert [r["sample_index"] for r in results_of(out)] == [0, 1, 2]
    assert (report["summary"]["n_programs"], report["summary"]["pass_rate"]) == (3, 100.0)


def test_a_file_of_malformed_lines_only_says_nothing_was_scored(tmp_path):
    samples = tmp_path / "samples.jsonl"
    write_lines(samples, ["{broken"])
    result = CliRunner().invoke(main, ["execute", str(samples), "--out", str(tmp_path / "run"), "--sandbox", "process"])
    assert result.exit_code == 1 and "no program was scored" in result.output, result.output
    assert "Traceback" not in result.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["n_malformed"] == 1
