"""Importing the original MTPB release: all 115, losslessly, with byte-identical contexts."""
import json

import pytest

from mtpb.importer import import_original
from mtpb.problems import load_problems
from mtpb.prompts import PREFIX, truncate
from mtpb.runner import RunConfig, Runner
from tests.conftest import ORIGINAL

pytestmark = pytest.mark.skipif(not ORIGINAL.exists(), reason=f"the original MTPB release is not at {ORIGINAL}")


class RecordingBackend:
    """Answers every turn with text that the truncation rules must cut, and records each context."""
    preferred_batch_size = 64

    def __init__(self):
        self.contexts = {}

    def generate(self, requests, params):
        out = []
        for r in requests:
            self.contexts[(r.problem_id, r.test_index, r.turn_index)] = r.context
            out.append(f"v{r.turn_index} = {r.turn_index}\nprint(v{r.turn_index})\nprint('cut')\n\n\n# junk")
        return out

    def describe(self):
        return {"model": "recording"}


class NoSandbox:
    name = "none"

    def run(self, programs):
        return [{"sandbox_error": "not executed in this test"} for _ in programs]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    import_original(ORIGINAL, out)
    return load_problems([out])


def originals():
    return [json.loads(line) for line in ORIGINAL.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_all_115_lossless(imported):
    assert len(imported) == 115
    by_id = {p.id: p for p in imported}
    for o in originals():
        p = by_id[int(o["id"])]
        assert (p.name, p.category, p.description) == (o["name"], o["category"], o["description"])
        assert p.max_gen_length == o.get("max_gen_length", 256)
        assert [t.prompt for t in p.turns] == o["prompts"]
        for test, inputs, output in zip(p.tests, o["inputs"], o["outputs"]):
            assert {**test.inputs, **(test.unused_inputs or {})} == inputs
            assert test.output == output and type(test.output) is type(output)


def test_contexts_equal_the_original_sampler_byte_for_byte(imported, tmp_path):
    backend = RecordingBackend()
    Runner(RunConfig(backend="recording"), tmp_path / "run", backend, NoSandbox(), imported).run()
    samples = {(r["problem_id"], r["test_index"]): r for r in map(json.loads, (tmp_path / "run" / "samples.jsonl").open())}
    checked = 0
    for o in originals():
        for k, inputs in enumerate(o["inputs"]):
            history = PREFIX  # the original sampler's loop, as written there
            for turn, prompt in enumerate(o["prompts"]):
                history = history + f"# {prompt.format(**inputs)}\n"
                assert backend.contexts[(int(o["id"]), k, turn)] == history
                completion = f"v{turn} = {turn}\nprint(v{turn})\nprint('cut')\n\n\n# junk"
                history = history + f"{truncate(completion)}\n\n"
                checked += 1
            assert samples[(int(o["id"]), k)]["program"] == history
    assert checked == 5 * 514


def test_validate_execute_on_the_release_fails_saying_it_has_no_solutions(tmp_path):
    from click.testing import CliRunner
    from mtpb.cli import main
    import_original(ORIGINAL, tmp_path)
    result = CliRunner().invoke(main, ["problems", "validate", "--execute", "--sandbox", "process", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "115 problem sets are well-formed" in result.output
    assert (f"{tmp_path}: imported from the original MTPB release (115 problem set(s)): it has no reference "
            "solutions, nothing to execute; validate without --execute checks the files") in result.output
    assert "no test program was executed" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["problems", "validate", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_import_names_the_problems_that_read_a_file_the_release_lacks(tmp_path):
    from click.testing import CliRunner
    from mtpb.cli import main
    result = CliRunner().invoke(main, ["problems", "import", str(ORIGINAL), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert [line.split(": ")[1] for line in warned] == [f"{tmp_path}/038-load-dataset.yaml",
                                                         f"{tmp_path}/046-pandas-df-manipulation.yaml"]
    assert ("046-pandas-df-manipulation.yaml: problem 46 reads the file './datasets/melb_data.csv', which the "
            "original MTPB release does not ship") in warned[1]
    validated = CliRunner().invoke(main, ["problems", "validate", str(tmp_path)])
    assert validated.exit_code == 0 and "problem 46 reads the file './datasets/melb_data.csv'" in validated.output


def test_bad_lines_are_named_and_good_ones_written(tmp_path):
    src = tmp_path / "mixed.jsonl"
    lines = ORIGINAL.read_text(encoding="utf-8").splitlines()[:2]
    src.write_text(lines[0] + "\n{not json\n" + lines[1] + "\n", encoding="utf-8")
    from mtpb.problems import ProblemError
    with pytest.raises(ProblemError, match=r"mixed.jsonl:2: not an MTPB problem line"):
        import_original(src, tmp_path / "out")
    assert len(list((tmp_path / "out").glob("*.yaml"))) == 2
