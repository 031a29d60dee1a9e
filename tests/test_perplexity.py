"""mtpb perplexity: the runner's contexts byte for byte, the engine against transformers, the files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtpb.perplexity import reference_dialogues, run_dialogues
from mtpb.problems import Problem, TestCase as Case, Turn
from mtpb.prompts import PREFIX
from mtpb.runner import RunConfig, Runner

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "checkpoints" / "tiny-codegen"


def problem(pid=1, n_turns=3):
    turns = tuple(Turn(f"Step {i} on {{x}}: make v{i}.", f"v{i} = {{x}} + {i}") for i in range(1, n_turns + 1))
    tests = tuple(Case({"x": k}, k + n_turns) for k in range(5))
    return Problem(pid, f"p{pid}", "math", "d", 16, turns, tests)


class Recording:
    """A backend that answers with odd text (truncation matters) and keeps every context it was asked."""

    def __init__(self):
        self.contexts = {}

    def generate(self, requests, params):
        out = []
        for r in requests:
            self.contexts[(r.problem_id, r.test_index, r.sample_index, r.turn_index)] = r.context
            out.append(f"v{r.turn_index + 1} = {r.test_index}\n  # kept?\n#cut here\nprint(1)\n")
        return out


def test_multi_turn_contexts_equal_the_runners_byte_for_byte(tmp_path, process_sandbox):
    backend = Recording()
    Runner(RunConfig(backend="recording", n=2), tmp_path / "run", backend, process_sandbox, [problem(1), problem(2, 4)]).run()
    dialogues = list(run_dialogues(tmp_path / "run", ("multi", "single")))
    multi = [d for d in dialogues if d.mode == "multi"]
    assert len(multi) == 2 * 5 * 2 and len([d for d in dialogues if d.mode == "single"]) == 2 * 5
    for d in multi:
        for turn, span in enumerate(d.spans):
            assert span.text == backend.contexts[(d.problem_id, d.test_index, d.sample_index, turn)]
            assert span.text[span.start:].startswith("# Step") and span.text.endswith(".\n")
    single = next(d for d in dialogues if d.mode == "single" and d.problem_id == 2)
    assert single.spans[0].text == PREFIX + "# " + " ".join(f"Step {i} on {single.test_index}: make v{i}."
                                                            for i in range(1, 5)) + "\n"


def test_reference_dialogues_put_the_solutions_between_the_turns():
    [multi, single] = list(reference_dialogues([problem(1)], ("multi", "single")))[:2]
    assert multi.spans[1].text == PREFIX + "# Step 1 on 0: make v1.\nv1 = 0 + 1\n\n# Step 2 on 0: make v2.\n"
    assert single.mode == "single" and len(single.spans) == 1


@pytest.fixture(scope="module")
def scorers():
    from mtpb.perplexity import open_scorer
    return open_scorer("codegen", str(TINY), "cpu", "fp32", 4), open_scorer("transformers", str(TINY), "cpu", "fp32")


def test_engine_and_transformers_agree_within_1e_3(scorers):
    engine, hf = scorers
    dialogues = list(reference_dialogues([problem(1), problem(3, 5)], ("multi", "single")))
    got, want = engine.score(dialogues), hf.score(dialogues)
    assert len(got) == len(dialogues) == 20
    for g, w in zip(got, want):
        assert [n for n, _ in g] == [n for n, _ in w]
        for (_, a), (_, b) in zip(g, w):
            assert abs(a - b) <= 1e-3 * abs(b)


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mtpb", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_writes_resumes_and_refuses_other_settings(tmp_path):
    run = tmp_path / "run"
    assert run_cli("run", "--backend", "codegen", "--ids", "1-2", "--max-gen-length", "4", "--sandbox", "process",
                   "--out", str(run)).returncode == 0
    done = run_cli("perplexity", str(run), "--batch-size", "4")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in (run / "perplexity.jsonl").read_text().splitlines()]
    assert sorted({(r["mode"], r["history"]) for r in lines}) == [("multi", "samples"), ("single", "prompts")]
    assert len(lines) == 20 and all(r["tokens"] == sum(t["tokens"] for t in r["turns"]) for r in lines)
    summary = json.loads((run / "perplexity.json").read_text())
    assert set(summary["modes"]) == {"multi", "single"} and set(summary["problems"]) == {"1", "2"}
    assert summary["modes"]["multi"]["perplexity"] == pytest.approx(
        sum(summary["problems"][p]["multi"] for p in ("1", "2")) / 2, abs=1e-3)
    before = (run / "perplexity.jsonl").read_text()
    assert run_cli("perplexity", str(run)).returncode == 0
    assert (run / "perplexity.jsonl").read_text() == before          # resumed: nothing scored twice
    refused = run_cli("perplexity", str(run), "--backend", "transformers")
    assert refused.returncode == 2 and "backend='codegen'" in refused.stderr and "Traceback" not in refused.stderr
    assert (run / "perplexity.jsonl").read_text() == before


def test_cli_reference_form_and_clear_errors(tmp_path):
    out = tmp_path / "ref"
    done = run_cli("perplexity", "--model", str(TINY), "--ids", "3", "--mode", "multi", "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in (out / "perplexity.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and {r["history"] for r in lines} == {"reference"}
    bad = run_cli("perplexity", "--model", str(tmp_path), "--ids", "3", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "cannot load" in bad.stderr and "Traceback" not in bad.stderr
    assert run_cli("perplexity", "--ids", "3").returncode == 2
